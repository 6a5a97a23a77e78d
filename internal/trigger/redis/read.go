package redis

import (
	"context"
	"errors"
	"fmt"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// next returns the next batch: entries taken over from dead consumers and
// this consumer's own pending entries first, then new ones. An empty batch
// means nothing arrived for a while.
func (c *consumer) next(ctx context.Context) ([]goredis.XMessage, error) {
	if err := c.claim(ctx); err != nil {
		return nil, err
	}
	if c.pending {
		batch, err := c.read(ctx, "0", c.set.BatchSize, -1)
		if err != nil || len(batch) > 0 {
			return batch, err
		}
		c.pending = false
	}
	return c.gather(ctx)
}

// gather reads new entries: it blocks up to idleBlock for a first one, then
// for the rest of the batch window until the batch is full.
func (c *consumer) gather(ctx context.Context) ([]goredis.XMessage, error) {
	block := c.idleBlock
	if c.claimIdle/2 < block {
		block = c.claimIdle / 2
	}
	batch, err := c.read(ctx, ">", c.set.BatchSize, block)
	if err != nil || len(batch) == 0 {
		return nil, err
	}
	end := time.Now().Add(c.set.BatchWindow)
	for len(batch) < c.set.BatchSize {
		left := time.Until(end)
		if left < time.Millisecond { // BLOCK 0 would wait for ever
			break
		}
		more, err := c.read(ctx, ">", c.set.BatchSize-len(batch), left)
		if err != nil {
			// What was read stays pending and is read again from 0.
			return nil, err
		}
		batch = append(batch, more...)
	}
	return batch, nil
}

// read runs XREADGROUP from id; block < 0 does not block.
func (c *consumer) read(ctx context.Context, id string, count int, block time.Duration) ([]goredis.XMessage, error) {
	c.mu.Lock()
	if err := ctx.Err(); err != nil {
		c.mu.Unlock()
		return nil, err
	}
	c.reading = true
	c.mu.Unlock()
	streams, err := c.rc.XReadGroup(ctx, &goredis.XReadGroupArgs{
		Group: c.set.group, Consumer: c.set.consumer, Streams: []string{c.cfg.Stream, id},
		Count: int64(count), Block: block,
	}).Result()
	c.mu.Lock()
	c.reading = false
	c.mu.Unlock()
	if errors.Is(err, goredis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read stream %q: %w", c.cfg.Stream, err)
	}
	var out []goredis.XMessage
	for _, s := range streams {
		out = append(out, s.Messages...)
	}
	return out, nil
}

// interrupt ends a blocked read when Run's ctx ends, by closing the client
// (nothing else is interrupted: an acknowledgement under way completes).
func (c *consumer) interrupt() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.reading {
		c.rc.Close()
	}
}

// claim takes over entries idle for claimIdle at other consumers
// (XAUTOCLAIM), every claimIdle/2 and continuously while it finds some;
// what it takes joins this consumer's pending entries.
func (c *consumer) claim(ctx context.Context) error {
	if c.claimCursor == "" {
		if time.Since(c.claimAt) < c.claimIdle/2 {
			return nil
		}
		c.claimAt, c.claimCursor = time.Now(), "0-0"
	}
	ids, cursor, err := c.rc.XAutoClaimJustID(ctx, &goredis.XAutoClaimArgs{
		Stream: c.cfg.Stream, Group: c.set.group, Consumer: c.set.consumer,
		MinIdle: c.claimIdle, Start: c.claimCursor, Count: int64(c.set.BatchSize),
	}).Result()
	if err != nil {
		return fmt.Errorf("claim idle entries of stream %q: %w", c.cfg.Stream, err)
	}
	if len(ids) > 0 {
		c.set.Logger.Info("redis: took over entries idle at other consumers", "count", len(ids))
		c.pending = true
	}
	c.claimCursor = cursor
	if cursor == "0-0" {
		c.claimCursor = ""
	}
	return nil
}
