package node_test

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"github.com/nats-io/nats.go"

	"github.com/nimbus-serverless/nimbus/internal/node"
	"github.com/nimbus-serverless/nimbus/internal/node/nodetest"
	"github.com/nimbus-serverless/nimbus/internal/recursion"
	"github.com/nimbus-serverless/nimbus/internal/sdkhttp"
	"github.com/nimbus-serverless/nimbus/internal/testenv"
	"github.com/nimbus-serverless/nimbus/internal/tracing/tracingtest"
)

// tracedPy answers with the trace id the function was given.
const tracedPy = `import os
def handler(event, context):
    return os.environ.get("_X_AMZN_TRACE_ID")
`

// TestTracingEndToEnd runs a node with --otlp-endpoint pointing at an
// OTLP/HTTP receiver and a Python function: a synchronous invoke under
// a caller's traceparent, an async invoke, and a NATS message with a
// traceparent header.
func TestTracingEndToEnd(t *testing.T) {
	if _, err := os.Stat("/usr/bin/python3"); err != nil {
		testenv.Missing(t, "/usr/bin/python3", err)
	}
	t.Setenv("OTEL_BSP_SCHEDULE_DELAY", "50") // export within 50 ms
	rcv := tracingtest.NewReceiver(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	natsAddr := ln.Addr().String()
	ln.Close()
	n := nodetest.Start(t, func(c *node.Config) {
		c.OTLPEndpoint = rcv.URL
		c.NATSListen = natsAddr
	})
	c := lambda.New(lambda.Options{
		HTTPClient:   sdkhttp.Client(),
		BaseEndpoint: aws.String(nodetest.Endpoint(n)), Region: "us-east-1",
		Credentials: credentials.NewStaticCredentialsProvider("AKIDEXAMPLE", "secret", ""),
	})
	name := fmt.Sprintf("traced%d", time.Now().UnixNano()%1_000_000)
	_, err = c.CreateFunction(t.Context(), &lambda.CreateFunctionInput{
		FunctionName: aws.String(name), Runtime: types.RuntimePython311, Handler: aws.String("app.handler"),
		Role: aws.String("arn:aws:iam::000000000000:role/test"), Timeout: aws.Int32(30),
		Code: &types.FunctionCode{ZipFile: nodetest.Zip(t, map[string]string{"app.py": tracedPy})},
	})
	if err != nil {
		t.Fatal(err)
	}
	waitFunctionActive(t, c, name)
	invokeURL := nodetest.Endpoint(n) + "/2015-03-31/functions/" + name + "/invocations"

	t.Run("sync", func(t *testing.T) {
		const callerTrace, callerSpan = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
		body, hdr := tracePost(t, invokeURL, map[string]string{"traceparent": "00-" + callerTrace + "-" + callerSpan + "-01"})
		reqID := hdr.Get("X-Amzn-RequestId")
		srv := rcv.WaitFor(t, 10*time.Second, "for the sync invoke", func(s tracingtest.Span) bool { return s.Attrs["faas.invocation_id"] == reqID })
		if srv.Name != name || srv.TraceID != callerTrace || srv.ParentSpanID != callerSpan || srv.Kind.String() != "SPAN_KIND_SERVER" {
			t.Fatalf("server span %s trace %s parent %s kind %s; want %s, the caller's %s/%s, server", srv.Name, srv.TraceID, srv.ParentSpanID, srv.Kind, name, callerTrace, callerSpan)
		}
		for k, want := range map[string]string{
			"faas.trigger": "http", "nimbus.trigger": "api", "faas.name": name, "faas.version": "$LATEST",
			"faas.max_memory": fmt.Sprint(128 << 20), "faas.coldstart": "true",
			"cloud.resource_id": "arn:aws:lambda:us-east-1:000000000000:function:" + name,
		} {
			if got := srv.Attrs[k]; got != want {
				t.Errorf("%s = %q, want %q", k, got, want)
			}
		}
		if !strings.HasPrefix(srv.Attrs["nimbus.instance_id"], name+"-") || srv.Resource["service.name"] != "nimbus" || srv.Resource["nimbus.node.id"] == "" {
			t.Errorf("instance %q, resource %v", srv.Attrs["nimbus.instance_id"], srv.Resource)
		}
		kids := spanNames(rcv.Children(srv.SpanID))
		for _, want := range []string{"queue", "cold start", "run"} {
			if _, ok := kids[want]; !ok {
				t.Fatalf("server span's children %v lack %q", kids, want)
			}
		}
		phases := spanNames(rcv.Children(kids["cold start"].SpanID))
		if _, ok := phases["sandbox start"]; !ok {
			t.Errorf("cold start's children %v lack sandbox start", phases)
		}
		if _, ok := phases["runtime init"]; !ok {
			t.Errorf("cold start's children %v lack runtime init", phases)
		}
		// The lineage (internal/recursion) follows: the function ran once.
		want := fmt.Sprintf(`"Root=1-%s-%s;Parent=%s;Sampled=1;Lineage=%s:1"`, callerTrace[:8], callerTrace[8:], kids["run"].SpanID, recursion.Key(name))
		if string(body) != want {
			t.Errorf("function's _X_AMZN_TRACE_ID = %s, want %s", body, want)
		}
	})

	t.Run("async", func(t *testing.T) {
		const submitter = "00-5bf92f3577b34da6a3ce929d0e0e4736-10f067aa0ba902b7-01"
		_, hdr := tracePost(t, invokeURL, map[string]string{"traceparent": submitter, "X-Amz-Invocation-Type": "Event"})
		task := hdr.Get("X-Amzn-RequestId")
		srv := rcv.WaitFor(t, 20*time.Second, "for the async invoke", func(s tracingtest.Span) bool { return s.Attrs["faas.invocation_id"] == task })
		if srv.Kind.String() != "SPAN_KIND_CONSUMER" || srv.Attrs["nimbus.trigger"] != "async" || srv.Attrs["faas.trigger"] != "other" || srv.ParentSpanID != "" {
			t.Fatalf("async span kind %s attrs %v parent %q, want a consumer root span", srv.Kind, srv.Attrs, srv.ParentSpanID)
		}
		if len(srv.Links) != 1 || srv.Links[0].TraceID != "5bf92f3577b34da6a3ce929d0e0e4736" || srv.Links[0].SpanID != "10f067aa0ba902b7" {
			t.Fatalf("async span links %+v, want the submitter's span", srv.Links)
		}
		if srv.TraceID != "5bf92f3577b34da6a3ce929d0e0e4736" {
			t.Errorf("async span's trace %s, want the submitter's", srv.TraceID)
		}
	})

	t.Run("nats trigger", func(t *testing.T) {
		subject := "tracetest." + name
		base := nodetest.Endpoint(n) + "/nimbus/v1/functions/" + name + "/triggers"
		cfg := fmt.Sprintf(`{"name":"msgs","type":"nats","config":{"url":"nats://%s","subject":%q}}`, natsAddr, subject)
		resp, err := http.Post(base, "application/json", strings.NewReader(cfg))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusCreated {
			t.Fatalf("create trigger: %s %s", resp.Status, b)
		}
		nc, err := nats.Connect("nats://" + natsAddr)
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		const msgTrace, msgSpan = "6bf92f3577b34da6a3ce929d0e0e4736", "20f067aa0ba902b7"
		linked := func(s tracingtest.Span) bool {
			return s.Attrs["nimbus.trigger"] == "nats" && len(s.Links) > 0 && s.Links[0].SpanID == msgSpan && s.Links[0].TraceID == msgTrace
		}
		// Core NATS drops what is published before the trigger
		// subscribes: publish until a span arrives.
		deadline := time.Now().Add(20 * time.Second)
		for found := false; !found; {
			m := nats.NewMsg(subject)
			m.Data = []byte(`{"n":1}`)
			m.Header.Set("traceparent", "00-"+msgTrace+"-"+msgSpan+"-01")
			if err := nc.PublishMsg(m); err != nil {
				t.Fatal(err)
			}
			for _, s := range rcv.Spans() {
				if linked(s) {
					found = true
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("no nats span linked to the message's; got %d spans", len(rcv.Spans()))
			}
			time.Sleep(200 * time.Millisecond)
		}
		srv := rcv.WaitFor(t, time.Second, "linked to the message", linked)
		if srv.Attrs["faas.trigger"] != "pubsub" || srv.Kind.String() != "SPAN_KIND_CONSUMER" {
			t.Fatalf("nats span attrs %v kind %s", srv.Attrs, srv.Kind)
		}
	})
}

// tracePost invokes url with headers, failing on anything but 200 or 202.
func tracePost(t *testing.T, url string, headers map[string]string) ([]byte, http.Header) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(`{}`))
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if (resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusAccepted) || resp.Header.Get("X-Amz-Function-Error") != "" {
		t.Fatalf("invoke: %s %s", resp.Status, body)
	}
	return body, resp.Header
}

func spanNames(spans []tracingtest.Span) map[string]tracingtest.Span {
	m := map[string]tracingtest.Span{}
	for _, s := range spans {
		m[s.Name] = s
	}
	return m
}

func waitFunctionActive(t *testing.T, c *lambda.Client, name string) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		out, err := c.GetFunctionConfiguration(t.Context(), &lambda.GetFunctionConfigurationInput{FunctionName: aws.String(name)})
		if err == nil && out.State == types.StateActive && out.LastUpdateStatus == types.LastUpdateStatusSuccessful {
			return
		}
	}
	t.Fatalf("%s did not become active", name)
}

// TestOTLPEndpointFlag: a bad --otlp-endpoint is a one-line error naming
// the flag.
func TestOTLPEndpointFlag(t *testing.T) {
	c := node.Defaults()
	c.OTLPEndpoint = "localhost:4318"
	err := c.Validate()
	if err == nil || !strings.HasPrefix(err.Error(), "--otlp-endpoint: ") || strings.Contains(err.Error(), "\n") {
		t.Fatalf("Validate = %v, want a one-line --otlp-endpoint error", err)
	}
	c.OTLPEndpoint = "http://127.0.0.1:4318"
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
}
