package engine

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nimbus-serverless/nimbus/internal/sandbox"
)

// slowBackend is execBackend whose starts take delay first, as a host
// slow to make namespaces, cgroups or links; like a real backend it gives
// up when ctx ends.
type slowBackend struct {
	*execBackend
	delay time.Duration
}

func (b slowBackend) Start(ctx context.Context, spec sandbox.Spec) (sandbox.Instance, error) {
	select {
	case <-time.After(b.delay):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return b.execBackend.Start(ctx, spec)
}

// TestSlowSandboxStartIsNotTheFunctions: the node's part of a start (here
// a sandbox start longer than both the init and the queue timeouts) is
// not the function's init and not a wait in the queue: the request that
// started the instance is answered by it, and its Init Duration (billed)
// is the function's alone.
func TestSlowSandboxStartIsNotTheFunctions(t *testing.T) {
	const delay = 1500 * time.Millisecond
	h := newHarness(t, func(c *Config) {
		c.Sandbox = slowBackend{&execBackend{}, delay}
		c.InitTimeout, c.QueueTimeout = time.Second, 200*time.Millisecond
	})
	res, err := h.invoke(t, h.fn, `{"echo":"cold"}`)
	if err != nil {
		t.Fatalf("Invoke: %v", err)
	}
	if res.Err != nil {
		t.Fatalf("function error %+v, want an answer: the sandbox's start is not the function's init", res.Err)
	}
	if !strings.Contains(string(res.Payload), `"cold"`) {
		t.Errorf("payload %s, want the echo", res.Payload)
	}
	if r := res.Report; !r.ColdStart || r.Init <= 0 || r.Init >= delay {
		t.Errorf("report: cold start %v, Init Duration %s; want the function's init alone, without the sandbox's %s", r.ColdStart, r.Init, delay)
	}
}

// TestStartTimeout: a sandbox start longer than StartTimeout fails the
// request with the node's error, which names the bound, not with the
// function's Runtime.InitTimeout.
func TestStartTimeout(t *testing.T) {
	h := newHarness(t, func(c *Config) {
		c.Sandbox = slowBackend{&execBackend{}, time.Minute}
		c.StartTimeout = 200 * time.Millisecond
	})
	res, err := h.invoke(t, h.fn, `{}`)
	if err == nil {
		t.Fatalf("Invoke answered %s (function error %+v), want the node's error", res.Payload, res.Err)
	}
	if want := "could not start an instance of behave within 200ms"; !strings.Contains(err.Error(), want) {
		t.Errorf("error %q, want it to say %q", err, want)
	}
}

// TestInitTimeout: a function whose init outlasts InitTimeout fails with
// Runtime.InitTimeout, and its process is stopped.
func TestInitTimeout(t *testing.T) {
	dir := t.TempDir()
	boot := "#!/bin/sh\nsleep 30\nexec " + filepath.Join(behaveDir, "bootstrap") + "\n"
	if err := os.WriteFile(filepath.Join(dir, "bootstrap"), []byte(boot), 0o755); err != nil {
		t.Fatal(err)
	}
	const slowDigest = "4444444444444444444444444444444444444444444444444444444444444444"
	h := newHarness(t, func(c *Config) {
		c.Code = dirCache{dirs: map[string]string{slowDigest: dir}}
		c.InitTimeout = 300 * time.Millisecond
	})
	h.fn.CodeSHA256 = slowDigest
	began := time.Now()
	res, err := h.invoke(t, h.fn, `{}`)
	if err != nil {
		t.Fatal(err)
	}
	if res.Err == nil || res.Err.Type != "Runtime.InitTimeout" {
		t.Fatalf("function error = %+v, want Runtime.InitTimeout", res.Err)
	}
	if took := time.Since(began); took > 20*time.Second {
		t.Errorf("the init timeout took %s to end the start", took)
	}
	h.sb.mu.Lock()
	live := append([]*execInstance(nil), h.sb.live...)
	h.sb.mu.Unlock()
	for _, i := range live {
		select {
		case <-i.done:
		case <-time.After(5 * time.Second):
			t.Errorf("the instance that timed out in its init still runs")
		}
	}
}
