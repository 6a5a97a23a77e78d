package engine

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/sandbox"
	"github.com/nimbus-serverless/nimbus/internal/tracing"
	"golang.org/x/sys/unix"
)

// maxPayload is Lambda's synchronous request and response limit.
const maxPayload = 6 << 20

// httpTarget is the port an HTTP function's instance serves on, and the
// kept-alive connections to it. A request is written and its answer read
// on the caller's goroutine, over a connection that only it uses until
// the answer is read (net/http's Transport hands each request to two
// goroutines of the connection's, and back: three switches a request on
// the warm path). Idle connections are kept for the next request; an
// instance's port is one peer, so there is no pool to tune.
type httpTarget struct {
	addr string
	net  sandbox.Net

	mu     sync.Mutex
	idle   []*httpConn
	closed bool
	// fc, for a custom function with Function Compute's conventions, are
	// the x-fc-* headers of its requests (fccustom.go).
	fc http.Header
}

// httpConn is a connection to an instance's port.
type httpConn struct {
	c    net.Conn
	br   *bufio.Reader
	bw   *bufio.Writer
	idle time.Time // since when it waits in httpTarget.idle
}

// idleCheck is how long a connection may have been idle before conn makes
// sure the instance has not closed it (a server's idle timeout) rather
// than send a request into a closed connection, which could not be sent
// again safely (a POST may have been processed).
const idleCheck = time.Second

// maxIdleConns bounds the idle connections kept to one instance.
const maxIdleConns = 64

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
	return &httpTarget{addr: "127.0.0.1:" + strconv.Itoa(port), net: n}
}

// conn returns the most recently idle connection that is still open, or a
// new one.
func (t *httpTarget) conn(ctx context.Context) (*httpConn, error) {
	for {
		t.mu.Lock()
		var hc *httpConn
		if n := len(t.idle); n > 0 {
			hc = t.idle[n-1]
			t.idle = t.idle[:n-1]
		}
		t.mu.Unlock()
		if hc == nil {
			break
		}
		if time.Since(hc.idle) < idleCheck || open(hc.c) {
			return hc, nil
		}
		_ = hc.c.Close()
	}
	c, err := t.net.DialContext(ctx, "tcp", t.addr)
	if err != nil {
		return nil, err
	}
	return &httpConn{c: c, br: bufio.NewReaderSize(c, 16<<10), bw: bufio.NewWriterSize(c, 16<<10)}, nil
}

// open reports whether idle connection c is still open: no end of file,
// error or stray data is waiting on it (one non-blocking peek).
func open(c net.Conn) bool {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return true
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	alive := false
	var b [1]byte
	err = raw.Read(func(fd uintptr) bool {
		_, _, rerr := unix.Recvfrom(int(fd), b[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
		alive = errors.Is(rerr, unix.EAGAIN)
		return true
	})
	return err == nil && alive
}

// put keeps hc for the next request, or closes it.
func (t *httpTarget) put(hc *httpConn) {
	t.mu.Lock()
	if !t.closed && len(t.idle) < maxIdleConns {
		hc.idle = time.Now()
		t.idle = append(t.idle, hc)
		hc = nil
	}
	t.mu.Unlock()
	if hc != nil {
		_ = hc.c.Close()
	}
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
		res, err := t.send(ctx, req, hr)
		return fcAnswer(res), err
	}
	return t.send(ctx, req, hr)
}

// send sends hr, req's request to the instance (nil: a POST of the
// payload to "/").
func (t *httpTarget) send(ctx context.Context, req nimbus.Invocation, hr *nimbus.HTTPRequest) (nimbus.Result, error) {
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
	out.Header.Del("Expect") // the body follows at once: no 100 Continue to wait for
	if t.fc != nil {
		for k, v := range t.fc {
			out.Header[k] = v
		}
		out.Header.Set("X-Fc-Request-Id", req.RequestID)
	}
	tracing.Inject(ctx, out.Header) // the run span, when traced
	hc, err := t.conn(ctx)
	if err != nil {
		return nimbus.Result{}, fmt.Errorf("forward to HTTP function: %w", err)
	}
	return t.roundTrip(ctx, hc, out, hr.Respond)
}

// roundTrip writes out on hc and reads its answer (streamed to respond if
// not nil), then keeps hc for the next request or closes it.
func (t *httpTarget) roundTrip(ctx context.Context, hc *httpConn, out *http.Request, respond func(int, http.Header) io.Writer) (res nimbus.Result, err error) {
	// A caller that goes away, or the timeout, cuts the connection.
	stop := context.AfterFunc(ctx, func() { _ = hc.c.SetDeadline(time.Unix(1, 0)) })
	keep := false
	defer func() {
		if !stop() || !keep {
			_ = hc.c.Close()
			return
		}
		t.put(hc)
	}()
	if err := out.Write(hc.bw); err != nil {
		return res, fmt.Errorf("forward to HTTP function: %w", cmp.Or(ctx.Err(), err))
	}
	if err := hc.bw.Flush(); err != nil {
		return res, fmt.Errorf("forward to HTTP function: %w", cmp.Or(ctx.Err(), err))
	}
	resp, err := http.ReadResponse(hc.br, out)
	for err == nil && resp.StatusCode >= 100 && resp.StatusCode < 200 && resp.StatusCode != http.StatusSwitchingProtocols {
		resp, err = http.ReadResponse(hc.br, out) // an interim answer (103 Early Hints, say): the final one follows
	}
	if err != nil {
		return res, fmt.Errorf("forward to HTTP function: %w", cmp.Or(ctx.Err(), err))
	}
	defer resp.Body.Close()
	if respond != nil {
		res, err = stream(resp, respond)
		keep = err == nil && !resp.Close
		return res, err
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxPayload+1))
	if err != nil {
		return res, fmt.Errorf("read HTTP function response: %w", cmp.Or(ctx.Err(), err))
	}
	if len(body) > maxPayload {
		return res, nimbus.ErrTooLarge
	}
	keep = !resp.Close
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

// close closes the idle connections; those in use close when their
// request ends.
func (t *httpTarget) close() {
	t.mu.Lock()
	idle := t.idle
	t.idle, t.closed = nil, true
	t.mu.Unlock()
	for _, hc := range idle {
		_ = hc.c.Close()
	}
}
