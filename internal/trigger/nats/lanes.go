package nats

import (
	"context"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/nimbus-serverless/nimbus/internal/trigger"
)

// held is a message the source holds until its batch is settled.
type held struct {
	msg        trigger.Message
	js         jetstream.Msg // nil for core NATS
	deliveries uint64        // JetStream: how often the server delivered it
}

// lanes batches held messages per key: a key's messages wait in its lane
// in arrival order, and a lane has at most one batch out at a time.
type lanes struct {
	size   int           // most messages per batch
	window time.Duration // how long a batch may wait to fill
	limit  int           // most messages held (queued and out)

	mu      sync.Mutex
	byKey   map[string]*lane
	held    int
	changed chan struct{} // closed and replaced on every change
}

type lane struct {
	queue []*held
	first time.Time // when the oldest queued message arrived
	busy  bool      // a batch of this lane is out
}

func newLanes(opts trigger.Options, limit int) *lanes {
	return &lanes{
		size: opts.BatchSize, window: opts.BatchWindow, limit: max(limit, opts.BatchSize),
		byKey: make(map[string]*lane), changed: make(chan struct{}),
	}
}

// signal wakes every waiter; called with l.mu held.
func (l *lanes) signal() {
	close(l.changed)
	l.changed = make(chan struct{})
}

// put queues h, waiting while the lanes are full; false when ctx ended
// first.
func (l *lanes) put(ctx context.Context, h *held) bool {
	l.mu.Lock()
	for l.held >= l.limit {
		ch := l.changed
		l.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return false
		}
		l.mu.Lock()
	}
	ln := l.byKey[h.msg.Key]
	if ln == nil {
		ln = &lane{}
		l.byKey[h.msg.Key] = ln
	}
	if len(ln.queue) == 0 {
		ln.first = time.Now()
	}
	ln.queue = append(ln.queue, h)
	l.held++
	l.signal()
	l.mu.Unlock()
	return true
}

// take waits for a batch: a lane that is not busy and holds a full batch,
// or a partial one older than the window. The lane stays busy until done.
func (l *lanes) take(ctx context.Context) (string, []*held, bool) {
	for {
		l.mu.Lock()
		key, wait := l.ready(time.Now())
		if wait == 0 {
			batch := l.pop(key)
			l.mu.Unlock()
			return key, batch, true
		}
		ch := l.changed
		l.mu.Unlock()
		if !l.await(ctx, ch, wait) {
			return "", nil, false
		}
	}
}

// await waits for ch, or wait when positive; false when ctx ended.
func (l *lanes) await(ctx context.Context, ch <-chan struct{}, wait time.Duration) bool {
	var timeout <-chan time.Time
	if wait > 0 {
		t := time.NewTimer(wait)
		defer t.Stop()
		timeout = t.C
	}
	select {
	case <-ch:
	case <-timeout:
	case <-ctx.Done():
		return false
	}
	return true
}

// ready picks the idle lane whose oldest message waited longest among
// those with a batch due (wait 0), or says how long until one is due
// (wait > 0; wait < 0: none has messages).
func (l *lanes) ready(now time.Time) (key string, wait time.Duration) {
	wait = -1
	var oldest time.Time
	for k, ln := range l.byKey {
		if ln.busy || len(ln.queue) == 0 {
			continue
		}
		due := time.Duration(0)
		if len(ln.queue) < l.size {
			due = max(l.window-now.Sub(ln.first), 0)
		}
		switch {
		case due == 0 && (wait != 0 || ln.first.Before(oldest)):
			key, wait, oldest = k, 0, ln.first
		case due > 0 && (wait < 0 || due < wait):
			wait = due
		}
	}
	return key, wait
}

// pop takes the next batch of key's lane and marks it busy; called with
// l.mu held.
func (l *lanes) pop(key string) []*held {
	ln := l.byKey[key]
	n := min(len(ln.queue), l.size)
	batch := ln.queue[:n:n]
	ln.queue = ln.queue[n:]
	if len(ln.queue) == 0 {
		ln.queue = nil
	}
	ln.busy = true
	return batch
}

// done ends key's batch of n messages.
func (l *lanes) done(key string, n int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	ln := l.byKey[key]
	ln.busy = false
	if len(ln.queue) == 0 {
		delete(l.byKey, key)
	}
	l.held -= n
	l.signal()
}

// drain removes and returns every queued message (not those out in
// batches).
func (l *lanes) drain() []*held {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []*held
	for k, ln := range l.byKey {
		out = append(out, ln.queue...)
		l.held -= len(ln.queue)
		ln.queue = nil
		if !ln.busy {
			delete(l.byKey, k)
		}
	}
	l.signal()
	return out
}

// workers runs n goroutines that take batches and hand them to deliver
// until ctx ends, and returns when they have all stopped.
func (l *lanes) workers(ctx context.Context, n int, deliver func([]*held)) {
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			for {
				key, batch, ok := l.take(ctx)
				if !ok {
					return
				}
				deliver(batch)
				l.done(key, len(batch))
			}
		})
	}
	wg.Wait()
}

// messages returns the batch's messages.
func messages(batch []*held) []trigger.Message {
	out := make([]trigger.Message, len(batch))
	for i, h := range batch {
		out[i] = h.msg
	}
	return out
}
