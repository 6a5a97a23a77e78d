package registry

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nimbus-serverless/nimbus/internal/codepkg"
	"github.com/nimbus-serverless/nimbus/internal/store/mem"
)

// slowCode prepares until ctx ends (or, when stubborn, until release is
// closed), and counts the preparations still running.
type slowCode struct {
	running  atomic.Int64
	started  chan struct{}
	stubborn bool
	release  chan struct{}
}

func (c *slowCode) Prepare(ctx context.Context, _ string, _ []byte) (string, error) {
	c.running.Add(1)
	defer c.running.Add(-1)
	c.started <- struct{}{}
	if c.stubborn {
		<-c.release
		return "/code", nil
	}
	<-ctx.Done()
	return "", ctx.Err()
}

func (c *slowCode) Ensure(ctx context.Context, d string) (string, error) {
	return c.Prepare(ctx, d, nil)
}

func openSlow(t *testing.T, code *slowCode) *Registry {
	t.Helper()
	r, err := Open(t.Context(), Config{KV: mem.NewKV(), Blobs: mem.NewBlobs(), Code: code, Runtimes: []string{"python3.11"}, Limits: codepkg.DefaultLimits(), Key: testKey})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestCloseWaitsForPreparations: Close stops a preparation in progress and
// returns once it has ended; a create after Close prepares nothing.
func TestCloseWaitsForPreparations(t *testing.T) {
	code := &slowCode{started: make(chan struct{}, 1)}
	r := openSlow(t, code)
	createNamed(t, r, "f")
	<-code.started
	if err := r.Close(t.Context()); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if n := code.running.Load(); n != 0 {
		t.Errorf("%d preparations still running after Close", n)
	}
	createNamed(t, r, "g") // the store is still there; nothing starts
	select {
	case <-code.started:
		t.Error("a create after Close started a preparation")
	case <-time.After(50 * time.Millisecond):
	}
}

// TestCloseBounded: Close returns ctx's error when a preparation does not
// stop in time, and a later Close waits for it.
func TestCloseBounded(t *testing.T) {
	code := &slowCode{started: make(chan struct{}, 1), stubborn: true, release: make(chan struct{})}
	r := openSlow(t, code)
	createNamed(t, r, "f")
	<-code.started
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if err := r.Close(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Close with a stuck preparation: %v, want DeadlineExceeded", err)
	}
	close(code.release)
	if err := r.Close(t.Context()); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if n := code.running.Load(); n != 0 {
		t.Errorf("%d preparations still running after Close", n)
	}
}
