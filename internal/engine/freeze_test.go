package engine

import (
	"context"
	"syscall"
	"testing"
	"time"

	"github.com/nimbus-serverless/nimbus/internal/sandbox"
)

// stopBackend is execBackend whose instances freeze: SIGSTOP to their
// process group, SIGCONT to thaw. A stopped runtime answers nothing, so an
// invocation handed to a frozen instance times out.
type stopBackend struct {
	*execBackend
	started chan *stopInstance
}

func (b stopBackend) Isolation() sandbox.Isolation { return sandbox.Isolation{Freeze: true} }

func (b stopBackend) Start(ctx context.Context, spec sandbox.Spec) (sandbox.Instance, error) {
	inst, err := b.execBackend.Start(ctx, spec)
	if err != nil {
		return nil, err
	}
	si := &stopInstance{execInstance: inst.(*execInstance), states: make(chan bool, 16)}
	b.started <- si
	return si, nil
}

type stopInstance struct {
	*execInstance
	states chan bool // true for each Freeze, false for each Thaw
}

func (i *stopInstance) Freeze() error {
	i.states <- true
	return syscall.Kill(-i.cmd.Process.Pid, syscall.SIGSTOP)
}

func (i *stopInstance) Thaw() error {
	i.states <- false
	return syscall.Kill(-i.cmd.Process.Pid, syscall.SIGCONT)
}

// TestFreezeIdle checks that an idle instance is frozen once its runtime
// polls /next again, thawed when a request takes it, and killable while
// frozen.
func TestFreezeIdle(t *testing.T) {
	started := make(chan *stopInstance, 4)
	h := newHarness(t, func(c *Config) {
		c.Sandbox = stopBackend{execBackend: c.Sandbox.(*execBackend), started: started}
	})
	pid, _ := h.ok(t, h.fn, `{"echo":1}`)
	states := (<-started).states
	expect := func(want bool) {
		t.Helper()
		select {
		case got := <-states:
			if got != want {
				t.Fatalf("frozen %v, want %v", got, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("no Freeze or Thaw (want frozen %v)", want)
		}
	}
	expect(true)
	for range 3 {
		if again, _ := h.ok(t, h.fn, `{"echo":2}`); again != pid {
			t.Fatalf("a new instance (pid %d, was %d) served the request", again, pid)
		}
		expect(false)
		expect(true)
	}
	// Close kills the frozen instance; the harness checks that nothing is
	// left running.
}

// TestFreezeAfter: an idle instance is not frozen before FreezeAfter has
// passed, so requests that follow each other closely pay no thaw.
func TestFreezeAfter(t *testing.T) {
	started := make(chan *stopInstance, 4)
	h := newHarness(t, func(c *Config) {
		c.Sandbox = stopBackend{execBackend: c.Sandbox.(*execBackend), started: started}
		c.FreezeAfter = time.Hour
	})
	h.ok(t, h.fn, `{"echo":1}`)
	states := (<-started).states
	h.ok(t, h.fn, `{"echo":2}`)
	select {
	case got := <-states:
		t.Fatalf("the instance was frozen (%v) within FreezeAfter", got)
	case <-time.After(2 * time.Second):
	}
}
