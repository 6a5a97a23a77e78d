// Command leanproxy is the peer benchmark's floor of Nimbus's function URL
// path: a plain net/http server that forwards each request to an upstream
// the way Nimbus's engine forwards to an `http` function (httpTarget in
// internal/engine/http.go): the request's body is read, the request
// written and its answer read to the end on the handler's goroutine, over
// a kept-alive TCP connection that only it uses until then, and idle
// connections wait in a slice for the next request. No http.Transport and
// no Nimbus package: one more process and loopback hop, and the least
// work a proxy does.
//
// Usage: leanproxy [-one-each] ADDR... (each upstream's host:port).
// Requests go to the upstreams in turn. With -one-each an upstream serves
// one request at a time, as a Lambda instance does (and a Nimbus `http`
// function by default): a request takes the upstream freed last, or waits
// until one is freed.
//
// It listens on a free port of 127.0.0.1 and prints the address as its
// first line of output.
package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	oneEach := flag.Bool("one-each", false, "an upstream serves one request at a time; the others wait for a free one")
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: leanproxy [-one-each] ADDR...")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() == 0 {
		flag.Usage()
		os.Exit(2)
	}
	p := newProxy(flag.Args(), *oneEach)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, "leanproxy:", err)
		os.Exit(1)
	}
	fmt.Println(ln.Addr())
	err = http.Serve(ln, p)
	fmt.Fprintln(os.Stderr, "leanproxy:", err)
	os.Exit(1)
}

// proxy forwards requests to its upstreams.
type proxy struct {
	ups  []*upstream
	turn atomic.Uint64 // the next upstream, without a gate
	gate *gate         // with -one-each: the free upstreams
}

// newProxy forwards to addrs, each serving one request at a time when
// oneEach is set.
func newProxy(addrs []string, oneEach bool) *proxy {
	p := &proxy{}
	for _, a := range addrs {
		p.ups = append(p.ups, &upstream{addr: a})
	}
	if oneEach {
		p.gate = newGate(p.ups)
	}
	return p
}

// ServeHTTP forwards r and writes the upstream's answer, read in full, with
// its length.
func (p *proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, "read request: "+err.Error(), http.StatusBadRequest)
		return
	}
	up, err := p.take(r.Context())
	if err != nil {
		return // the caller went away while waiting
	}
	resp, out, err := up.roundTrip(r.Context(), r, body)
	p.give(up)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	h := w.Header()
	for k, v := range resp.Header {
		if !hopByHop[k] {
			h[k] = v
		}
	}
	write := r.Method != http.MethodHead && bodyAllowed(resp.StatusCode)
	if write {
		h.Set("Content-Length", strconv.Itoa(len(out)))
	}
	w.WriteHeader(resp.StatusCode)
	if write {
		_, _ = w.Write(out)
	}
}

// take is the upstream of the next request: the next in turn, or with a
// gate, the free one freed last.
func (p *proxy) take(ctx context.Context) (*upstream, error) {
	if p.gate != nil {
		return p.gate.take(ctx)
	}
	return p.ups[(p.turn.Add(1)-1)%uint64(len(p.ups))], nil
}

// give frees up after its request.
func (p *proxy) give(up *upstream) {
	if p.gate != nil {
		p.gate.give(up)
	}
}

// gate hands out upstreams that serve no request: tokens holds one token
// per free upstream, so that waiting requests queue in order of arrival,
// and free is a stack of them, so that at low concurrency the same
// upstream (warm in the caches) serves.
type gate struct {
	tokens chan struct{}
	mu     sync.Mutex
	free   []*upstream // guarded by mu; len(free) >= len(tokens)
}

func newGate(ups []*upstream) *gate {
	g := &gate{tokens: make(chan struct{}, len(ups))}
	for i := len(ups) - 1; i >= 0; i-- { // the first on top
		g.free = append(g.free, ups[i])
		g.tokens <- struct{}{}
	}
	return g
}

// take waits for a free upstream, or until ctx is done.
func (g *gate) take(ctx context.Context) (*upstream, error) {
	select {
	case <-g.tokens:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	up := g.free[len(g.free)-1]
	g.free = g.free[:len(g.free)-1]
	return up, nil
}

// give frees up.
func (g *gate) give(up *upstream) {
	g.mu.Lock()
	g.free = append(g.free, up)
	g.mu.Unlock()
	g.tokens <- struct{}{}
}

// upstream is a server the proxy forwards to, and its idle kept-alive
// connections (the most recently used last).
type upstream struct {
	addr string
	mu   sync.Mutex
	idle []*conn // guarded by mu
}

// conn is a connection to an upstream.
type conn struct {
	c    net.Conn
	br   *bufio.Reader
	bw   *bufio.Writer
	idle time.Time // since when it waits in upstream.idle
}

// idleCheck is how long a connection may have been idle before get makes
// sure the upstream has not closed it (a request sent into a closed
// connection could not be sent again safely).
const idleCheck = time.Second

// maxIdle bounds the idle connections kept to one upstream.
const maxIdle = 64

// get is the most recently idle connection that is still open, or a new
// one.
func (u *upstream) get(ctx context.Context) (*conn, error) {
	for {
		u.mu.Lock()
		var c *conn
		if n := len(u.idle); n > 0 {
			c, u.idle = u.idle[n-1], u.idle[:n-1]
		}
		u.mu.Unlock()
		if c == nil {
			break
		}
		if time.Since(c.idle) < idleCheck || open(c.c) {
			return c, nil
		}
		_ = c.c.Close()
	}
	nc, err := (&net.Dialer{Timeout: 5 * time.Second}).DialContext(ctx, "tcp", u.addr)
	if err != nil {
		return nil, err
	}
	return &conn{c: nc, br: bufio.NewReaderSize(nc, 16<<10), bw: bufio.NewWriterSize(nc, 16<<10)}, nil
}

// put keeps c for the next request, or closes it.
func (u *upstream) put(c *conn) {
	u.mu.Lock()
	if len(u.idle) < maxIdle {
		c.idle = time.Now()
		u.idle = append(u.idle, c)
		c = nil
	}
	u.mu.Unlock()
	if c != nil {
		_ = c.c.Close()
	}
}

// open reports whether idle connection c is still open: no end of file,
// error or stray data waits on it (one non-blocking peek).
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
		_, _, rerr := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		alive = errors.Is(rerr, syscall.EAGAIN)
		return true
	})
	return err == nil && alive
}

// roundTrip sends r, with body, to the upstream and reads its answer to
// the end, on this goroutine.
func (u *upstream) roundTrip(ctx context.Context, r *http.Request, body []byte) (*http.Response, []byte, error) {
	out, err := http.NewRequestWithContext(ctx, r.Method, "http://"+u.addr+r.URL.RequestURI(), bytes.NewReader(body))
	if err != nil {
		return nil, nil, err
	}
	for k, v := range r.Header {
		if !hopByHop[k] {
			out.Header[k] = v
		}
	}
	out.Header.Del("Expect") // the body follows at once
	c, err := u.get(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("dial upstream: %w", err)
	}
	// A caller that goes away cuts the connection.
	stop := context.AfterFunc(ctx, func() { _ = c.c.SetDeadline(time.Unix(1, 0)) })
	keep := false
	defer func() {
		if !stop() || !keep {
			_ = c.c.Close()
			return
		}
		u.put(c)
	}()
	if err := out.Write(c.bw); err != nil {
		return nil, nil, fmt.Errorf("write to upstream: %w", err)
	}
	if err := c.bw.Flush(); err != nil {
		return nil, nil, fmt.Errorf("write to upstream: %w", err)
	}
	resp, err := http.ReadResponse(c.br, out)
	for err == nil && resp.StatusCode >= 100 && resp.StatusCode < 200 && resp.StatusCode != http.StatusSwitchingProtocols {
		resp, err = http.ReadResponse(c.br, out) // an interim answer: the final one follows
	}
	if err != nil {
		return nil, nil, fmt.Errorf("read from upstream: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, nil, fmt.Errorf("read from upstream: %w", err)
	}
	keep = !resp.Close
	return resp, b, nil
}

// hopByHop are the headers of one connection, not forwarded.
var hopByHop = map[string]bool{
	"Connection": true, "Proxy-Connection": true, "Keep-Alive": true, "Proxy-Authenticate": true,
	"Proxy-Authorization": true, "Te": true, "Trailer": true, "Transfer-Encoding": true, "Upgrade": true,
}

// bodyAllowed tells whether an answer of this status may have a body.
func bodyAllowed(status int) bool {
	return (status < 100 || status > 199) && status != http.StatusNoContent && status != http.StatusNotModified
}
