// Command relay is the peer benchmark's floor of any platform speaking the
// Lambda Runtime API: a plain net/http server that hands each POST / to
// the pending /next long poll of one of the runtimes it started, and
// answers with what that runtime posts to /response. No sandbox, engine,
// registry, queue or authentication: what is left is the Runtime API's
// own hops (the invoke in, /next out, /response in, the answer out) and
// the runtime's work.
//
// Usage:
//
//	relay [-n N] BOOTSTRAP   start N runtimes (BOOTSTRAP, e.g. the aws-lambda-go
//	                         no-op) and relay; the address is the first line printed
//	relay -cold BOOTSTRAP    time one cold start: from BOOTSTRAP's exec, with one
//	                         invocation waiting, to its /response; print the time
//	                         (a Go duration) and exit
//
// It listens on a free port of 127.0.0.1. A runtime that exits ends the
// relay (the benchmark then starts it again, counting it).
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	n := flag.Int("n", 1, "runtimes to start")
	cold := flag.Bool("cold", false, "time one cold start, print it and exit")
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: relay [-n N] BOOTSTRAP | relay -cold BOOTSTRAP")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() != 1 || *n < 1 {
		flag.Usage()
		os.Exit(2)
	}
	var err error
	if *cold {
		err = timeCold(flag.Arg(0))
	} else {
		err = serve(flag.Arg(0), *n)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "relay:", err)
		os.Exit(1)
	}
}

// serve relays invokes to n runtimes of bin until one of them exits.
func serve(bin string, n int) error {
	rl := newRelay()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	fmt.Println(ln.Addr())
	errc := make(chan error, n+1)
	hs := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: rl}
	go func() { errc <- hs.Serve(ln) }()
	for range n {
		cmd := runtime(bin, ln.Addr().String())
		if err := cmd.Start(); err != nil {
			return fmt.Errorf("start runtime: %w", err)
		}
		go func() { errc <- fmt.Errorf("a runtime exited: %v", cmd.Wait()) }()
	}
	return <-errc
}

// coldWait bounds the wait for a cold start's answer.
const coldWait = 30 * time.Second

// timeCold starts one runtime of bin with one invocation waiting for it and
// prints the time from its exec to its /response.
func timeCold(bin string) error {
	rl := newRelay()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	hs := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: rl}
	go func() { _ = hs.Serve(ln) }()
	defer hs.Close()
	c := rl.newCall([]byte(`{"sleep_ms":0}`))
	go rl.hand(context.Background(), c) // waiting, as an invoke would
	cmd := runtime(bin, ln.Addr().String())
	began := time.Now()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start runtime: %w", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		_ = cmd.Process.Kill()
		<-exited
	}()
	select {
	case a := <-c.reply:
		took := time.Since(began)
		if a.failed {
			return fmt.Errorf("the runtime answered with an error: %s", a.body)
		}
		fmt.Println(took)
		return nil
	case err := <-exited:
		exited <- err // for the deferred wait
		return fmt.Errorf("the runtime exited before it answered: %v", err)
	case <-time.After(coldWait):
		return fmt.Errorf("no answer within %s", coldWait)
	}
}

// runtime is the command of a runtime of bin talking to the Runtime API at
// addr, in an instance-like clean environment; it is killed when the relay
// dies.
func runtime(bin, addr string) *exec.Cmd {
	cmd := exec.Command(bin)
	cmd.Env = []string{"LANG=en_US.UTF-8", "PATH=/usr/local/bin:/usr/bin:/bin", "TZ=:UTC",
		"AWS_LAMBDA_RUNTIME_API=" + addr, "_HANDLER=bootstrap"}
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	return cmd
}

// prefix is the Runtime API's path prefix.
const prefix = "/2018-06-01/runtime/"

// relay is the Runtime API server and the invoke endpoint in one: calls
// hands an invoke to whichever runtime's /next takes it first; pending
// finds it again by its id when the runtime answers.
type relay struct {
	calls   chan *call
	ids     atomic.Int64
	mu      sync.Mutex
	pending map[string]*call // guarded by mu: handed to a runtime, not answered
}

// call is one invoke.
type call struct {
	id    string
	event []byte
	reply chan answer // buffered: the runtime's answer
}

// answer is a runtime's /response (or /error, failed).
type answer struct {
	body   []byte
	failed bool
}

func newRelay() *relay {
	return &relay{calls: make(chan *call), pending: map[string]*call{}}
}

// newCall is an invoke of event.
func (rl *relay) newCall(event []byte) *call {
	return &call{id: strconv.FormatInt(rl.ids.Add(1), 10), event: event, reply: make(chan answer, 1)}
}

// hand waits until a runtime's /next takes c, or ctx is done.
func (rl *relay) hand(ctx context.Context, c *call) bool {
	select {
	case rl.calls <- c:
		return true
	case <-ctx.Done():
		return false
	}
}

func (rl *relay) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p := r.URL.Path
	switch {
	case r.Method == http.MethodPost && p == "/":
		rl.invoke(w, r)
	case r.Method == http.MethodGet && p == prefix+"invocation/next":
		rl.next(w, r)
	case r.Method == http.MethodPost && strings.HasPrefix(p, prefix+"invocation/"):
		id, what, _ := strings.Cut(strings.TrimPrefix(p, prefix+"invocation/"), "/")
		rl.answered(w, r, id, what)
	case r.Method == http.MethodPost && p == prefix+"init/error":
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(os.Stderr, "relay: a runtime failed to start: %s\n", b)
		w.WriteHeader(http.StatusAccepted)
	default:
		http.Error(w, "not part of the relay", http.StatusNotFound)
	}
}

// invoke hands the request's body to a runtime and answers with what it
// posts back (502 for an /error).
func (rl *relay) invoke(w http.ResponseWriter, r *http.Request) {
	event, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	c := rl.newCall(event)
	if !rl.hand(r.Context(), c) {
		return
	}
	var a answer
	select {
	case a = <-c.reply:
	case <-r.Context().Done():
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(a.body)))
	if a.failed {
		w.WriteHeader(http.StatusBadGateway)
	}
	_, _ = w.Write(a.body)
}

// next is a runtime's long poll: it answers with the next invoke's event.
func (rl *relay) next(w http.ResponseWriter, r *http.Request) {
	var c *call
	select {
	case c = <-rl.calls:
	case <-r.Context().Done():
		return
	}
	rl.mu.Lock()
	rl.pending[c.id] = c
	rl.mu.Unlock()
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Lambda-Runtime-Aws-Request-Id", c.id)
	h.Set("Lambda-Runtime-Deadline-Ms", strconv.FormatInt(time.Now().Add(time.Minute).UnixMilli(), 10))
	h.Set("Lambda-Runtime-Invoked-Function-Arn", "arn:aws:lambda:us-east-1:000000000000:function:relay")
	h.Set("Content-Length", strconv.Itoa(len(c.event)))
	_, _ = w.Write(c.event)
}

// answered is a runtime's /response or /error for the invoke id.
func (rl *relay) answered(w http.ResponseWriter, r *http.Request, id, what string) {
	if what != "response" && what != "error" {
		http.Error(w, "not part of the relay", http.StatusNotFound)
		return
	}
	body, err := io.ReadAll(r.Body)
	rl.mu.Lock()
	c := rl.pending[id]
	delete(rl.pending, id)
	rl.mu.Unlock()
	if c == nil {
		http.Error(w, "unknown request id "+id, http.StatusBadRequest)
		return
	}
	if err != nil {
		body, what = []byte("read the runtime's answer: "+err.Error()), "error"
	}
	c.reply <- answer{body: body, failed: what == "error"}
	w.WriteHeader(http.StatusAccepted)
}
