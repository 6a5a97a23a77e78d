package redis

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/trigger"
)

// claimChunk is the most entry ids one XCLAIM re-claims.
const claimChunk = 1000

// Run consumes the stream until ctx ends, reconnecting with back-off, and
// returns nil then. Entries not yet acknowledged stay pending in the group.
func (s *Source) Run(ctx context.Context, sink trigger.Sink, opts trigger.Options) error {
	set := s.settings(opts)
	// Workers acknowledge on rc while the reader blocks on its own client,
	// which closing is the only way to interrupt.
	rc := s.client(min(set.Concurrency, 32) + 3)
	defer rc.Close()
	reader := s.client(1)
	stop := context.AfterFunc(ctx, func() { reader.Close() })
	defer func() {
		if stop() {
			reader.Close()
		}
	}()
	c := &consumer{Source: s, rc: rc, reader: reader, set: set, sink: sink,
		hold: set.BatchSize*set.Concurrency + set.BatchSize}
	trigger.Reconnect(ctx, set.Status, set.Logger, s.minBackoff, s.maxBackoff, c.session)
	return nil
}

// consumer is one Run's state.
type consumer struct {
	*Source
	rc     *goredis.Client // everything but XREADGROUP
	reader *goredis.Client // XREADGROUP
	set    settings
	sink   trigger.Sink
	hold   int // most entries in hand (queued or being delivered)
}

// round is one session: the entries it holds and how it ends.
type round struct {
	*consumer
	ctx    context.Context // ends when the session must stop taking work
	cancel context.CancelCauseFunc
	lanes  *trigger.Lanes[goredis.XMessage]

	mu     sync.Mutex
	inHand map[string]struct{} // ids read and not yet acknowledged
	freed  chan struct{}       // closed and replaced when ids leave inHand

	progress atomic.Bool // a batch was acknowledged

	// The reader's own state.
	claimCursor    string // XAUTOCLAIM's cursor; "" when a scan is not under way
	claimAt, lagAt time.Time
}

// session makes sure the group exists and consumes until an error; it
// reports whether any batch was acknowledged. When it ends, no batch is
// in flight any more: what was not acknowledged is pending at this
// consumer, and the next session reads it again.
func (c *consumer) session(ctx context.Context) (progress bool, err error) {
	if err := c.ensureGroup(ctx); err != nil {
		return false, err
	}
	c.set.Status.Connected()
	r := &round{consumer: c, inHand: make(map[string]struct{}), freed: make(chan struct{}),
		lanes: trigger.NewLanes[goredis.XMessage](c.set.Options, c.hold)}
	r.ctx, r.cancel = context.WithCancelCause(ctx)
	defer r.cancel(nil)
	if err := r.updateLag(); err != nil {
		return false, err
	}
	// Claims are kept fresh until the last batch in flight has ended, past
	// the end of r.ctx.
	claimed, stopClaimed := context.WithCancel(ctx)
	var wg, keep sync.WaitGroup
	keep.Go(func() { r.keepClaimed(claimed) })
	wg.Go(func() {
		r.lanes.Work(r.ctx, c.set.Concurrency, func(key string, batch []goredis.XMessage) {
			r.deliver(ctx, key, batch)
		})
	})
	r.cancel(r.read())
	wg.Wait()
	stopClaimed()
	keep.Wait()
	r.lanes.Drain() // left pending: read again by the next session
	return r.progress.Load(), context.Cause(r.ctx)
}

// ensureGroup creates the group (and the stream) unless it exists.
func (c *consumer) ensureGroup(ctx context.Context) error {
	err := c.rc.XGroupCreateMkStream(ctx, c.cfg.Stream, c.set.group, c.set.start).Err()
	if err != nil && !strings.HasPrefix(err.Error(), "BUSYGROUP") {
		return fmt.Errorf("create group %q on stream %q: %w", c.set.group, c.cfg.Stream, err)
	}
	return nil
}

// deliver hands a batch to the sink and acknowledges it once it succeeded.
// A failure ends the session (r.ctx) with its cause; batches taken after
// that are not delivered, so a key's later batches never overtake a failed
// one. ctx is Run's: a batch under way finishes even when the session ends.
func (r *round) deliver(ctx context.Context, key string, batch []goredis.XMessage) {
	if r.ctx.Err() != nil {
		return
	}
	ids := make([]string, len(batch))
	for i, m := range batch {
		ids[i] = m.ID
	}
	live := r.messages(key, batch)
	if len(live) > 0 {
		if err := r.sink.Deliver(ctx, live); err != nil {
			r.cancel(fmt.Errorf("deliver: %w", err))
			return
		}
	}
	// Acknowledged even when ctx ended meanwhile: the batch is done.
	if err := r.rc.XAck(context.WithoutCancel(ctx), r.cfg.Stream, r.set.group, ids...).Err(); err != nil {
		r.cancel(fmt.Errorf("ack: %w", err))
		return
	}
	r.progress.Store(true)
	if len(live) > 0 {
		r.set.Status.Delivered(len(live), time.Now())
	}
	r.release(ids)
}

// take records ids as in hand, reporting false when it already was.
func (r *round) take(id string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.inHand[id]; ok {
		return false
	}
	r.inHand[id] = struct{}{}
	return true
}

// release forgets acknowledged ids and wakes a reader waiting for room.
func (r *round) release(ids []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, id := range ids {
		delete(r.inHand, id)
	}
	close(r.freed)
	r.freed = make(chan struct{})
}

// room is how many more entries may be taken, and a channel closed when
// that grows.
func (r *round) room() (int, <-chan struct{}) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.hold - len(r.inHand), r.freed
}

// held returns the ids in hand.
func (r *round) held() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	ids := make([]string, 0, len(r.inHand))
	for id := range r.inHand {
		ids = append(ids, id)
	}
	return ids
}

// keepClaimed resets the idle time of every entry in hand every
// claimIdle/3 until ctx ends, so that other consumers do not take over
// entries that wait in the lanes or are being delivered.
func (r *round) keepClaimed(ctx context.Context) {
	t := time.NewTicker(r.claimIdle / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		ids := r.held()
		for len(ids) > 0 && ctx.Err() == nil {
			n := min(len(ids), claimChunk)
			err := r.rc.XClaimJustID(ctx, &goredis.XClaimArgs{
				Stream: r.cfg.Stream, Group: r.set.group, Consumer: r.set.consumer, Messages: ids[:n],
			}).Err()
			if err != nil && !errors.Is(err, goredis.Nil) && ctx.Err() == nil {
				r.set.Logger.Warn("redis: keep entries claimed", nimbus.LogErr, err)
				break
			}
			ids = ids[n:]
		}
	}
}

// updateLag records the entries not yet delivered to the group plus those
// pending, as XINFO GROUPS reports them.
func (r *round) updateLag() error {
	r.lagAt = time.Now()
	groups, err := r.rc.XInfoGroups(r.ctx, r.cfg.Stream).Result()
	if err != nil {
		return fmt.Errorf("inspect stream %q: %w", r.cfg.Stream, err)
	}
	for _, g := range groups {
		if g.Name == r.set.group && g.Lag >= 0 {
			r.set.Status.Lag(g.Lag + g.Pending)
		}
	}
	return nil
}
