package engine

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nimbus-serverless/nimbus"
)

// The queue in front of scale-out (queue.go). The engine learns whether a
// function's requests slow down when more than Config.CPUQueue of its
// instances are busy; the tests teach it with real requests (a CPU-bound
// one: behave's alloc_mb writes every byte of its megabytes; an I/O-bound
// one: sleep_ms), then hold requests at a gate to see how many run at once.

// cpuQueueHarness is a harness whose engine queues from 2 busy instances
// on, holding a request for at most wait.
func cpuQueueHarness(t *testing.T, wait time.Duration) *harness {
	h := newHarness(t, func(c *Config) {
		c.CPUQueue, c.CPUQueueWait = 2, wait
		c.QueueTimeout = time.Minute
	})
	h.fn.Timeout = 60 // held at the gate while the test looks
	return h
}

// learn runs payload on fn twice alone and then 16 at once, up to three
// times until the engine's figures say whether 16 at once slow it down
// (contended) as the test expects: on a loaded machine one burst may not
// tell.
func (h *harness) learn(t *testing.T, fn *nimbus.Function, payload string, contended bool) {
	t.Helper()
	for range 2 {
		if res, err := h.invoke(t, fn, payload); err != nil || res.Err != nil {
			t.Fatal(err, res.Err)
		}
	}
	p, err := h.e.pool(fn)
	if err != nil {
		t.Fatal(err)
	}
	var hot, least time.Duration
	for range 3 {
		h.burst(t, fn, payload, 16)()
		p.mu.Lock()
		hot, least = p.hotBusy, p.minBusy
		p.mu.Unlock()
		if (hot > contention*least) == contended {
			return
		}
	}
	t.Fatalf("16 requests at once took %s each against %s alone: want contended=%v", hot, least, contended)
}

// TestCPUQueueHoldsCPUBound: 16 callers of a CPU-bound function on a
// budget of 2 busy instances: 2 run, 14 wait for them (no instance is
// started or woken for them), and all succeed.
func TestCPUQueueHoldsCPUBound(t *testing.T) {
	h := cpuQueueHarness(t, time.Minute)
	h.learn(t, h.fn, `{"alloc_mb":30}`, true)
	before := h.e.Stats(h.fn.Name)

	g := newGate(t)
	wait := h.burst(t, h.fn, g.payload(), 16)
	waitFor(t, func() bool {
		running, _, _, _, _ := g.Stats()
		return running == 2 && h.e.Stats(h.fn.Name).Held == 14
	})
	if _, _, maxRunning, _, _ := g.Stats(); maxRunning != 2 {
		t.Errorf("at most %d requests running at once, want 2 with 14 held", maxRunning)
	}
	if st := h.e.Stats(h.fn.Name); st.Instances != before.Instances || st.Starting != 0 {
		t.Errorf("while holding: %+v, want the %d instances there were and none starting", st, before.Instances)
	}
	g.Open()
	wait()
	if _, _, maxRunning, _, finished := g.Stats(); finished != 16 || maxRunning > 2 {
		t.Errorf("%d of 16 finished, at most %d at once; want all, 2 at once", finished, maxRunning)
	}
	if st := h.e.Stats(h.fn.Name); st.Waiting != 0 || st.Held != 0 {
		t.Errorf("after: %+v, want no request waiting", st)
	}
}

// TestCPUQueueScalesIOBound: a function that sleeps takes as long with 16
// instances busy as with 2, so it is never held: 16 callers run on 16
// instances at once.
func TestCPUQueueScalesIOBound(t *testing.T) {
	h := cpuQueueHarness(t, time.Minute)
	h.learn(t, h.fn, `{"sleep_ms":300}`, false)

	g := newGate(t)
	wait := h.burst(t, h.fn, g.payload(), 16)
	waitFor(t, func() bool { running, _, _, _, _ := g.Stats(); return running == 16 })
	if st := h.e.Stats(h.fn.Name); st.Held != 0 {
		t.Errorf("an I/O-bound function's requests held: %+v", st)
	}
	if _, _, _, maxInstances, _ := g.Stats(); maxInstances != 16 {
		t.Errorf("%d instances at once, want 16", maxInstances)
	}
	g.Open()
	wait()
}

// TestCPUQueueWaitIsBounded: a held request whose busy instances do not
// free within Config.CPUQueueWait is let go: it takes an idle instance
// (the gate never opens for it while it waits).
func TestCPUQueueWaitIsBounded(t *testing.T) {
	h := cpuQueueHarness(t, 2*time.Second)
	h.learn(t, h.fn, `{"alloc_mb":30}`, true)

	g := newGate(t)
	wait := h.burst(t, h.fn, g.payload(), 2)
	waitFor(t, func() bool { running, _, _, _, _ := g.Stats(); return running == 2 })
	began := time.Now()
	wait3 := h.burst(t, h.fn, g.payload(), 1)
	waitFor(t, func() bool { running, _, _, _, _ := g.Stats(); return running == 3 })
	if took := time.Since(began); took > 9*time.Second {
		t.Errorf("the third request waited %s, bound 2s", took)
	}
	if st := h.e.Stats(h.fn.Name); st.Held != 0 || st.Waiting != 0 {
		t.Errorf("after the bound: %+v, want no request held", st)
	}
	g.Open()
	wait()
	wait3()
}

// TestCPUQueueCallerLeaves: a caller that goes away while held leaves the
// queue: nothing held or waiting, no instance started, the next request
// served.
func TestCPUQueueCallerLeaves(t *testing.T) {
	h := cpuQueueHarness(t, time.Minute)
	h.learn(t, h.fn, `{"alloc_mb":30}`, true)
	before := h.e.Stats(h.fn.Name)

	g := newGate(t)
	wait := h.burst(t, h.fn, g.payload(), 2)
	waitFor(t, func() bool { running, _, _, _, _ := g.Stats(); return running == 2 })
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		_, err := h.e.Invoke(ctx, h.fn, nimbus.Invocation{RequestID: "leaves", Payload: []byte(`{}`)})
		done <- err
	}()
	waitFor(t, func() bool { return h.e.Stats(h.fn.Name).Held == 1 })
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("held caller that left: %v, want context.Canceled", err)
	}
	if st := h.e.Stats(h.fn.Name); st.Held != 0 || st.Waiting != 0 || st.Instances != before.Instances {
		t.Errorf("after the caller left: %+v, want nothing waiting and the %d instances", st, before.Instances)
	}
	g.Open()
	wait()
	h.ok(t, h.fn, `{}`)
}

// TestCPUQueueHoldRule: what holdLocked decides from the pool's figures.
func TestCPUQueueHoldRule(t *testing.T) {
	h := cpuQueueHarness(t, time.Minute)
	fn := *h.fn
	fn.Timeout = 1
	p, err := h.e.pool(&fn)
	if err != nil {
		t.Fatal(err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, tc := range []struct {
		name            string
		busy, per, held int
		avg, hot, least time.Duration
		hold            bool
		bound           time.Duration
	}{
		{"fewer busy than the budget", 1, 1, 0, time.Millisecond, 10 * time.Millisecond, time.Millisecond, false, 0},
		{"nothing learnt", 2, 1, 0, 0, 0, 0, false, 0},
		{"no slower with more busy (I/O)", 2, 1, 0, 100 * time.Millisecond, 110 * time.Millisecond, 100 * time.Millisecond, false, 0},
		{"CPU-bound: held for at most the function's timeout", 2, 1, 0, 10 * time.Millisecond, 30 * time.Millisecond, 10 * time.Millisecond, true, time.Second},
		{"expected wait beyond the bound", 2, 1, 300, 10 * time.Millisecond, 30 * time.Millisecond, 10 * time.Millisecond, false, 0},
		{"more slots per instance, shorter wait", 2, 4, 300, 10 * time.Millisecond, 30 * time.Millisecond, 10 * time.Millisecond, true, time.Second},
	} {
		p.busy, p.perInstance, p.held = tc.busy, tc.per, tc.held
		p.avgBusy, p.hotBusy, p.minBusy = tc.avg, tc.hot, tc.least
		bound, hold := p.holdLocked()
		if hold != tc.hold || bound != tc.bound {
			t.Errorf("%s: hold %v for %s, want %v for %s", tc.name, hold, bound, tc.hold, tc.bound)
		}
	}
	p.busy, p.perInstance, p.held, p.avgBusy, p.hotBusy, p.minBusy = 0, 1, 0, 0, 0, 0
}
