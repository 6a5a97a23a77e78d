package process

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nimbus-serverless/nimbus"
)

// poolSeq numbers the cgroups of pre-started helpers, for every Backend of
// the process: cgroup names are host-wide.
var poolSeq atomic.Int64

// pool holds pre-started helpers: executed, in new namespaces and in a
// cgroup of their own, with their prepareConfig sent. Start takes one and
// sets its cgroup's limits instead of paying for the helper's exec and
// start-up and for the cgroup move, which on a host with cgroup v1 (or v2
// without favordynmods) waits for an RCU grace period, several
// milliseconds. A helper is taken whether or not it has reported ready: one
// still starting is further along than a new one.
type pool struct {
	size int // helpers to keep; 0 disables the pool

	mu      sync.Mutex
	idle    []*helper // oldest first
	filling bool      // a fill goroutine runs
	closed  bool
	// filled: the pool was full at least once; failure is why the last
	// helper start failed (nil once one starts again). Ready reads them.
	filled  bool
	failure error
	wg      sync.WaitGroup // the fill goroutine
}

// take returns an idle helper, or nil if there is none, and has the pool
// refilled. The helper may have died while idle: Start finds out when it
// sends the helper its config (errLost).
//
// When other helpers are still idle, the refill waits until the instance
// given this helper has answered its first request (its Served) or
// refillDelay has passed, whichever comes first: a helper's start (an exec
// of this large binary and its package initialisers, several ms of CPU)
// would otherwise run at the same time as the cold start and slow it, on
// 2 vCPUs: alongside the function's init, a Go cold start's init took
// 9.3-12.6 ms against 7.4-7.7 ms after it; alongside the first request
// (a refill at the end of init), that request took 1.2-5.3 ms against
// 1.0-1.6 ms after it. The last idle helper taken has the pool refilled at
// once: the next start would find none.
func (b *Backend) take() *helper {
	p := &b.pool
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.idle) == 0 {
		b.fillLocked()
		return nil
	}
	h := p.idle[0]
	p.idle = slices.Delete(p.idle, 0, 1)
	h.pooled = true
	if len(p.idle) == 0 {
		b.fillLocked()
	} else {
		time.AfterFunc(refillDelay, b.refill)
	}
	return h
}

// refillDelay bounds how long take defers a refill (a variable for tests).
var refillDelay = 50 * time.Millisecond

// refill has the pool refilled (see take).
func (b *Backend) refill() {
	b.pool.mu.Lock()
	defer b.pool.mu.Unlock()
	b.fillLocked()
}

// fillLocked starts the fill goroutine unless it runs, the pool is full or
// closed. p.mu must be held.
func (b *Backend) fillLocked() {
	p := &b.pool
	if p.closed || p.filling || len(p.idle) >= p.size {
		return
	}
	p.filling = true
	p.wg.Add(1)
	go b.fill()
}

// fill starts helpers until the pool is full or closed. It stops at the
// first failure (logged): the next take tries again, so a host that refuses
// new processes is not hammered.
func (b *Backend) fill() {
	p := &b.pool
	defer p.wg.Done()
	for {
		p.mu.Lock()
		if p.closed || len(p.idle) >= p.size {
			p.filling = false
			p.mu.Unlock()
			return
		}
		p.mu.Unlock()
		// '~' cannot occur in an instance id, so the name is never an
		// instance's; sweep removes it like one.
		name := b.cgroupName("~pool" + strconv.FormatInt(poolSeq.Add(1), 10))

		h, err := b.newHelper(name, limits{})

		p.mu.Lock()
		closed := p.closed
		if err == nil && !closed {
			p.idle = append(p.idle, h)
			p.failure = nil
			p.filled = p.filled || len(p.idle) >= p.size
			p.mu.Unlock()
			continue
		}
		if err != nil {
			p.failure = err
		}
		p.filling = false
		p.mu.Unlock()
		if err != nil {
			b.log.Warn("pre-start sandbox helper", nimbus.LogErr, err)
		} else if err := h.destroy(); err != nil {
			b.log.Warn("discard sandbox helper", nimbus.LogErr, err)
		}
		return
	}
}

// Ready reports whether the pool of pre-started helpers works: nil when
// the backend keeps no pool, or when the pool was full at least once and
// its last helper start did not fail; else an error saying which. While it
// is not ready it has the pool refilled, so that a readiness probe retries
// a start that failed (at most one start at a time).
func (b *Backend) Ready() error {
	p := &b.pool
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case p.closed:
		return errors.New("sandbox: closed")
	case p.size == 0:
		return nil
	case p.failure != nil:
		b.fillLocked()
		return fmt.Errorf("sandbox: pre-starting a helper failed: %w", p.failure)
	case !p.filled:
		b.fillLocked()
		return fmt.Errorf("sandbox: pre-starting helpers (%d of %d ready)", len(p.idle), p.size)
	}
	return nil
}

// Close kills the idle pre-started helpers, removes their cgroups and
// stops refilling the pool; it waits for a helper being started. It also
// gives up the backend's claim on its uid range, so call it once the
// instances are gone (the engine does); Start still works afterwards,
// without a pool, but another backend may then take the same uids. Call Close when the Backend is
// no longer needed (the node: when it shuts down); idle helpers otherwise
// wait until this process exits, and die with it. Close is safe to call
// more than once; it returns the errors of removing the cgroups.
func (b *Backend) Close(ctx context.Context) error {
	p := &b.pool
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	idle := p.idle
	p.idle = nil
	p.mu.Unlock()
	errs := []error{b.closeZygotes(ctx)}
	for _, h := range idle {
		errs = append(errs, h.destroy())
	}
	if err := waitGroup(ctx, &p.wg); err != nil {
		errs = append(errs, fmt.Errorf("sandbox close: a helper was still starting: %w", err))
	}
	if b.net != nil {
		errs = append(errs, b.net.close())
	}
	b.releaseIDs()
	return errors.Join(errs...)
}

// waitGroup waits for wg, or returns ctx's error if ctx ends first.
func waitGroup(ctx context.Context, wg *sync.WaitGroup) error {
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
