package engine

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/sandbox"
	"github.com/nimbus-serverless/nimbus/internal/tracing"
)

// maxPayload is Lambda's synchronous request and response limit.
const maxPayload = 6 << 20

// httpTarget is the port an HTTP function's instance serves on.
type httpTarget struct {
	addr   string
	net    sandbox.Net
	client *http.Client
	// fc, for a custom function with Function Compute's conventions, are
	// the x-fc-* headers of its requests (fccustom.go).
	fc http.Header
}

// freePort asks the kernel for a free loopback port.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// newHTTPTarget reaches port on the loopback of network n.
func newHTTPTarget(port int, n sandbox.Net) *httpTarget {
	addr := "127.0.0.1:" + strconv.Itoa(port)
	tr := &http.Transport{
		DialContext:         n.DialContext,
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
	return &httpTarget{addr: addr, net: n, client: &http.Client{Transport: tr}}
}

// waitReady polls until the port accepts connections, the instance exits
// or ctx ends.
func (t *httpTarget) waitReady(ctx context.Context, exited <-chan struct{}, exitErr func(string) *nimbus.FunctionError) error {
	delay := 200 * time.Microsecond
	for {
		dctx, cancel := context.WithTimeout(ctx, time.Second)
		c, err := t.net.DialContext(dctx, "tcp", t.addr)
		cancel()
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-exited:
			return exitErr("")
		case <-ctx.Done():
			return &nimbus.FunctionError{Type: "Runtime.InitTimeout", Unhandled: true,
				Message: "The HTTP function did not listen on $PORT within the init timeout"}
		case <-time.After(delay):
			delay = min(2*delay, 20*time.Millisecond)
		}
	}
}

// forward sends req to the instance. An Invoke (no HTTP request) becomes a
// POST of the payload to "/".
func (t *httpTarget) forward(ctx context.Context, req nimbus.Invocation) (nimbus.Result, error) {
	hr := req.HTTP
	if t.fc != nil && (hr == nil || req.Trigger != nimbus.TriggerURL) {
		hr = fcInvokeRequest(req, hr) // an event, not an HTTP request: POST /invoke
	}
	if hr == nil {
		hr = &nimbus.HTTPRequest{Method: http.MethodPost, Path: "/", Body: req.Payload,
			Header: http.Header{"Content-Type": {"application/json"}}}
	}
	out, err := http.NewRequestWithContext(ctx, hr.Method, "http://"+t.addr+hr.Path, bytes.NewReader(hr.Body))
	if err != nil {
		return nimbus.Result{}, nimbus.Invalidf("bad request for HTTP function: %v", err)
	}
	for k, v := range hr.Header {
		out.Header[k] = v
	}
	out.Header.Set("X-Amz-Request-Id", req.RequestID)
	if t.fc != nil {
		for k, v := range t.fc {
			out.Header[k] = v
		}
		out.Header.Set("X-Fc-Request-Id", req.RequestID)
	}
	tracing.Inject(ctx, out.Header) // the run span, when traced
	resp, err := t.client.Do(out)
	if err != nil {
		return nimbus.Result{}, fmt.Errorf("forward to HTTP function: %w", err)
	}
	defer resp.Body.Close()
	if hr.Respond != nil {
		return stream(resp, hr.Respond)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxPayload+1))
	if err != nil {
		return nimbus.Result{}, fmt.Errorf("read HTTP function response: %w", err)
	}
	if len(body) > maxPayload {
		return nimbus.Result{}, nimbus.ErrTooLarge
	}
	return nimbus.Result{Payload: body, HTTP: &nimbus.HTTPResponse{Status: resp.StatusCode, Header: resp.Header, Body: body}}, nil
}

// maxStream is the largest streamed answer (Lambda's RESPONSE_STREAM limit).
const maxStream = 200 << 20

// stream copies an HTTP function's answer to respond's writer as it comes.
func stream(resp *http.Response, respond func(int, http.Header) io.Writer) (nimbus.Result, error) {
	out := nimbus.Result{HTTP: &nimbus.HTTPResponse{Status: resp.StatusCode, Header: resp.Header}}
	n, err := io.Copy(respond(resp.StatusCode, resp.Header), io.LimitReader(resp.Body, maxStream+1))
	if err != nil {
		return out, fmt.Errorf("stream HTTP function response: %w", err)
	}
	if n > maxStream {
		return out, nimbus.ErrTooLarge
	}
	return out, nil
}

func (t *httpTarget) close() { t.client.CloseIdleConnections() }
