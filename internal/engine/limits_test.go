package engine

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nimbus-serverless/nimbus"
)

// withReserved returns a copy of fn with a reserved concurrency of n.
func withReserved(fn *nimbus.Function, n int) *nimbus.Function {
	c := *fn
	c.ReservedConcurrency = &n
	return &c
}

// burst invokes fn n times at once; the returned func waits for the answers
// and reports those that failed.
func (h *harness) burst(t *testing.T, fn *nimbus.Function, payload string, n int) (wait func()) {
	t.Helper()
	errs := make(chan error, n)
	for range n {
		go func() {
			id := fmt.Sprintf("req-%d", reqSeq.Add(1))
			res, err := h.e.Invoke(t.Context(), fn, nimbus.Invocation{RequestID: id, Payload: []byte(payload)})
			if err == nil && res.Err != nil {
				err = res.Err
			}
			errs <- err
		}()
	}
	return func() {
		t.Helper()
		for range n {
			if err := <-errs; err != nil {
				t.Errorf("invoke: %v", err)
			}
		}
	}
}

// warmUp leaves idle instances of fn: n requests held at a gate at once,
// served by the given number of instances.
func (h *harness) warmUp(t *testing.T, fn *nimbus.Function, n, instances int) {
	t.Helper()
	g := newGate(t)
	wait := h.burst(t, fn, g.payload(), n)
	waitFor(t, func() bool { running, _, _, _, _ := g.Stats(); return running == n })
	g.Open()
	wait()
	if st := h.e.Stats(fn.Name); st.Instances != instances || st.Idle != instances {
		t.Fatalf("after warming: %+v, want %d idle instances", st, instances)
	}
}

// TestLoweredReservedConcurrency (issue 11): a lowered reserved concurrency
// holds for warm instances at once; requests beyond it wait, and surplus
// idle instances stop; raising it again lets the waiters go.
func TestLoweredReservedConcurrency(t *testing.T) {
	for _, tc := range []struct {
		from, to int
		refresh  bool // the node saw the change (OnChange), or only the invoke did
	}{
		{8, 2, true},
		{2, 1, true},
		{8, 2, false},
	} {
		t.Run(fmt.Sprintf("%d to %d refresh=%v", tc.from, tc.to, tc.refresh), func(t *testing.T) {
			h := newHarness(t, nil)
			h.fn.Timeout = 60 // held at the gate while the test looks
			h.warmUp(t, withReserved(h.fn, tc.from), tc.from, tc.from)

			lowered := withReserved(h.fn, tc.to)
			if tc.refresh {
				h.e.Refresh(lowered.Name, lowered)
			}
			n := 3 * tc.to
			g := newGate(t)
			wait := h.burst(t, lowered, g.payload(), n)
			// Stable once every request runs or waits: the gate holds them.
			waitFor(t, func() bool {
				running, _, _, _, _ := g.Stats()
				return running+h.e.Stats("behave").Waiting == n
			})
			running, _, maxRunning, _, _ := g.Stats()
			if maxRunning > tc.to || running != tc.to {
				t.Errorf("after lowering to %d: %d requests ran at once (now %d), want %d", tc.to, maxRunning, running, tc.to)
			}
			waitFor(t, func() bool { return h.e.Stats("behave").Instances == tc.to })
			if got := h.sb.starts.Load(); got != int32(tc.from) {
				t.Errorf("instances started = %d, want the %d warm ones only", got, tc.from)
			}

			// Raising the limit lets the waiters go at once.
			raised := withReserved(h.fn, tc.from)
			h.e.Refresh(raised.Name, raised)
			want := min(n, tc.from)
			waitFor(t, func() bool { running, _, _, _, _ := g.Stats(); return running == want })
			g.Open()
			wait()
		})
	}
}

// TestLoweredReservedConcurrencyHTTP: for an HTTP function taking several
// requests per instance, the reserved concurrency bounds the instances in
// use.
func TestLoweredReservedConcurrencyHTTP(t *testing.T) {
	const webDigest = "4444444444444444444444444444444444444444444444444444444444444444"
	dir := webGateCode(t)
	h := newHarness(t, func(c *Config) { c.Code = dirCache{dirs: map[string]string{webDigest: dir}} })
	web := *h.fn
	web.Name, web.Runtime, web.CodeSHA256, web.HTTPConcurrency = "web", "http", webDigest, 2
	web.Timeout = 60
	h.warmUp(t, withReserved(&web, 3), 6, 3) // 3 instances, 2 requests each

	lowered := withReserved(&web, 1)
	h.e.Refresh(lowered.Name, lowered)
	g := newGate(t)
	wait := h.burst(t, lowered, g.payload(), 6)
	waitFor(t, func() bool {
		running, _, _, _, _ := g.Stats()
		return running+h.e.Stats("web").Waiting == 6
	})
	running, _, maxRunning, maxInstances, _ := g.Stats()
	if maxInstances > 1 || maxRunning > 2 || running != 2 {
		t.Errorf("after lowering to 1: %d instances and %d requests in use at once (now %d requests), want 1 and 2",
			maxInstances, maxRunning, running)
	}
	g.Open()
	wait()
	waitFor(t, func() bool { return h.e.Stats("web").Instances == 1 })
}

// webGateCode writes an HTTP function that passes the gate of its request
// body, sleeps as long as its sleep_ms says and answers with its pid and
// how many requests its instance has taken (n).
func webGateCode(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	const server = `import json, os, socket, threading, time
from http.server import ThreadingHTTPServer, BaseHTTPRequestHandler

calls = 0
lock = threading.Lock()

def pass_gate(addr):
    host, port = addr.rsplit(":", 1)
    with socket.create_connection((host, int(port))) as c:
        f = c.makefile("rw")
        for msg in ("in", "out"):
            f.write("%s %d\n" % (msg, os.getpid()))
            f.flush()
            f.readline()

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        global calls
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        with lock:
            calls += 1
            n = calls
        if body.get("gate"):
            pass_gate(body["gate"])
        time.sleep(body.get("sleep_ms", 0) / 1000)
        out = json.dumps({"pid": os.getpid(), "n": n}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *args):
        pass

    def handle_error(self, *args):
        pass  # a caller that left

ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
`
	if err := os.WriteFile(filepath.Join(dir, "server.py"), []byte(server), 0o644); err != nil {
		t.Fatal(err)
	}
	boot := "#!/bin/sh\nexec /usr/bin/python3 \"$(dirname \"$0\")/server.py\"\n"
	if err := os.WriteFile(filepath.Join(dir, "bootstrap"), []byte(boot), 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestReservedConcurrencyIsFunctionWide: a function's reserved concurrency
// is one count for all its versions' pools, as Lambda's: with 2 reserved
// and both held on $LATEST, an invoke of version 1 is throttled
// (ReservedFunctionConcurrentInvocationLimitExceeded), and runs once one
// is done. Provisioned concurrency is carved out of it: with 1
// provisioned on version 1, $LATEST runs 1 at a time, version 1 its 1
// whatever $LATEST runs.
func TestReservedConcurrencyIsFunctionWide(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.QueueTimeout = 300 * time.Millisecond })
	h.fn.Timeout = 60 // held at the gate while the test looks
	latest := withReserved(h.fn, 2)
	latest.Versions = []nimbus.VersionRef{{Number: 1}}
	v1 := *h.fn // a version's snapshot holds no concurrency settings
	v1.Version = "1"
	h.e.Refresh(latest.Name, latest)

	throttled := func(fn *nimbus.Function) {
		t.Helper()
		_, err := h.invoke(t, fn, `{}`)
		if !errors.Is(err, nimbus.ErrReservedConcurrency) || !errors.Is(err, nimbus.ErrThrottled) {
			t.Errorf("invoke of %s beyond the reservation: %v, want it throttled for the reserved concurrency", poolID(fn), err)
		}
	}
	g := newGate(t)
	wait := h.burst(t, latest, g.payload(), 2)
	waitFor(t, func() bool { running, _, _, _, _ := g.Stats(); return running == 2 })
	throttled(&v1)
	throttled(latest)
	g.Open()
	wait()
	h.ok(t, &v1, `{}`)

	if err := h.e.Provision(&v1, 1); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return h.e.Stats(poolID(&v1)).Idle >= 1 })
	g = newGate(t)
	wait = h.burst(t, latest, g.payload(), 1)
	waitFor(t, func() bool { running, _, _, _, _ := g.Stats(); return running == 1 })
	throttled(latest) // the other one is version 1's
	waitV1 := h.burst(t, &v1, g.payload(), 1)
	waitFor(t, func() bool { running, _, _, _, _ := g.Stats(); return running == 2 })
	throttled(&v1)
	g.Open()
	wait()
	waitV1()
}
