// Package runtimeapi serves the AWS Lambda Runtime API (version 2018-06-01)
// to one function instance.
//
// Each instance gets its own Server on its own loopback port; the instance's
// AWS_LAMBDA_RUNTIME_API is the server's Addr, so any Runtime API client
// (aws-lambda-go, the Rust and C++ runtimes, Nimbus's own Python and Node
// bootstraps) works unmodified. The server hands the instance one invocation
// at a time: Invoke makes an invocation the answer of the runtime's
// /invocation/next long poll and waits for its /response or /error.
package runtimeapi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/nimbus-serverless/nimbus"
)

// MaxResponse is the largest response body a function may return (Lambda's
// synchronous invocation limit, 6 MiB).
const MaxResponse = 6 << 20

// maxDeadline is the deadline sent for an invocation without one: Lambda's
// longest timeout.
const maxDeadline = 15 * time.Minute

// ErrClosed is returned by Invoke once the server is closed.
var ErrClosed = errors.New("runtime API server closed")

// tooLargeMessage is Lambda's message for a response over MaxResponse.
var tooLargeMessage = fmt.Sprintf("Response payload size exceeded maximum allowed payload size (%d bytes).", MaxResponse)

// Invocation is one request for the function, as the runtime receives it
// from /invocation/next.
type Invocation struct {
	RequestID       string
	FunctionARN     string
	TraceID         string
	ClientContext   string // JSON, sent only when set
	CognitoIdentity string // JSON, sent only when set
	// Deadline is when the invocation times out; a zero Deadline is sent as
	// 15 minutes from the hand-off.
	Deadline time.Time
	Payload  []byte
	// Stream, when set, receives the body of a streamed response
	// (Lambda-Runtime-Function-Response-Mode: streaming) as it arrives,
	// until Invoke returns; Result.Payload is then empty. Without it a
	// streamed response is read whole, as any other.
	Stream io.Writer
}

// Result is how the runtime answered an invocation.
type Result struct {
	// Payload is the function's response body (on success).
	Payload []byte
	// Err is set when the function posted /error.
	Err *nimbus.FunctionError
}

// call is one invocation in flight. Its fields after inv are guarded by
// Server.mu until done is closed; res and err are written once, before
// done is closed.
type call struct {
	inv       Invocation
	done      chan struct{}
	delivered bool // the runtime received it from /next
	answered  bool // the runtime posted /response or /error
	res       Result
	err       error
	stream    *streamGuard // inv.Stream, nil if none
}

// Server is the Runtime API server of one instance. Its methods are safe for
// concurrent use.
type Server struct {
	log  *slog.Logger
	hs   *http.Server
	addr string

	next       chan *call    // unbuffered hand-off to a /next long poll
	closed     chan struct{} // closed by Close
	ready      chan struct{} // closed on the first /next
	initFailed chan struct{} // closed on /init/error
	serveDone  chan struct{} // closed when hs.Serve returns
	readyOnce  sync.Once
	admitOnce  sync.Once
	admitSet   chan struct{} // closed by Admit
	admitUID   int           // who may connect (negative: anyone); set before admitSet closes
	closeOnce  sync.Once
	closeErr   error

	mu       sync.Mutex
	polls    int           // /next long polls waiting for an invocation
	pollWait chan struct{} // closed when polls becomes > 0; nil if no one waits
	cur      *call         // the invocation in flight, nil when idle
	last     string        // request id of the last finished invocation
	initErr  *nimbus.FunctionError
	isClosed bool
}

// Listen starts a server on a free port of 127.0.0.1 that anyone may
// connect to. The caller must Close it.
func Listen(log *slog.Logger) (*Server, error) {
	s, err := ListenPending(log)
	if err != nil {
		return nil, err
	}
	s.Admit(-1)
	return s, nil
}

// ListenPending is Listen for an instance whose user is not known yet:
// connections wait until Admit says who may connect.
func ListenPending(log *slog.Logger) (*Server, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	return ServePending(ln, log), nil
}

// ServePending is ListenPending on a listener the caller made (in an
// instance's network namespace: see sandbox.Net); the server owns ln and
// closes it with Close. Its Addr is ln's address.
func ServePending(ln net.Listener, log *slog.Logger) *Server {
	s := &Server{
		log:        log,
		addr:       ln.Addr().String(),
		next:       make(chan *call),
		closed:     make(chan struct{}),
		ready:      make(chan struct{}),
		initFailed: make(chan struct{}),
		serveDone:  make(chan struct{}),
		admitSet:   make(chan struct{}),
	}
	s.hs = &http.Server{
		Handler: http.HandlerFunc(s.route),
		// /next is a long poll, so there is no read or write timeout; only
		// the request headers must come promptly.
		ReadHeaderTimeout: 30 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	go func() {
		defer close(s.serveDone)
		_ = s.hs.Serve(admitListener{Listener: ln, s: s}) // http.ErrServerClosed after Close
	}()
	return s
}

// Addr is the server's "127.0.0.1:PORT", the instance's AWS_LAMBDA_RUNTIME_API
// (in the instance's network).
func (s *Server) Addr() string { return s.addr }

// Ready is closed when the runtime first calls /invocation/next: its
// initialisation has finished.
func (s *Server) Ready() <-chan struct{} { return s.ready }

// InitFailed is closed when the runtime has posted /init/error; InitErr then
// returns the error it reported.
func (s *Server) InitFailed() <-chan struct{} { return s.initFailed }

// InitErr returns the error the runtime posted to /init/error, or nil.
func (s *Server) InitErr() *nimbus.FunctionError {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.initErr
}

// Invoke hands inv to the runtime, as the answer of its pending or next
// /invocation/next long poll, and waits for the runtime's /response or
// /error.
//
// Errors: ctx.Err() if ctx ends first (the runtime may still be running the
// invocation; the caller should kill the instance); an error wrapping
// nimbus.ErrConflict if an invocation is already in flight; an error wrapping
// nimbus.ErrTooLarge (a *nimbus.UserError with Lambda's message) if the
// response is over MaxResponse (a streamed one to Stream: MaxStream); ErrClosed if the server is closed; the
// runtime's init error (a *nimbus.FunctionError) if it reported one before
// taking the invocation; another error if reading the response failed.
func (s *Server) Invoke(ctx context.Context, inv Invocation) (Result, error) {
	c := &call{inv: inv, done: make(chan struct{})}
	if inv.Stream != nil {
		c.stream = &streamGuard{w: inv.Stream}
		defer c.stream.close() // before the caller writes to Stream again
	}
	if err := s.begin(c); err != nil {
		return Result{}, err
	}
	defer s.end(c)

	select {
	case s.next <- c:
	case <-ctx.Done():
		return Result{}, ctx.Err()
	case <-s.closed:
		return Result{}, ErrClosed
	case <-s.initFailed:
		return Result{}, s.InitErr()
	}
	select {
	case <-c.done:
		return c.res, c.err
	case <-ctx.Done():
		select {
		case <-c.done: // answered at the same time: the answer wins
			return c.res, c.err
		default:
			return Result{}, ctx.Err()
		}
	case <-s.closed:
		return Result{}, ErrClosed
	}
}

// Polling returns a channel that is closed once the runtime waits in a
// /next long poll (at once if it does now): it has finished with the
// invocations before and asks for the next. The engine freezes an idle
// instance then.
func (s *Server) Polling() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.polls > 0 {
		return closedChan
	}
	if s.pollWait == nil {
		s.pollWait = make(chan struct{})
	}
	return s.pollWait
}

// closedChan is a closed channel.
var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// polling counts a /next long poll until the function it returns is
// called.
func (s *Server) polling() func() {
	s.mu.Lock()
	s.polls++
	if s.pollWait != nil {
		close(s.pollWait)
		s.pollWait = nil
	}
	s.mu.Unlock()
	return func() {
		s.mu.Lock()
		s.polls--
		s.mu.Unlock()
	}
}

// begin makes c the invocation in flight.
func (s *Server) begin(c *call) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.isClosed:
		return ErrClosed
	case s.cur != nil:
		return fmt.Errorf("invoke %s: invocation %s in flight: %w", c.inv.RequestID, s.cur.inv.RequestID, nimbus.ErrConflict)
	}
	s.cur = c
	return nil
}

// end ends c's time in flight; a later answer for it is a repeated one.
func (s *Server) end(c *call) {
	s.mu.Lock()
	if s.cur == c {
		s.cur = nil
		s.last = c.inv.RequestID
	}
	s.mu.Unlock()
}

// Close stops the server: it unblocks a pending /next long poll and Invoke,
// and closes every connection. It is safe to call more than once.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.isClosed = true
		s.mu.Unlock()
		close(s.closed)
		s.closeErr = s.hs.Close()
		<-s.serveDone
	})
	return s.closeErr
}
