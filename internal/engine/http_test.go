package engine

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/sandbox"
)

// serveHTTP serves h on a loopback port and returns an httpTarget to it and
// the count of connections the server accepted.
func serveHTTP(t *testing.T, h http.Handler) (*httpTarget, *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var conns atomic.Int64
	srv := &http.Server{Handler: h, ConnState: func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	tgt := newHTTPTarget(ln.Addr().(*net.TCPAddr).Port, sandbox.HostNet{})
	t.Cleanup(tgt.close)
	return tgt, &conns
}

func post(t *testing.T, tgt *httpTarget, ctx context.Context, body string) (nimbus.Result, error) {
	t.Helper()
	return tgt.forward(ctx, nimbus.Invocation{RequestID: "r1", HTTP: &nimbus.HTTPRequest{
		Method: http.MethodPost, Path: "/p?q=1", Body: []byte(body),
		Header: http.Header{"Content-Type": {"text/plain"}, "Expect": {"100-continue"}, "X-Hop": {"a", "b"}}}})
}

// TestHTTPTargetKeepsConnection: requests in a row reuse one connection,
// and the instance sees the request as sent (path, query, headers, body,
// the request id).
func TestHTTPTargetKeepsConnection(t *testing.T) {
	tgt, conns := serveHTTP(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("X-Seen", r.Method+" "+r.URL.String()+" "+strings.Join(r.Header.Values("X-Hop"), ",")+" "+r.Header.Get("X-Amz-Request-Id"))
		w.WriteHeader(http.StatusCreated)
		_, _ = w.Write(append([]byte("echo:"), b...))
	}))
	for i := range 5 {
		res, err := post(t, tgt, t.Context(), "hello"+strconv.Itoa(i))
		if err != nil {
			t.Fatalf("forward %d: %v", i, err)
		}
		if string(res.Payload) != "echo:hello"+strconv.Itoa(i) || res.HTTP.Status != http.StatusCreated ||
			res.HTTP.Header.Get("X-Seen") != "POST /p?q=1 a,b r1" {
			t.Fatalf("forward %d: %d %q %q", i, res.HTTP.Status, res.Payload, res.HTTP.Header.Get("X-Seen"))
		}
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("%d connections for 5 requests in a row, want 1", n)
	}
}

// TestHTTPTargetIdleClosed: a kept connection the instance closed while it
// was idle is not used (the request goes on a new one).
func TestHTTPTargetIdleClosed(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var accepted atomic.Int64
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			go func() { // one request, then close without saying so
				defer c.Close()
				req, err := http.ReadRequest(bufio.NewReader(c))
				if err != nil {
					return
				}
				_, _ = io.Copy(io.Discard, req.Body)
				_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
			}()
		}
	}()
	tgt := newHTTPTarget(ln.Addr().(*net.TCPAddr).Port, sandbox.HostNet{})
	defer tgt.close()
	for i := range 3 {
		if i > 0 {
			time.Sleep(20 * time.Millisecond) // the server has closed the kept connection
			tgt.mu.Lock()
			for _, hc := range tgt.idle {
				hc.idle = hc.idle.Add(-2 * idleCheck)
			}
			tgt.mu.Unlock()
		}
		res, err := post(t, tgt, t.Context(), "x")
		if err != nil || string(res.Payload) != "ok" {
			t.Fatalf("forward %d: %q, %v", i, res.Payload, err)
		}
	}
	if n := accepted.Load(); n != 3 {
		t.Errorf("%d connections, want 3 (each closed by the server)", n)
	}
}

// TestHTTPTargetCancel: a request whose context ends is cut at once, the
// instance's handler sees its request end, and the connection is not
// kept.
func TestHTTPTargetCancel(t *testing.T) {
	ended := make(chan struct{})
	tgt, conns := serveHTTP(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("q") == "fast" {
			return
		}
		_, _ = io.ReadAll(r.Body) // then the server notices the connection close
		<-r.Context().Done()
		close(ended)
	}))
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	began := time.Now()
	if _, err := post(t, tgt, ctx, "slow"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("forward with a context that ends: %v, want its deadline", err)
	}
	if d := time.Since(began); d > 2*time.Second {
		t.Errorf("forward returned %v after its context ended", d)
	}
	select {
	case <-ended:
	case <-time.After(5 * time.Second):
		t.Fatal("the handler's request did not end")
	}
	res, err := tgt.forward(t.Context(), nimbus.Invocation{RequestID: "r2", HTTP: &nimbus.HTTPRequest{Method: http.MethodGet, Path: "/?q=fast"}})
	if err != nil || res.HTTP.Status != http.StatusOK {
		t.Fatalf("forward after a cut: %v %v", res.HTTP, err)
	}
	if n := conns.Load(); n != 2 {
		t.Errorf("%d connections, want 2 (the cut one is not reused)", n)
	}
}

// TestHTTPTargetTooLarge: an answer over the payload limit is refused and
// its connection closed.
func TestHTTPTargetTooLarge(t *testing.T) {
	tgt, conns := serveHTTP(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("q") == "small" {
			return
		}
		_, _ = w.Write(make([]byte, maxPayload+1))
	}))
	if _, err := post(t, tgt, t.Context(), ""); !errors.Is(err, nimbus.ErrTooLarge) {
		t.Fatalf("forward of a too large answer: %v, want ErrTooLarge", err)
	}
	if _, err := tgt.forward(t.Context(), nimbus.Invocation{HTTP: &nimbus.HTTPRequest{Method: http.MethodGet, Path: "/?q=small"}}); err != nil {
		t.Fatal(err)
	}
	if n := conns.Load(); n != 2 {
		t.Errorf("%d connections, want 2", n)
	}
}
