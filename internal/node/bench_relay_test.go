package node_test

import (
	"io"
	"net"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// relayCall is one request the relay hands to a runtime.
type relayCall struct {
	id    string
	body  []byte
	reply chan []byte
}

// startRelay is the floor baseline of BenchmarkWarmInvoke: the least any
// platform speaking the Lambda Runtime API over HTTP must do, without
// Nimbus. A plain net/http server hands each POST / to the /next long poll
// of one of n runtimes (the same aws-lambda-go binary the benchmark
// deploys, started directly: no sandbox, engine, registry or API) through
// a channel, and answers with what the runtime posts to /response. It
// returns the URL to POST to.
func startRelay(b *testing.B, n int) string {
	b.Helper()
	calls := make(chan *relayCall)
	var (
		mu      sync.Mutex
		pending = map[string]*relayCall{}
		ids     atomic.Int64
	)
	const prefix = "/2018-06-01/runtime/invocation/"
	handler := func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method == http.MethodPost && r.URL.Path == "/":
			body, err := io.ReadAll(r.Body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			c := &relayCall{id: strconv.FormatInt(ids.Add(1), 10), body: body, reply: make(chan []byte, 1)}
			select {
			case calls <- c:
			case <-r.Context().Done():
				return
			}
			out := <-c.reply
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Content-Length", strconv.Itoa(len(out)))
			_, _ = w.Write(out)
		case r.Method == http.MethodGet && r.URL.Path == prefix+"next":
			var c *relayCall
			select {
			case c = <-calls:
			case <-r.Context().Done():
				return
			}
			mu.Lock()
			pending[c.id] = c
			mu.Unlock()
			h := w.Header()
			h.Set("Content-Type", "application/json")
			h.Set("Lambda-Runtime-Aws-Request-Id", c.id)
			h.Set("Lambda-Runtime-Deadline-Ms", strconv.FormatInt(time.Now().Add(time.Minute).UnixMilli(), 10))
			h.Set("Lambda-Runtime-Invoked-Function-Arn", "arn:aws:lambda:us-east-1:000000000000:function:relay")
			h.Set("Content-Length", strconv.Itoa(len(c.body)))
			_, _ = w.Write(c.body)
		case r.Method == http.MethodPost && strings.HasPrefix(r.URL.Path, prefix) && strings.HasSuffix(r.URL.Path, "/response"):
			id := strings.TrimSuffix(strings.TrimPrefix(r.URL.Path, prefix), "/response")
			body, err := io.ReadAll(r.Body)
			mu.Lock()
			c := pending[id]
			delete(pending, id)
			mu.Unlock()
			if c == nil || err != nil {
				http.Error(w, "unknown request id or unreadable body", http.StatusBadRequest)
				return
			}
			c.reply <- body
			w.WriteHeader(http.StatusAccepted)
		default:
			http.Error(w, "not part of the relay", http.StatusNotFound)
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	hs := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(handler)}
	go func() { _ = hs.Serve(ln) }()
	b.Cleanup(func() { _ = hs.Close() })

	bin := writeNoop(b)
	for range n {
		cmd := exec.Command(bin)
		cmd.Env = append(baseEnv, "AWS_LAMBDA_RUNTIME_API="+ln.Addr().String(), "_HANDLER=bootstrap")
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		})
	}
	return "http://" + ln.Addr().String() + "/"
}
