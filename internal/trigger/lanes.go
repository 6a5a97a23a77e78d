package trigger

import (
	"context"
	"sync"
	"time"
)

// Lanes is what a Source holds between taking messages and delivering
// them: it cuts them into batches per ordering key and hands the batches to
// up to Options.Concurrency workers, so parallelism grows with the backlog
// (one message is one batch in flight; a backlog fills every worker).
//
// A key's messages wait in its lane in arrival order, and a keyed lane has
// at most one batch out at a time, so order holds per key. Messages with
// the empty key have no order: their batches may be out together. A batch
// is due when it holds Options.BatchSize messages, or when its oldest
// message has waited Options.BatchWindow. Put blocks while the lanes hold
// their limit (queued and out), which is how a Source stops pulling while
// the function is saturated.
type Lanes[T any] struct {
	size   int           // most messages per batch
	window time.Duration // how long a batch may wait to fill
	limit  int           // most messages held (queued and out)

	mu      sync.Mutex
	byKey   map[string]*lane[T]
	held    int
	changed chan struct{} // closed and replaced on every change
}

type lane[T any] struct {
	queue []T
	first time.Time // when the oldest queued message arrived
	out   int       // batches of this lane being delivered
}

// NewLanes returns Lanes for opts' batch size and window that hold at
// most limit messages (at least one batch).
func NewLanes[T any](opts Options, limit int) *Lanes[T] {
	size := max(opts.BatchSize, 1)
	return &Lanes[T]{
		size: size, window: opts.BatchWindow, limit: max(limit, size),
		byKey: make(map[string]*lane[T]), changed: make(chan struct{}),
	}
}

// signal wakes every waiter; called with l.mu held.
func (l *Lanes[T]) signal() {
	close(l.changed)
	l.changed = make(chan struct{})
}

// Put queues v under key, waiting while the lanes are full; false when ctx
// ended first.
func (l *Lanes[T]) Put(ctx context.Context, key string, v T) bool {
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
	ln := l.byKey[key]
	if ln == nil {
		ln = &lane[T]{}
		l.byKey[key] = ln
	}
	if len(ln.queue) == 0 {
		ln.first = time.Now()
	}
	ln.queue = append(ln.queue, v)
	l.held++
	l.signal()
	l.mu.Unlock()
	return true
}

// Held is the number of messages queued or out.
func (l *Lanes[T]) Held() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.held
}

// take waits for a due batch and marks its lane busy until done.
func (l *Lanes[T]) take(ctx context.Context) (string, []T, bool) {
	for {
		if ctx.Err() != nil {
			return "", nil, false
		}
		l.mu.Lock()
		key, wait := l.ready(time.Now())
		if wait == 0 {
			batch := l.pop(key)
			l.mu.Unlock()
			return key, batch, true
		}
		ch := l.changed
		l.mu.Unlock()
		if !await(ctx, ch, wait) {
			return "", nil, false
		}
	}
}

// await waits for ch, or wait when positive; false when ctx ended.
func await(ctx context.Context, ch <-chan struct{}, wait time.Duration) bool {
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

// ready picks, among lanes that may send a batch now, the one whose oldest
// message waited longest (wait 0), or says how long until one is due
// (wait > 0; wait < 0: none has messages).
func (l *Lanes[T]) ready(now time.Time) (key string, wait time.Duration) {
	wait = -1
	var oldest time.Time
	for k, ln := range l.byKey {
		if len(ln.queue) == 0 || (k != "" && ln.out > 0) {
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

// pop takes the next batch of key's lane; called with l.mu held.
func (l *Lanes[T]) pop(key string) []T {
	ln := l.byKey[key]
	n := min(len(ln.queue), l.size)
	batch := ln.queue[:n:n]
	ln.queue = ln.queue[n:]
	if len(ln.queue) == 0 {
		ln.queue = nil
	}
	ln.out++
	return batch
}

// done ends one of key's batches, of n messages.
func (l *Lanes[T]) done(key string, n int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	ln := l.byKey[key]
	ln.out--
	if len(ln.queue) == 0 && ln.out == 0 {
		delete(l.byKey, key)
	}
	l.held -= n
	l.signal()
}

// Drain removes and returns every queued message (not those out in
// batches), for a Source that stops and must release them.
func (l *Lanes[T]) Drain() []T {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []T
	for k, ln := range l.byKey {
		out = append(out, ln.queue...)
		l.held -= len(ln.queue)
		ln.queue = nil
		if ln.out == 0 {
			delete(l.byKey, k)
		}
	}
	l.signal()
	return out
}

// Work runs n workers that take due batches and hand them to deliver
// until ctx ends, and returns when they have all stopped. A batch's lane
// is free for its next batch once deliver returned.
func (l *Lanes[T]) Work(ctx context.Context, n int, deliver func(key string, batch []T)) {
	var wg sync.WaitGroup
	for range max(n, 1) {
		wg.Go(func() {
			for {
				key, batch, ok := l.take(ctx)
				if !ok {
					return
				}
				deliver(key, batch)
				l.done(key, len(batch))
			}
		})
	}
	wg.Wait()
}
