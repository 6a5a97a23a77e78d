package api_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"

	"github.com/nimbus-serverless/nimbus/internal/api"
	"github.com/nimbus-serverless/nimbus/internal/node"
	"github.com/nimbus-serverless/nimbus/internal/node/nodetest"
	"github.com/nimbus-serverless/nimbus/internal/records"
)

// logRecorder is a slog.Handler that keeps every record, at every level.
type logRecorder struct {
	mu      sync.Mutex
	records []slog.Record
}

func (h *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (h *logRecorder) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *logRecorder) WithGroup(string) slog.Handler            { return h }

func (h *logRecorder) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.records = append(h.records, r.Clone())
	return nil
}

// find returns the messages of the records at level or above, and whether a
// record with message msg was logged.
func (h *logRecorder) find(level slog.Level, msg string) (above []string, found bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, r := range h.records {
		if r.Level >= level {
			line := r.Message
			r.Attrs(func(a slog.Attr) bool { line += " " + a.String(); return true })
			above = append(above, line)
		}
		found = found || r.Message == msg
	}
	return above, found
}

// pySlow sleeps as long as the event (or the URL's query) says.
const pySlow = `import time
def handler(event, context):
    q = event.get("queryStringParameters") or {}
    time.sleep(float(q.get("sleep") or event.get("sleep") or 0))
    return {"ok": True}
`

// abandon sends a raw HTTP request, then closes its side of the connection
// as a caller that goes away does (the server sees the end of the stream
// and cancels the request), and returns what the server still wrote.
func abandon(t *testing.T, addr, method, path, body string) string {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "%s %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
		method, path, addr, len(body), body)
	if err := conn.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	out, err := io.ReadAll(conn)
	if err != nil {
		t.Fatalf("%s %s: read: %v", method, path, err)
	}
	return string(out)
}

// wantNothingWritten checks that an abandoned request got no answer: no
// error status, no error body, no function error.
func wantNothingWritten(t *testing.T, what, raw string) {
	t.Helper()
	if raw == "" {
		return
	}
	resp, err := http.ReadResponse(bufio.NewReader(strings.NewReader(raw)), nil)
	if err != nil {
		t.Errorf("%s: the server wrote %q", what, raw)
		return
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 300 || len(body) > 0 || resp.Header.Get("X-Amz-Function-Error") != "" {
		t.Errorf("%s: the server wrote %d %v %q; want nothing", what, resp.StatusCode, resp.Header, body)
	}
}

// TestCallerGoneIsNotAFailure: a caller that goes away while its invoke
// waits for a cold start or runs is not a platform failure, on the Lambda
// API and on a function URL: nothing is written, nothing is logged at
// ERROR, the URL's failure count stays 0, and the node logs it at debug.
func TestCallerGoneIsNotAFailure(t *testing.T) {
	logs := &logRecorder{}
	n := nodetest.Start(t, func(c *node.Config) {
		patientNode(c)
		c.Logger = slog.New(logs)
	})
	c := client(n)
	ep := nodetest.Endpoint(n)
	deploy(t, c, fixture{name: "slow", runtime: "python3.11", handler: "app.handler", timeout: 30,
		zip: nodetest.Zip(t, map[string]string{"app.py": pySlow})})
	deploy(t, c, fixture{name: "slowinit", runtime: "python3.11", handler: "app.handler", timeout: 30,
		zip: nodetest.Zip(t, map[string]string{"app.py": "import time\ntime.sleep(5)  # a slow start\n" + pySlow})})
	for _, name := range []string{"slow", "slowinit"} {
		callJSON[api.TriggerView](t, "POST", ep+"/nimbus/v1/functions/"+name+"/triggers", `{"name":"url","type":"http","config":{"authType":"NONE"}}`, http.StatusCreated)
	}
	invoke(t, c, "slow", `{}`) // warm: the next invoke runs at once

	addr := n.Addr()
	// Running: the engine answers Runtime.Abandoned, which reaches no one.
	wantNothingWritten(t, "invoke, running", abandon(t, addr, "POST", "/2015-03-31/functions/slow/invocations", `{"sleep": 3}`))
	invoke(t, c, "slow", `{}`)
	wantNothingWritten(t, "URL, running", abandon(t, addr, "GET", "/fn/slow/?sleep=3", ""))
	// Waiting for a cold start: the engine gives up with the context's error.
	wantNothingWritten(t, "invoke, cold start", abandon(t, addr, "POST", "/2015-03-31/functions/slowinit/invocations", `{}`))
	wantNothingWritten(t, "URL, cold start", abandon(t, addr, "GET", "/fn/slowinit/", ""))

	for _, name := range []string{"slow", "slowinit"} {
		v := callJSON[api.TriggerView](t, "GET", ep+"/nimbus/v1/functions/"+name+"/triggers/url", "", http.StatusOK)
		if v.Status.Failed != 0 {
			t.Errorf("%s's URL counts %d failures after callers went away, want 0", name, v.Status.Failed)
		}
	}
	errs, debugged := logs.find(slog.LevelError, "the caller went away")
	if len(errs) > 0 {
		t.Errorf("callers that went away were logged at ERROR:\n%s", strings.Join(errs, "\n"))
	}
	if !debugged {
		t.Error(`no "the caller went away" record at debug level`)
	}
}

// TestStreamCallerGone: a caller that leaves a streamed answer midway is not
// a failure either.
func TestStreamCallerGone(t *testing.T) {
	logs := &logRecorder{}
	n := nodetest.Start(t, func(c *node.Config) {
		patientNode(c)
		c.Logger = slog.New(logs)
	})
	c := client(n)
	ep := nodetest.Endpoint(n)
	deploy(t, c, fixture{name: "sse", runtime: "http", timeout: 30, zip: nodetest.Zip(t, map[string][]byte{
		"bootstrap": []byte("#!/bin/sh\nexec /usr/bin/python3 server.py\n"),
		"server.py": []byte(streamServer),
	}, "bootstrap")})
	callJSON[api.TriggerView](t, "POST", ep+"/nimbus/v1/functions/sse/triggers",
		`{"name":"url","type":"http","config":{"authType":"NONE","invokeMode":"RESPONSE_STREAM"}}`, http.StatusCreated)

	resp, err := http.Get(ep + "/fn/sse")
	if err != nil {
		t.Fatal(err)
	}
	if first, err := bufio.NewReader(resp.Body).ReadString('\n'); err != nil || first != "first\n" {
		t.Fatalf("first line = %q, %v", first, err)
	}
	resp.Body.Close() // gone before the second line

	const gone, failed = "the caller went away mid-answer", "HTTP function failed mid-answer"
	deadline := time.Now().Add(20 * time.Second)
	for {
		_, isGone := logs.find(slog.LevelError, gone)
		_, isFailed := logs.find(slog.LevelError, failed)
		if isFailed {
			t.Fatalf("a caller that left a streamed answer was logged as %q", failed)
		}
		if isGone {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %q record", gone)
		}
		time.Sleep(20 * time.Millisecond)
	}
	v := callJSON[api.TriggerView](t, "GET", ep+"/nimbus/v1/functions/sse/triggers/url", "", http.StatusOK)
	if v.Status.Failed != 0 || v.Status.Delivered != 0 {
		t.Errorf("URL counts %d delivered, %d failed after its caller left; want neither", v.Status.Delivered, v.Status.Failed)
	}
}

// TestCallerLeftRecord (issue 17): an SDK client that gives up 100 ms into
// a 500 ms run leaves the instance warm. The run goes on to its end and is
// recorded as abandoned, with its whole duration; the next invoke runs on
// the same instance, with no cold start.
func TestCallerLeftRecord(t *testing.T) {
	n := nodetest.Start(t, patientNode)
	c := client(n)
	deploy(t, c, fixture{name: "slow", runtime: "python3.11", handler: "app.handler", timeout: 30,
		zip: nodetest.Zip(t, map[string]string{"app.py": pySlow})})
	invoke(t, c, "slow", `{}`)
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	if _, err := c.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("slow"), Payload: []byte(`{"sleep": 0.5}`)}); err == nil {
		t.Fatal("the client that gave up after 100 ms got an answer")
	}
	recs := invocations(t, n, "slow", 2) // the abandoned run has ended
	invoke(t, c, "slow", `{}`)
	recs = invocations(t, n, "slow", 3)
	first, left, next := recs[2], recs[1], recs[0]
	if left.Status != records.StatusAbandoned || left.ErrorType != "Runtime.Abandoned" || left.Duration < 500 || left.BilledDuration < 500 {
		t.Errorf("record of the abandoned invoke: %+v; want abandoned, Runtime.Abandoned, the whole 500 ms run billed", left)
	}
	if !first.ColdStart || left.ColdStart || next.ColdStart || left.InstanceID != first.InstanceID || next.InstanceID != first.InstanceID {
		t.Errorf("instances (cold start): %s (%v), %s (%v), %s (%v); want one instance, started once",
			first.InstanceID, first.ColdStart, left.InstanceID, left.ColdStart, next.InstanceID, next.ColdStart)
	}
}

// invocations waits for fn's n invocation records and returns them,
// newest first.
func invocations(t *testing.T, n *node.Node, fn string, want int) []records.Record {
	t.Helper()
	url := nodetest.Endpoint(n) + "/nimbus/v1/functions/" + fn + "/invocations"
	deadline := time.Now().Add(20 * time.Second)
	for {
		l := callJSON[api.InvocationList](t, "GET", url, "", http.StatusOK)
		if len(l.Invocations) >= want {
			return l.Invocations
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d invocation records of %s, want %d: %+v", len(l.Invocations), fn, want, l.Invocations)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
