package timer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/trigger"
)

// claimOutcome is what looking at a tick's key found.
type claimOutcome int

const (
	owned   claimOutcome = iota // this node holds the claim: deliver
	settled                     // done, or nothing to do: forget the tick
	busy                        // another node holds a live claim: look again later
)

type claimResult struct {
	outcome claimOutcome
	rev     uint64    // owned: the claim's revision
	wait    time.Time // busy: when the other claim expires
}

// claim takes a job's tick: renews this node's own claim, creates the key
// (a tick this node fires) or takes over a claim whose heartbeat is older
// than the lease.
func (r *run) claim(ctx context.Context, j *job, now time.Time) (claimResult, error) {
	ctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	key, val := r.tickKey(j.tick), r.claimValue(now)
	switch {
	case j.rev != 0:
		rev, err := r.deps.KV.Update(ctx, key, val, j.rev)
		if err == nil {
			return claimResult{outcome: owned, rev: rev}, nil
		}
		if !errors.Is(err, nimbus.ErrPreconditionFailed) {
			return claimResult{}, err
		}
		j.rev = 0
	case j.create:
		rev, err := r.deps.KV.Create(ctx, key, val)
		if err == nil {
			return claimResult{outcome: owned, rev: rev}, nil
		}
		if !errors.Is(err, nimbus.ErrConflict) {
			return claimResult{}, err
		}
	}
	return r.inspect(ctx, key, val, now)
}

// inspect reads a tick's key and takes the claim over when it is stale.
func (r *run) inspect(ctx context.Context, key string, val []byte, now time.Time) (claimResult, error) {
	e, err := r.deps.KV.Get(ctx, key)
	if errors.Is(err, nimbus.ErrNotFound) {
		return claimResult{outcome: settled}, nil
	}
	if err != nil {
		return claimResult{}, err
	}
	var st tickState
	if err := json.Unmarshal(e.Value, &st); err != nil || st.State != stateClaimed {
		return claimResult{outcome: settled}, nil
	}
	if expiry := st.Heartbeat.Add(r.deps.Lease); now.Before(expiry) && st.Owner != r.owner {
		return claimResult{outcome: busy, wait: expiry}, nil
	}
	rev, err := r.deps.KV.Update(ctx, key, val, e.Revision)
	if errors.Is(err, nimbus.ErrPreconditionFailed) { // someone else was faster
		return claimResult{outcome: busy, wait: now.Add(r.deps.Lease)}, nil
	}
	if err != nil {
		return claimResult{}, err
	}
	r.log.Info("took over a stale tick claim", "key", key, "from", st.Owner)
	return claimResult{outcome: owned, rev: rev}, nil
}

func (r *run) claimValue(now time.Time) []byte {
	return encode(tickState{State: stateClaimed, Owner: r.owner, Heartbeat: now.UTC()})
}

// deliver delivers a claimed tick, heartbeating the claim meanwhile, marks
// it done and reports to the loop.
func (r *run) deliver(ctx context.Context, j job) {
	defer r.wg.Done()
	res := r.deliverTick(ctx, j)
	select {
	case r.results <- res:
	case <-ctx.Done():
	}
}

func (r *run) deliverTick(ctx context.Context, j job) result {
	key := r.tickKey(j.tick)
	dctx, cancel := context.WithCancel(ctx)
	hb := make(chan heartbeat, 1)
	go func() { hb <- r.heartbeat(dctx, cancel, key, j.rev) }()
	err := r.sink.Deliver(dctx, []trigger.Message{r.message(j.tick)})
	cancel()
	h := <-hb
	switch {
	case h.lost:
		return result{tick: j.tick, err: errLostClaim}
	case err != nil:
		return result{tick: j.tick, rev: h.rev, err: fmt.Errorf("deliver: %w", err)}
	}
	rev, err := r.markDone(ctx, key, h.rev)
	return result{tick: j.tick, rev: rev, delivered: true, err: err}
}

// heartbeat is how a claim's heartbeats ended.
type heartbeat struct {
	rev  uint64 // the claim's latest revision
	lost bool   // another node took the claim over
}

// heartbeat renews the claim every third of a lease until ctx ends. When
// another node took the claim over it cancels the delivery (lose).
func (r *run) heartbeat(ctx context.Context, lose context.CancelFunc, key string, rev uint64) heartbeat {
	for {
		if !sleepUntil(ctx, r.deps.Clock, r.deps.Clock.Now().Add(r.deps.Lease/3)) {
			return heartbeat{rev: rev}
		}
		nrev, err := r.update(ctx, key, r.claimValue(r.deps.Clock.Now()), rev)
		switch {
		case err == nil:
			rev = nrev
		case errors.Is(err, nimbus.ErrPreconditionFailed):
			lose()
			return heartbeat{rev: rev, lost: true}
		default:
			r.log.Warn("renew tick claim", "key", key, nimbus.LogErr, err)
		}
	}
}

// markDone writes the done mark over this node's claim. Errors:
// errLostClaim when another node holds the claim now.
func (r *run) markDone(ctx context.Context, key string, rev uint64) (uint64, error) {
	done := encode(tickState{State: stateDone})
	nrev, err := r.update(ctx, key, done, rev)
	if !errors.Is(err, nimbus.ErrPreconditionFailed) {
		if err != nil {
			return rev, fmt.Errorf("mark tick done: %w", err)
		}
		return nrev, nil
	}
	// The revision is unknown (a renewal whose answer was lost): check
	// that the claim is still this node's.
	sctx, cancel := storeContext(ctx)
	defer cancel()
	e, err := r.deps.KV.Get(sctx, key)
	if err != nil {
		return rev, fmt.Errorf("mark tick done: %w", err)
	}
	var st tickState
	if json.Unmarshal(e.Value, &st) != nil || st.Owner != r.owner {
		return rev, errLostClaim
	}
	return r.markDone(ctx, key, e.Revision)
}

// update writes a key at rev, finishing even when ctx has just ended (a
// write cut in half leaves the claim's revision unknown).
func (r *run) update(ctx context.Context, key string, val []byte, rev uint64) (uint64, error) {
	sctx, cancel := storeContext(ctx)
	defer cancel()
	return r.deps.KV.Update(sctx, key, val, rev)
}

func storeContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), storeTimeout)
}

// readAlive returns when the trigger was first and last seen running, and
// whether it ever was (within the bucket's TTL).
func (r *run) readAlive(ctx context.Context) (aliveState, bool, error) {
	ctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	e, err := r.deps.KV.Get(ctx, r.aliveKey())
	if errors.Is(err, nimbus.ErrNotFound) {
		return aliveState{}, false, nil
	}
	if err != nil {
		return aliveState{}, false, fmt.Errorf("read alive key: %w", err)
	}
	var a aliveState
	if err := json.Unmarshal(e.Value, &a); err != nil || a.At.IsZero() || a.Since.IsZero() {
		return aliveState{}, false, nil
	}
	return a, true, nil
}

// putAlive says the trigger runs now (and since r.since).
func (r *run) putAlive(ctx context.Context, now time.Time) error {
	ctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	a := aliveState{Since: r.since.UTC(), At: now.UTC()}
	if _, err := r.deps.KV.Put(ctx, r.aliveKey(), encode(a)); err != nil {
		return fmt.Errorf("write alive key: %w", err)
	}
	r.aliveAt = now.Add(r.deps.Lease)
	return nil
}
