package engine

import (
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nimbus-serverless/nimbus"
)

// named returns a copy of fn under another name: another function with the
// same code.
func named(fn *nimbus.Function, name string) *nimbus.Function {
	c := *fn
	c.Name = name
	return &c
}

// TestEvictIdleForAnotherFunction: at the node's cap, a function with no
// instance gets one by evicting the least recently used idle instance of
// another function; the other warm instance stays.
func TestEvictIdleForAnotherFunction(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.MaxInstances = 2 })
	a, b, c := named(h.fn, "a"), named(h.fn, "b"), named(h.fn, "c")
	pidA, _ := h.ok(t, a, `{}`)
	h.clock.Add(time.Second)
	h.ok(t, b, `{}`)
	h.clock.Add(time.Second)
	if pid, _ := h.ok(t, a, `{}`); pid != pidA { // a is used again: b is now the least recently used
		t.Fatalf("a's second invoke ran in pid %d, want its warm instance %d", pid, pidA)
	}
	h.clock.Add(time.Second)

	h.ok(t, c, `{}`) // the harness's queue timeout is 5 s: served by eviction, not by a timeout
	if got := h.e.Stats("b").Instances; got != 0 {
		t.Errorf("b has %d instances, want its idle one evicted (it was the least recently used)", got)
	}
	if got := h.e.Stats("a").Instances; got != 1 {
		t.Errorf("a has %d instances, want its warm one kept", got)
	}
	if pid, _ := h.ok(t, a, `{}`); pid != pidA {
		t.Errorf("a ran in pid %d after the eviction, want its warm instance %d", pid, pidA)
	}
	if got := h.sb.starts.Load(); got != 3 {
		t.Errorf("instances started = %d, want 3 (a, b, c)", got)
	}
}

// TestNodeFullOfBusyInstances: busy instances are never evicted; a request
// for another function waits and gets 429 after the queue timeout.
func TestNodeFullOfBusyInstances(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.MaxInstances = 1; c.QueueTimeout = 200 * time.Millisecond })
	h.fn.Timeout = 60
	g := newGate(t)
	held := make(chan error, 1)
	go func() {
		res, err := h.invoke(t, h.fn, g.payload())
		if err == nil && res.Err != nil {
			err = res.Err
		}
		held <- err
	}()
	waitFor(t, func() bool { running, _, _, _, _ := g.Stats(); return running == 1 })
	_, err := h.invoke(t, named(h.fn, "other"), `{}`)
	if !errors.Is(err, nimbus.ErrThrottled) {
		t.Errorf("err = %v, want ErrThrottled at the node-wide cap", err)
	}
	g.Open()
	if err := <-held; err != nil {
		t.Errorf("the busy request: %v, want it to finish on its instance", err)
	}
	if got := h.e.Stats("behave").Instances; got != 1 {
		t.Errorf("behave has %d instances, want its instance kept (nothing waits for room any more)", got)
	}
	if got := h.sb.starts.Load(); got != 1 {
		t.Errorf("instances started = %d, want 1", got)
	}
}

// TestWaitingForRoom: a request that found the node full of busy instances
// is served as soon as room appears, well before its queue timeout: when an
// instance exits, or when a busy instance of another function goes idle
// (and is evicted).
func TestWaitingForRoom(t *testing.T) {
	for _, exits := range []bool{true, false} {
		t.Run(fmt.Sprintf("instance exits=%v", exits), func(t *testing.T) {
			h := newHarness(t, func(c *Config) { c.MaxInstances = 1; c.QueueTimeout = time.Minute })
			h.fn.Timeout = 60
			g := newGate(t)
			held := make(chan nimbus.Result, 1)
			go func() {
				res, _ := h.invoke(t, h.fn, g.payload())
				held <- res
			}()
			waitFor(t, func() bool { running, _, _, _, _ := g.Stats(); return running == 1 })
			waiting := make(chan error, 1)
			go func() {
				res, err := h.invoke(t, named(h.fn, "other"), `{}`)
				if err == nil && res.Err != nil {
					err = res.Err
				}
				waiting <- err
			}()
			waitFor(t, func() bool { return h.e.Stats("other").Waiting == 1 })
			if exits {
				h.sb.mu.Lock()
				h.sb.live[0].Kill()
				h.sb.mu.Unlock()
			} else {
				g.Open()
			}
			select {
			case err := <-waiting:
				if err != nil {
					t.Errorf("the waiting request: %v", err)
				}
			case <-time.After(30 * time.Second): // half its queue timeout
				t.Fatal("the waiting request was not served when room appeared")
			}
			res := <-held
			if exits && (res.Err == nil || res.Err.Type != "Runtime.ExitError") {
				t.Errorf("the killed instance's request got %+v, want Runtime.ExitError", res.Err)
			}
			if !exits && res.Err != nil {
				t.Errorf("the busy request: %v, want it to finish before its instance is evicted", res.Err)
			}
			if got := h.e.Stats("behave").Instances; got != 0 {
				t.Errorf("behave has %d instances, want 0", got)
			}
		})
	}
}

// TestProvisionedNotEvicted: an instance kept warm by provisioned
// concurrency is never evicted, though least recently used; with nothing
// else idle, the request waits and gets 429 as on a full node.
func TestProvisionedNotEvicted(t *testing.T) {
	t.Run("on-demand evicted instead", func(t *testing.T) {
		h := newHarness(t, func(c *Config) { c.MaxInstances = 2 })
		a := named(h.fn, "a")
		a.ProvisionedConcurrency = 1
		h.e.Refresh(a.Name, a)
		waitFor(t, func() bool { return h.e.Stats("a").Idle == 1 })
		h.clock.Add(time.Second)
		h.ok(t, named(h.fn, "b"), `{}`)
		h.clock.Add(time.Second)
		h.ok(t, named(h.fn, "c"), `{}`)
		if got := h.e.Stats("a").Instances; got != 1 {
			t.Errorf("a has %d instances, want its provisioned one", got)
		}
		if got := h.e.Stats("b").Instances; got != 0 {
			t.Errorf("b has %d instances, want its idle one evicted", got)
		}
		if got := h.sb.starts.Load(); got != 3 { // an evicted provisioned instance would be started again
			t.Errorf("instances started = %d, want 3 (a, b, c)", got)
		}
	})
	t.Run("only provisioned idle", func(t *testing.T) {
		h := newHarness(t, func(c *Config) { c.MaxInstances = 2; c.QueueTimeout = 200 * time.Millisecond })
		for _, name := range []string{"a", "b"} {
			fn := named(h.fn, name)
			fn.ProvisionedConcurrency = 1
			h.e.Refresh(name, fn)
			waitFor(t, func() bool { return h.e.Stats(name).Idle == 1 })
		}
		_, err := h.invoke(t, named(h.fn, "c"), `{}`)
		if !errors.Is(err, nimbus.ErrThrottled) {
			t.Errorf("err = %v, want ErrThrottled: provisioned instances are not evicted", err)
		}
		for _, name := range []string{"a", "b"} {
			if got := h.e.Stats(name).Instances; got != 1 {
				t.Errorf("%s has %d instances, want its provisioned one", name, got)
			}
		}
		if got := h.sb.starts.Load(); got != 2 {
			t.Errorf("instances started = %d, want 2", got)
		}
	})
}

// TestDrainingPoolWaitingForRoom: a request waiting for room in a pool
// whose function has since been updated is still served, on the version it
// asked for, and the old pool is not forgotten (its code stays in use)
// while the request waits.
func TestDrainingPoolWaitingForRoom(t *testing.T) {
	const busyDigest = "5555555555555555555555555555555555555555555555555555555555555555"
	h := newHarness(t, func(c *Config) {
		c.MaxInstances = 1
		c.QueueTimeout = time.Minute
		c.Code = dirCache{dirs: map[string]string{goodDigest: behaveDir, busyDigest: behaveDir}}
	})
	busy := named(h.fn, "busy")
	busy.CodeSHA256, busy.Timeout = busyDigest, 60
	g := newGate(t)
	held := make(chan nimbus.Result, 1)
	go func() {
		res, _ := h.invoke(t, busy, g.payload())
		held <- res
	}()
	waitFor(t, func() bool { running, _, _, _, _ := g.Stats(); return running == 1 })

	h.fn.Environment = map[string]string{"VERSION": "v1"}
	waiting := make(chan nimbus.Result, 1)
	go func() {
		res, err := h.invoke(t, h.fn, `{}`)
		if err != nil {
			res.Err = &nimbus.FunctionError{Type: "test", Message: err.Error()}
		}
		waiting <- res
	}()
	waitFor(t, func() bool { return h.e.Stats("behave").Waiting == 1 })
	v2 := *h.fn
	v2.Environment, v2.CodeSHA256, v2.RevisionID = map[string]string{"VERSION": "v2"}, noBootDigest, "r2"
	h.e.Refresh(v2.Name, &v2)
	h.e.Reap()
	inUse := map[string]bool{}
	h.e.CodeInUse(inUse)
	if !inUse[goodDigest] {
		t.Errorf("CodeInUse = %v: the old version's code was dropped while a request waits for it", inUse)
	}
	g.Open()
	if res := <-held; res.Err != nil {
		t.Errorf("the busy request: %v", res.Err)
	}
	res := <-waiting
	var out struct{ Version string }
	if res.Err != nil || json.Unmarshal(res.Payload, &out) != nil || out.Version != "v1" {
		t.Errorf("the waiting request got %s (%v), want version v1", res.Payload, res.Err)
	}
}

// TestEvictionStorm: many callers invoke many functions on a node with
// room for few instances, while one function keeps changing version (its
// pools drain), under -race: every invoke answers, the node never runs
// more than its cap, and the engine ends with nothing waiting for room.
func TestEvictionStorm(t *testing.T) {
	const maxInstances, functions, callers, calls = 3, 8, 16, 10
	h := newHarness(t, func(c *Config) { c.MaxInstances = maxInstances; c.QueueTimeout = time.Minute })
	fns := make([]*nimbus.Function, functions)
	for i := range fns {
		fns[i] = named(h.fn, fmt.Sprintf("f%d", i))
	}
	stop := make(chan struct{})
	over := make(chan int, 1)
	var sampler sync.WaitGroup
	sampler.Go(func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
			}
			h.e.mu.Lock()
			n := h.e.instances
			h.e.mu.Unlock()
			if n > maxInstances {
				select {
				case over <- n:
				default:
				}
			}
		}
	})
	errs := make(chan error, callers*calls)
	var wg sync.WaitGroup
	for c := range callers {
		wg.Go(func() {
			for i := range calls {
				fn := fns[(c*calls+i*7)%functions]
				res, err := h.invoke(t, fn, fmt.Sprintf(`{"sleep_ms":%d}`, 5*(i%3)))
				if err == nil && res.Err != nil {
					err = res.Err
				}
				errs <- err
			}
		})
	}
	wg.Go(func() {
		for i := range 10 {
			v := *fns[0]
			v.Environment = map[string]string{"VERSION": fmt.Sprint(i)}
			h.e.Refresh(v.Name, &v)
			time.Sleep(10 * time.Millisecond)
		}
	})
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(2 * time.Minute):
		t.Fatal("the storm did not end: an invoke hangs")
	}
	close(stop)
	sampler.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("invoke: %v", err)
		}
	}
	t.Logf("%d invokes started %d instances", callers*calls, h.sb.starts.Load())
	select {
	case n := <-over:
		t.Errorf("the node ran %d instances, over its cap of %d", n, maxInstances)
	default:
	}
	waitFor(t, func() bool {
		h.e.mu.Lock()
		defer h.e.mu.Unlock()
		return len(h.e.starved) == 0 && h.e.evicting == 0 && !h.e.rebalancing
	})
}
