package registry

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/seal"
	"github.com/nimbus-serverless/nimbus/internal/store"
)

// watchRetry is how long the registry waits before watching again after the
// watch failed (e.g. a remote NATS restarted).
const watchRetry = time.Second

// loadReaders is how many reads of the functions bucket a load keeps in
// flight.
const loadReaders = 16

// watch feeds the cache from the store until ctx ends, and tells listeners
// about changes (including other nodes' writes). Each run of the watch
// begins with a load of every function; report hears how the first run's
// load ended. While the watch is down the cache is bypassed.
func (r *Registry) watch(ctx context.Context, report func(error)) {
	for ctx.Err() == nil {
		if err := r.follow(ctx, report); err != nil && ctx.Err() == nil {
			r.log.Warn("watch functions", nimbus.LogErr, err)
			report(err)
		}
		if r.takeResync() {
			continue
		}
		select {
		case <-ctx.Done():
		case <-time.After(watchRetry):
		}
	}
	report(ctx.Err())
}

// Resync has every function read again, as a restart of the watch does
// (TestWatchRestartReloads), now: a cluster member whose copy of the
// bucket was behind when it started (it restarted while the others
// changed functions) calls it once its copy has caught up, since the
// watch only brings changes made after it began. Until the new load has
// ended, reads bypass the cache, from the moment Resync returns.
func (r *Registry) Resync() {
	r.resyncMu.Lock()
	defer r.resyncMu.Unlock()
	r.cache.setLive(false)
	r.resyncNow = true
	if r.followCancel != nil {
		r.followCancel()
	}
}

// takeResync reports whether Resync asked for a new run of the watch at
// once, and clears the request.
func (r *Registry) takeResync() bool {
	r.resyncMu.Lock()
	defer r.resyncMu.Unlock()
	now := r.resyncNow
	r.resyncNow = false
	return now
}

// follow runs the watch once: it starts watching, loads every function
// beside it, and applies the changes until the watch ends (or the load
// fails).
func (r *Registry) follow(ctx context.Context, report func(error)) error {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	r.resyncMu.Lock()
	r.followCancel = cancel
	r.resyncNow = false // a Resync asked before this run began: it loads anyway
	r.resyncMu.Unlock()
	ch, err := r.cfg.KV.Watch(wctx)
	if err != nil {
		return err
	}
	epoch := r.cache.setLive(true)
	var wg sync.WaitGroup
	wg.Go(func() {
		err := r.load(wctx, epoch)
		if err != nil && wctx.Err() == nil {
			r.log.Warn("load functions", nimbus.LogErr, err)
			cancel() // watch again, and load again
		}
		report(err)
	})
	r.consume(ch)
	r.cache.setLive(false)
	cancel()
	wg.Wait()
	return nil
}

// load reads every function into the cache for epoch, loadReaders at a
// time, and tells listeners about the functions that changed or went away
// since the previous epoch (after a restart of the watch). Records with
// secrets in clear (written before sealing) are sealed again.
func (r *Registry) load(ctx context.Context, epoch uint64) error {
	keys, err := r.cfg.KV.Keys(ctx)
	if err != nil {
		return fmt.Errorf("list functions: %w", err)
	}
	changed := make([][]string, loadReaders)
	clear := make([][]string, loadReaders)
	g, gctx := errgroup.WithContext(ctx)
	for w := range loadReaders {
		g.Go(func() error {
			for i := w; i < len(keys); i += loadReaders {
				wasClear, ok, err := r.loadOne(gctx, keys[i], epoch)
				if err != nil {
					return err
				}
				if ok {
					changed[w] = append(changed[w], keys[i])
				}
				if wasClear {
					clear[w] = append(clear[w], keys[i])
				}
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	gone, ok := r.cache.loadedAt(epoch)
	if !ok {
		return ctx.Err()
	}
	for _, names := range append(changed, gone) {
		for _, name := range names {
			r.changed(name)
		}
	}
	for _, names := range clear {
		for _, name := range names {
			r.reseal(ctx, name)
		}
	}
	return nil
}

// loadOne reads one function into the cache for epoch. It reports whether
// the entry changed and whether the record held its secrets in clear. A
// function whose secrets do not open is cached Failed and logged; sealed
// under another node key, it fails the registry's Open instead.
func (r *Registry) loadOne(ctx context.Context, name string, epoch uint64) (clear, changed bool, err error) {
	e, err := r.cfg.KV.Get(ctx, name)
	if errors.Is(err, nimbus.ErrNotFound) {
		return false, false, nil // deleted meanwhile: the watch has it
	}
	if err != nil {
		return false, false, fmt.Errorf("get function: %w", err)
	}
	fn, clear, err := r.decode(name, e.Value)
	if oe := (*OpenError)(nil); errors.As(err, &oe) {
		if errors.Is(err, seal.ErrWrongKey) && !r.opened.Load() {
			return false, false, err
		}
		r.log.Error("open function's secrets", nimbus.LogFunction, name, nimbus.LogErr, err)
	} else if err != nil {
		return false, false, err
	}
	return clear, r.cache.applyAt(epoch, name, fn, e.Revision), nil
}

// reseal writes again, sealed, a record that holds its secrets in clear,
// unless it changed meanwhile (that write sealed them). It keeps the
// RevisionId: nothing a caller sees changes. A failure is logged; the next
// write or load seals it.
func (r *Registry) reseal(ctx context.Context, name string) {
	e, err := r.cfg.KV.Get(ctx, name)
	if err != nil {
		return
	}
	fn, clear, err := r.decode(name, e.Value)
	if err != nil || !clear {
		return
	}
	b, err := r.encode(fn)
	if err == nil {
		var rev uint64
		rev, err = r.cfg.KV.Update(ctx, name, b, e.Revision)
		if err == nil {
			r.cache.wrote(name, fn, rev)
			r.log.Info("sealed the secrets of a function stored in clear", nimbus.LogFunction, name)
			return
		}
	}
	if !errors.Is(err, nimbus.ErrPreconditionFailed) && ctx.Err() == nil {
		r.log.Warn("seal the secrets of a function stored in clear", nimbus.LogFunction, name, nimbus.LogErr, err)
	}
}

// consume applies the watch's changes until its channel closes.
func (r *Registry) consume(ch <-chan store.Entry) {
	for e := range ch {
		if e.Deleted {
			r.cache.apply(e.Key, nil, e.Revision)
			r.changed(e.Key)
			continue
		}
		fn, _, err := r.decode(e.Key, e.Value)
		if oe := (*OpenError)(nil); errors.As(err, &oe) {
			r.log.Error("open function's secrets", nimbus.LogFunction, e.Key, nimbus.LogErr, err)
		} else if err != nil {
			r.log.Warn("decode watched function", nimbus.LogFunction, e.Key, nimbus.LogErr, err)
			continue
		}
		r.cache.apply(e.Key, fn, e.Revision)
		r.changed(e.Key)
		r.warmImage(fn)
	}
}
