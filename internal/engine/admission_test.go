package engine

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nimbus-serverless/nimbus"
)

// sized returns a copy of fn under another name with another MemorySize.
func sized(fn *nimbus.Function, name string, memoryMB int) *nimbus.Function {
	c := named(fn, name)
	c.MemoryMB = memoryMB
	return c
}

// TestMemoryAdmissionEvicts: a start that the node's memory cannot admit
// evicts idle instances of other functions, as many as it takes, though
// the instance cap has room.
func TestMemoryAdmissionEvicts(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.MaxInstances = 10; c.MaxMemoryMB = 300 })
	a1, a2, b := sized(h.fn, "a1", 128), sized(h.fn, "a2", 128), sized(h.fn, "b", 256)
	h.ok(t, a1, `{}`)
	h.clock.Add(time.Second)
	h.ok(t, a2, `{}`) // 256 MB of 300 in use
	h.clock.Add(time.Second)
	h.ok(t, b, `{}`) // needs 256: both idle instances must go
	if got := h.e.Stats("a1").Instances + h.e.Stats("a2").Instances; got != 0 {
		t.Errorf("a1 and a2 have %d instances, want both evicted to admit b's 256 MB", got)
	}
	if got := h.e.Stats("b").Instances; got != 1 {
		t.Errorf("b has %d instances, want 1", got)
	}
}

// TestMemoryAdmissionBusy: with the node's memory held by a busy instance,
// a start waits and gets 429 after the queue timeout; a function larger
// than the node admits gets 429 at once.
func TestMemoryAdmissionBusy(t *testing.T) {
	h := newHarness(t, func(c *Config) {
		c.MaxInstances = 10
		c.MaxMemoryMB = 300
		c.QueueTimeout = 200 * time.Millisecond
	})
	big := sized(h.fn, "big", 256)
	big.Timeout = 60
	g := newGate(t)
	held := make(chan error, 1)
	go func() {
		res, err := h.invoke(t, big, g.payload())
		if err == nil && res.Err != nil {
			err = res.Err
		}
		held <- err
	}()
	waitFor(t, func() bool { running, _, _, _, _ := g.Stats(); return running == 1 })
	if _, err := h.invoke(t, sized(h.fn, "small", 128), `{}`); !errors.Is(err, nimbus.ErrThrottled) {
		t.Errorf("err = %v, want ErrThrottled: 256 + 128 MB is over the node's 300", err)
	}
	_, err := h.invoke(t, sized(h.fn, "huge", 512), `{}`)
	if !errors.Is(err, nimbus.ErrThrottled) || !strings.Contains(err.Error(), "512 MB") {
		t.Errorf("err = %v, want ErrThrottled naming the function's 512 MB", err)
	}
	g.Open()
	if err := <-held; err != nil {
		t.Errorf("the busy request: %v", err)
	}
	h.ok(t, sized(h.fn, "small", 128), `{}`) // big is idle now: evicted for it
	if got := h.sb.starts.Load(); got != 2 {
		t.Errorf("instances started = %d, want 2 (big, then small)", got)
	}
}
