package node

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/testenv"
)

// changeReads is a registry read that fails (not "not found") failures
// times, then answers fn, or not found when fn is nil; applied keeps what
// followChange applied.
type changeReads struct {
	mu       sync.Mutex
	failures int
	reads    int
	fn       *nimbus.Function
	applied  []*nimbus.Function
	done     chan struct{}
}

func (c *changeReads) read(context.Context, string) (*nimbus.Function, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.reads++
	if c.reads <= c.failures {
		return nil, fmt.Errorf("read function: %w", errors.New("nats: timeout"))
	}
	if c.fn == nil {
		return nil, nimbus.ErrNotFound
	}
	return c.fn, nil
}

func (c *changeReads) apply(fn *nimbus.Function) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.applied = append(c.applied, fn)
	close(c.done)
}

func (c *changeReads) wait(t *testing.T) []*nimbus.Function {
	t.Helper()
	select {
	case <-c.done:
	case <-time.After(10 * time.Second):
		t.Fatal("the change was never applied")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.applied
}

// TestFollowChange: a change is applied with the function read; "not
// found" is a deletion (nil); a read that fails otherwise is never taken
// for a deletion: it is read again until it succeeds, and a warning says so.
func TestFollowChange(t *testing.T) {
	retry := changeRetry{every: 10 * time.Millisecond, times: 60}
	fn := &nimbus.Function{Name: "f"}
	for _, tc := range []struct {
		name     string
		failures int
		fn       *nimbus.Function
		warn     bool
	}{
		{"changed", 0, fn, false},
		{"deleted", 0, nil, false},
		{"read failed twice, then changed", 2, fn, true},
		{"read failed twice, then deleted", 2, nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var logs bytes.Buffer
			c := &changeReads{failures: tc.failures, fn: tc.fn, done: make(chan struct{})}
			followChange(t.Context(), slog.New(slog.NewTextHandler(&logs, nil)), retry, "f", noLock, c.read, c.apply)
			got := c.wait(t)
			if len(got) != 1 || got[0] != tc.fn {
				t.Errorf("applied %v, want [%v] once", got, tc.fn)
			}
			c.mu.Lock()
			reads := c.reads
			c.mu.Unlock()
			if reads != tc.failures+1 {
				t.Errorf("%d reads, want %d", reads, tc.failures+1)
			}
			if warned := strings.Contains(logs.String(), "reading it failed"); warned != tc.warn {
				t.Errorf("warned %v, want %v: %s", warned, tc.warn, logs.String())
			}
		})
	}
}

// TestFollowChangeGivesUp: a function that cannot be read is never taken
// for deleted; after the retries an error is logged, and a context that
// ends stops the retries at once.
func TestFollowChangeGivesUp(t *testing.T) {
	var logs testenv.Buffer
	c := &changeReads{failures: 1 << 30, done: make(chan struct{})}
	followChange(t.Context(), slog.New(slog.NewTextHandler(&logs, nil)), changeRetry{every: 5 * time.Millisecond, times: 3}, "f", noLock, c.read, c.apply)
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(logs.String(), "could not be read") {
		if time.Now().After(deadline) {
			t.Fatalf("no error logged after the retries: %s", logs.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
	c.mu.Lock()
	if len(c.applied) != 0 || c.reads != 4 {
		t.Errorf("applied %v after %d reads, want nothing after 4", c.applied, c.reads)
	}
	c.mu.Unlock()

	ctx, cancel := context.WithCancel(t.Context())
	c = &changeReads{failures: 1 << 30, done: make(chan struct{})}
	followChange(ctx, slog.New(slog.DiscardHandler), changeRetry{every: time.Millisecond, times: 1000}, "f", noLock, c.read, c.apply)
	cancel() // the first read failed; the retries, every millisecond, stop
	time.Sleep(100 * time.Millisecond)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.reads > 2 || len(c.applied) != 0 {
		t.Errorf("after the context ended: %d reads, applied %v; want at most one read more, nothing applied", c.reads, c.applied)
	}
}

func noLock() func() { return func() {} }

// TestFollowChangeInOrder: of two changes of one function told at once,
// the one read last is applied last. The first read is held until the
// second change has been told; it reads the older function, the second the
// newer: the newer must be what stays applied.
func TestFollowChangeInOrder(t *testing.T) {
	var locks nameLocks
	lock := func() func() { return locks.lock("f") }
	older, newer := &nimbus.Function{Name: "f", RevisionID: "1"}, &nimbus.Function{Name: "f", RevisionID: "2"}
	var mu sync.Mutex
	var applied []*nimbus.Function
	apply := func(fn *nimbus.Function) {
		mu.Lock()
		applied = append(applied, fn)
		mu.Unlock()
	}
	held, release := make(chan struct{}), make(chan struct{})
	slowRead := func(context.Context, string) (*nimbus.Function, error) {
		close(held)
		<-release
		return older, nil // read before the second change was written
	}
	fastRead := func(context.Context, string) (*nimbus.Function, error) { return newer, nil }
	retry := changeRetry{every: time.Millisecond, times: 1}
	first := make(chan struct{})
	go func() {
		followChange(t.Context(), slog.New(slog.DiscardHandler), retry, "f", lock, slowRead, apply)
		close(first)
	}()
	<-held
	second := make(chan struct{})
	go func() {
		followChange(t.Context(), slog.New(slog.DiscardHandler), retry, "f", lock, fastRead, apply)
		close(second)
	}()
	time.Sleep(50 * time.Millisecond) // unordered, the second would apply now
	close(release)
	<-first
	<-second
	mu.Lock()
	defer mu.Unlock()
	if len(applied) != 2 || applied[1] != newer {
		t.Errorf("applied %v, want the newer function last", applied)
	}
	locks.mu.Lock()
	defer locks.mu.Unlock()
	if len(locks.locks) != 0 {
		t.Errorf("%d locks kept after use", len(locks.locks))
	}
}
