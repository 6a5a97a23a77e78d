package engine

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/runtimes"
)

// Digests of the counting functions (behave is the Go one, webGateCode
// the HTTP one).
const (
	pyCountDigest   = "8888888888888888888888888888888888888888888888888888888888888888"
	nodeCountDigest = "9999999999999999999999999999999999999999999999999999999999999999"
	webCountDigest  = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
)

// Functions that count their calls in their global state and sleep as
// long as the event's sleep_ms says, answering {"n": calls, "pid": pid}.
const (
	pyCount = `import os, time
n = 0
def handler(event, context):
    global n
    n += 1
    time.sleep(event.get("sleep_ms", 0) / 1000)
    return {"n": n, "pid": os.getpid()}
`
	nodeCount = `let n = 0;
export const handler = async (event) => {
  n++;
  await new Promise((r) => setTimeout(r, event.sleep_ms || 0));
  return { n, pid: process.pid };
};
`
)

// countingHarness is a harness whose engine runs the counting functions
// of every kind: Python, Node, a Go provided function and an HTTP
// function, with the host's interpreters and the embedded bootstraps.
func countingHarness(t *testing.T) (*harness, []*nimbus.Function) {
	t.Helper()
	write := func(name, body string) string {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	boot := t.TempDir()
	if err := runtimes.Install(boot); err != nil {
		t.Fatal(err)
	}
	var py, node *runtimes.Runtime
	rts := runtimes.Discover(slog.New(slog.DiscardHandler))
	for i, rt := range rts {
		switch {
		case rt.Kind == runtimes.KindPython && py == nil:
			py = &rts[i]
		case rt.Kind == runtimes.KindNode && node == nil:
			node = &rts[i]
		}
	}
	if py == nil || node == nil {
		t.Fatalf("the host offers no Python or no Node runtime: %+v", rts)
	}
	h := newHarness(t, func(c *Config) {
		c.Runtimes, c.BootstrapDir = rts, boot
		c.Code = dirCache{dirs: map[string]string{
			goodDigest:      behaveDir,
			pyCountDigest:   write("app.py", pyCount),
			nodeCountDigest: write("index.mjs", nodeCount),
			webCountDigest:  webGateCode(t),
		}}
	})
	fn := func(name, runtime, handler, digest string) *nimbus.Function {
		f := *h.fn
		f.Name, f.Runtime, f.Handler, f.CodeSHA256 = name, runtime, handler, digest
		return &f
	}
	return h, []*nimbus.Function{
		fn("py", py.ID, "app.handler", pyCountDigest),
		fn("node", node.ID, "index.handler", nodeCountDigest),
		fn("go", behaveRuntime, "bootstrap", goodDigest),
		fn("web", "http", "", webCountDigest),
	}
}

// counted invokes fn and requires an answer: how many calls its instance
// has taken, and the report.
func (h *harness) counted(t *testing.T, fn *nimbus.Function, payload string) (int, nimbus.Report) {
	t.Helper()
	res, err := h.invoke(t, fn, payload)
	if err != nil || res.Err != nil {
		t.Fatalf("%s: Invoke(%s): %v, %v", fn.Name, payload, err, res.Err)
	}
	var out struct{ N int }
	if err := json.Unmarshal(res.Payload, &out); err != nil {
		t.Fatalf("%s: Invoke(%s) = %q: %v", fn.Name, payload, res.Payload, err)
	}
	return out.N, res.Report
}

// leave invokes fn with payload and leaves (cancels the context, as the
// HTTP server does for a client that disconnects) after 100 ms.
func (h *harness) leave(t *testing.T, fn *nimbus.Function, payload string) (nimbus.Result, time.Duration) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	time.AfterFunc(100*time.Millisecond, cancel)
	began := time.Now()
	res, err := h.e.Invoke(ctx, fn, nimbus.Invocation{RequestID: "left-" + fn.Name, Payload: []byte(payload)})
	if err != nil {
		t.Fatalf("%s: Invoke: %v", fn.Name, err)
	}
	return res, time.Since(began)
}

// TestCallerLeftKeepsInstance (issue 17): a caller that leaves 100 ms into
// a 500 ms run does not cost the function its instance. A Runtime-API
// function runs on to its end (its duration is the whole run), an HTTP
// function's request is cancelled; either way the answer is dropped
// (Runtime.Abandoned) and the next invoke runs warm on the same instance,
// whose global state has counted every call.
func TestCallerLeftKeepsInstance(t *testing.T) {
	h, fns := countingHarness(t)
	for _, fn := range fns {
		t.Run(fn.Name, func(t *testing.T) {
			n, first := h.counted(t, fn, `{}`)
			if n != 1 || !first.ColdStart {
				t.Fatalf("first invoke: call %d, cold start %v; want 1, true", n, first.ColdStart)
			}
			res, took := h.leave(t, fn, `{"sleep_ms":500}`)
			if res.Err == nil || res.Err.Type != "Runtime.Abandoned" || res.Payload != nil {
				t.Fatalf("left invoke: %q, %+v; want a Runtime.Abandoned error and no payload", res.Payload, res.Err)
			}
			if res.Report.InstanceID != first.InstanceID || res.Report.ColdStart {
				t.Errorf("left invoke ran on %s (cold %v), want %s", res.Report.InstanceID, res.Report.ColdStart, first.InstanceID)
			}
			if fn.Runtime == "http" {
				if took > 400*time.Millisecond || res.Report.Duration > 400*time.Millisecond {
					t.Errorf("left HTTP invoke returned after %s (duration %s): its request was not cancelled", took, res.Report.Duration)
				}
			} else if res.Report.Duration < 500*time.Millisecond {
				t.Errorf("left invoke's duration is %s, want the whole run (500 ms or more)", res.Report.Duration)
			}
			n, next := h.counted(t, fn, `{}`)
			if n != 3 || next.InstanceID != first.InstanceID || next.ColdStart {
				t.Errorf("after the caller left: call %d on %s (cold %v); want call 3 on %s, warm", n, next.InstanceID, next.ColdStart, first.InstanceID)
			}
		})
	}
	if got := h.sb.starts.Load(); got != int32(len(fns)) {
		t.Errorf("%d instances started for %d functions, want one each", got, len(fns))
	}
}

// TestCallerLeftTimeout: an instance that does not finish its invocation
// is still killed at the function's timeout, whether its caller has left
// (a Runtime-API function runs on after its caller leaves) or stayed (an
// HTTP function's request ends with its caller).
func TestCallerLeftTimeout(t *testing.T) {
	h, fns := countingHarness(t)
	for _, fn := range fns {
		t.Run(fn.Name, func(t *testing.T) {
			fn.Timeout = 1
			_, first := h.counted(t, fn, `{}`)
			var res nimbus.Result
			var took time.Duration
			if fn.Runtime == "http" {
				began := time.Now()
				var err error
				if res, err = h.invoke(t, fn, `{"sleep_ms":60000}`); err != nil {
					t.Fatal(err)
				}
				took = time.Since(began)
			} else {
				res, took = h.leave(t, fn, `{"sleep_ms":60000}`)
			}
			if res.Err == nil || res.Err.Type != "Sandbox.Timedout" || took < time.Second || took > 10*time.Second {
				t.Fatalf("invoke returned %+v after %s; want Sandbox.Timedout after 1 s", res.Err, took)
			}
			_, next := h.counted(t, fn, `{}`)
			if next.InstanceID == first.InstanceID || !next.ColdStart {
				t.Errorf("after a timeout the next invoke ran on %s (cold %v), the instance that timed out", next.InstanceID, next.ColdStart)
			}
		})
	}
}

// TestStopKillsInstance: a caller that stops its invocation (a cause of
// its own: the Async Service's stop) has the instance killed at once.
func TestStopKillsInstance(t *testing.T) {
	h := newHarness(t, nil)
	pid, _ := h.ok(t, h.fn, `{}`)
	ctx, cancel := context.WithCancelCause(t.Context())
	stopped := errors.New("stopped by the test")
	time.AfterFunc(200*time.Millisecond, func() { cancel(stopped) })
	began := time.Now()
	res, err := h.e.Invoke(ctx, h.fn, nimbus.Invocation{RequestID: "stopped", Payload: []byte(`{"sleep_ms":3000}`)})
	if err != nil || res.Err == nil || res.Err.Type != "Runtime.Abandoned" || time.Since(began) > 2*time.Second {
		t.Fatalf("stopped invoke: %v, %+v after %s; want Runtime.Abandoned at once", err, res.Err, time.Since(began))
	}
	if pid2, _ := h.ok(t, h.fn, `{}`); pid2 == pid {
		t.Error("the instance of a stopped request was reused while its function still ran")
	}
}
