package redis

import (
	"context"
	"errors"
	"fmt"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// read is the session's reader. It puts into the lanes, as far as they
// have room, first this consumer's pending entries (left by earlier
// sessions), then entries taken over from dead consumers and new ones,
// until the session ends or a command fails; it returns why it stopped.
func (r *round) read() error {
	cursor := "0" // paging through this consumer's pending entries; "" once done
	block := max(min(r.idleBlock, r.claimIdle/2), time.Millisecond)
	for {
		if r.ctx.Err() != nil {
			return context.Cause(r.ctx)
		}
		if time.Since(r.lagAt) >= r.lagEvery {
			if err := r.updateLag(); err != nil {
				return err
			}
		}
		room := r.waitRoom(block)
		if room <= 0 {
			continue
		}
		n, err := r.claim(room)
		if err != nil {
			return err
		}
		if room -= n; room <= 0 {
			continue
		}
		var entries []goredis.XMessage
		if cursor != "" {
			// Pending entries come back at once, in stream order, before any
			// new one, so a failed batch keeps its place.
			if entries, err = r.readGroup(cursor, room, -1); err != nil {
				return err
			}
			cursor = ""
			if len(entries) > 0 {
				cursor = entries[len(entries)-1].ID
			}
		} else if entries, err = r.readGroup(">", room, block); err != nil {
			return err
		}
		r.put(entries)
	}
}

// waitRoom returns the room for more entries once there is some, or 0
// after wait.
func (r *round) waitRoom(wait time.Duration) int {
	t := time.NewTimer(wait)
	defer t.Stop()
	for {
		room, freed := r.room()
		if room > 0 {
			return room
		}
		select {
		case <-freed:
		case <-t.C:
			return 0
		case <-r.ctx.Done():
			return 0
		}
	}
}

// put hands the entries not already in hand to the lanes and returns how
// many it put.
func (r *round) put(entries []goredis.XMessage) int {
	n := 0
	for _, e := range entries {
		if r.ctx.Err() != nil {
			break // what is not put stays pending and is read again
		}
		if !r.take(e.ID) {
			continue
		}
		if !r.lanes.Put(r.ctx, r.key(e.Values), e) {
			break
		}
		n++
	}
	return n
}

// readGroup runs XREADGROUP from id for at most count entries; block < 0
// does not block.
func (r *round) readGroup(id string, count int, block time.Duration) ([]goredis.XMessage, error) {
	streams, err := r.reader.XReadGroup(r.ctx, &goredis.XReadGroupArgs{
		Group: r.set.group, Consumer: r.set.consumer, Streams: []string{r.cfg.Stream, id},
		Count: int64(count), Block: block,
	}).Result()
	if errors.Is(err, goredis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read stream %q: %w", r.cfg.Stream, err)
	}
	var out []goredis.XMessage
	for _, s := range streams {
		out = append(out, s.Messages...)
	}
	return out, nil
}

// claim takes over at most count entries idle for claimIdle at other
// consumers (XAUTOCLAIM), every claimIdle/2 and continuously while a scan
// finds some, and puts them into the lanes; it returns how many.
func (r *round) claim(count int) (int, error) {
	if r.claimCursor == "" {
		if time.Since(r.claimAt) < r.claimIdle/2 {
			return 0, nil
		}
		r.claimAt, r.claimCursor = time.Now(), "0-0"
	}
	entries, cursor, err := r.rc.XAutoClaim(r.ctx, &goredis.XAutoClaimArgs{
		Stream: r.cfg.Stream, Group: r.set.group, Consumer: r.set.consumer,
		MinIdle: r.claimIdle, Start: r.claimCursor, Count: int64(count),
	}).Result()
	if err != nil {
		return 0, fmt.Errorf("claim idle entries of stream %q: %w", r.cfg.Stream, err)
	}
	r.claimCursor = cursor
	if cursor == "0-0" {
		r.claimCursor = ""
	}
	n := r.put(entries)
	if n > 0 {
		r.set.Logger.Info("redis: took over entries idle at other consumers", "count", n)
	}
	return n, nil
}
