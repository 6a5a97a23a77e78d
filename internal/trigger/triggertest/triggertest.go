// Package triggertest helps test trigger sources: RunSourceSuite, the
// conformance suite every message source runs through a Harness of its own
// (1,000 in and out, batching, redelivery after failures, crashes and lost
// connections, dead letters, parallelism, message fields); a Sink that
// records what it is given and can be told to fail or block; and a TCP
// proxy that a test can sever to play a lost connection or a broker
// restart without touching the shared broker.
package triggertest

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/nimbus-serverless/nimbus/internal/trigger"
)

// Sink records delivered batches. Its zero value accepts everything.
type Sink struct {
	mu      sync.Mutex
	batches [][]trigger.Message
	seen    map[string]int
	// Fail, when set, decides per batch: a non-nil error is returned (the
	// source must not acknowledge) and the batch is not recorded.
	Fail func(batch []trigger.Message) error
	// Delay is how long each Deliver takes.
	Delay   time.Duration
	changed chan struct{}
}

var _ trigger.Sink = (*Sink)(nil)

// Deliver implements trigger.Sink.
func (s *Sink) Deliver(ctx context.Context, batch []trigger.Message) error {
	if s.Delay > 0 {
		select {
		case <-time.After(s.Delay):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if s.Fail != nil {
		if err := s.Fail(batch); err != nil {
			return err
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.seen == nil {
		s.seen = make(map[string]int)
	}
	s.batches = append(s.batches, batch)
	for _, m := range batch {
		s.seen[string(m.Data)]++
	}
	if s.changed != nil {
		close(s.changed)
		s.changed = nil
	}
	return nil
}

// Batches returns the batches delivered so far.
func (s *Sink) Batches() [][]trigger.Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([][]trigger.Message(nil), s.batches...)
}

// Messages returns every delivered message in delivery order.
func (s *Sink) Messages() []trigger.Message {
	var out []trigger.Message
	for _, b := range s.Batches() {
		out = append(out, b...)
	}
	return out
}

// Distinct is how many different message bodies were delivered.
func (s *Sink) Distinct() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.seen)
}

// WaitDistinct waits until n different bodies were delivered, failing the
// test after timeout.
func (s *Sink) WaitDistinct(t testing.TB, n int, timeout time.Duration) {
	t.Helper()
	deadline := time.After(timeout)
	for {
		s.mu.Lock()
		got := len(s.seen)
		if got >= n {
			s.mu.Unlock()
			return
		}
		if s.changed == nil {
			s.changed = make(chan struct{})
		}
		ch := s.changed
		s.mu.Unlock()
		select {
		case <-ch:
		case <-deadline:
			t.Fatalf("delivered %d distinct messages, want %d within %s", got, n, timeout)
		}
	}
}

// Proxy forwards TCP connections to a target until Cut severs them all.
type Proxy struct {
	ln     net.Listener
	target string

	mu    sync.Mutex
	conns []net.Conn
	down  bool
	wg    sync.WaitGroup
}

// NewProxy listens on a free loopback port and forwards to target; it is
// closed when the test ends.
func NewProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{ln: ln, target: target}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

// Addr is the proxy's host:port.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.down {
			p.mu.Unlock()
			c.Close()
			continue
		}
		u, err := net.Dial("tcp", p.target)
		if err != nil {
			p.mu.Unlock()
			c.Close()
			continue
		}
		p.conns = append(p.conns, c, u)
		p.wg.Add(2)
		p.mu.Unlock()
		go p.pipe(c, u)
		go p.pipe(u, c)
	}
}

func (p *Proxy) pipe(dst, src net.Conn) {
	defer p.wg.Done()
	_, _ = io.Copy(dst, src)
	dst.Close()
	src.Close()
}

// Cut closes every connection and refuses new ones until Restore: to the
// client it looks like the broker went away.
func (p *Proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = true
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

// Restore accepts connections again.
func (p *Proxy) Restore() {
	p.mu.Lock()
	p.down = false
	p.mu.Unlock()
}

func (p *Proxy) close() {
	p.ln.Close()
	p.Cut()
	p.wg.Wait()
}

// ErrRefused is a ready-made error for Sink.Fail.
var ErrRefused = errors.New("triggertest: delivery refused")
