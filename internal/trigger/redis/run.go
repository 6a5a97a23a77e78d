package redis

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/nimbus-serverless/nimbus/internal/trigger"
)

// Run consumes the stream until ctx ends, reconnecting with back-off, and
// returns nil then. Entries not yet acknowledged stay pending in the group.
func (s *Source) Run(ctx context.Context, sink trigger.Sink, opts trigger.Options) error {
	rc := s.client()
	defer rc.Close()
	c := &consumer{Source: s, rc: rc, set: s.settings(opts), sink: sink}
	stop := context.AfterFunc(ctx, c.interrupt)
	defer stop()
	trigger.Reconnect(ctx, c.set.Status, c.set.Logger, s.minBackoff, s.maxBackoff, c.session)
	return nil
}

// consumer is one Run's reading state.
type consumer struct {
	*Source
	rc   *goredis.Client
	set  settings
	sink trigger.Sink

	mu      sync.Mutex
	reading bool // in XREADGROUP, which only closing the client interrupts

	pending     bool   // read this consumer's pending entries before new ones
	claimCursor string // XAUTOCLAIM's cursor; "" when a scan is not under way
	claimAt     time.Time
	lagAt       time.Time
}

// session makes sure the group exists and consumes until an error; it
// reports whether any batch was acknowledged.
func (c *consumer) session(ctx context.Context) (progress bool, err error) {
	if err := c.ensureGroup(ctx); err != nil {
		return false, err
	}
	c.set.Status.Connected()
	c.pending, c.claimCursor, c.claimAt = true, "", time.Time{}
	if err := c.updateLag(ctx); err != nil {
		return false, err
	}
	for {
		batch, err := c.next(ctx)
		if err != nil {
			return progress, err
		}
		if len(batch) > 0 {
			if err := c.deliver(ctx, batch); err != nil {
				return progress, err
			}
			progress = true
		}
		if time.Since(c.lagAt) >= c.lagEvery {
			if err := c.updateLag(ctx); err != nil {
				return progress, err
			}
		}
	}
}

// ensureGroup creates the group (and the stream) unless it exists.
func (c *consumer) ensureGroup(ctx context.Context) error {
	err := c.rc.XGroupCreateMkStream(ctx, c.cfg.Stream, c.set.group, c.set.start).Err()
	if err != nil && !strings.HasPrefix(err.Error(), "BUSYGROUP") {
		return fmt.Errorf("create group %q on stream %q: %w", c.set.group, c.cfg.Stream, err)
	}
	return nil
}

// deliver hands batch to the sink, keeping its entries claimed meanwhile,
// and acknowledges them once it succeeded.
func (c *consumer) deliver(ctx context.Context, batch []goredis.XMessage) error {
	ids := make([]string, len(batch))
	for i, m := range batch {
		ids[i] = m.ID
	}
	live := c.messages(batch)
	if len(live) > 0 {
		stop := c.keepClaimed(ctx, ids)
		err := c.sink.Deliver(ctx, live)
		stop()
		if err != nil {
			c.pending = true
			return fmt.Errorf("deliver: %w", err)
		}
	}
	// Acknowledged even when ctx ended meanwhile: the batch is done.
	if err := c.rc.XAck(context.WithoutCancel(ctx), c.cfg.Stream, c.set.group, ids...).Err(); err != nil {
		c.pending = true
		return fmt.Errorf("ack: %w", err)
	}
	if len(live) > 0 {
		c.set.Status.Delivered(len(live), time.Now())
	}
	return nil
}

// keepClaimed resets the idle time of ids every claimIdle/3 until stop is
// called, so that other consumers do not take over a slow batch.
func (c *consumer) keepClaimed(ctx context.Context, ids []string) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(c.claimIdle / 3)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				err := c.rc.XClaimJustID(ctx, &goredis.XClaimArgs{
					Stream: c.cfg.Stream, Group: c.set.group, Consumer: c.set.consumer, Messages: ids,
				}).Err()
				if err != nil && ctx.Err() == nil {
					c.set.Logger.Warn("redis: keep entries claimed", "error", err)
				}
			}
		}
	})
	return func() {
		cancel()
		wg.Wait()
	}
}

// updateLag records the entries not yet delivered to the group plus those
// pending, as XINFO GROUPS reports them.
func (c *consumer) updateLag(ctx context.Context) error {
	c.lagAt = time.Now()
	groups, err := c.rc.XInfoGroups(ctx, c.cfg.Stream).Result()
	if err != nil {
		return fmt.Errorf("inspect stream %q: %w", c.cfg.Stream, err)
	}
	for _, g := range groups {
		if g.Name == c.set.group && g.Lag >= 0 {
			c.set.Status.Lag(g.Lag + g.Pending)
		}
	}
	return nil
}
