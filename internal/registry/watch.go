package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/nimbus-serverless/nimbus"
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
		select {
		case <-ctx.Done():
		case <-time.After(watchRetry):
		}
	}
	report(ctx.Err())
}

// follow runs the watch once: it starts watching, loads every function
// beside it, and applies the changes until the watch ends (or the load
// fails).
func (r *Registry) follow(ctx context.Context, report func(error)) error {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
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
// since the previous epoch (after a restart of the watch).
func (r *Registry) load(ctx context.Context, epoch uint64) error {
	keys, err := r.cfg.KV.Keys(ctx)
	if err != nil {
		return fmt.Errorf("list functions: %w", err)
	}
	changed := make([][]string, loadReaders)
	g, gctx := errgroup.WithContext(ctx)
	for w := range loadReaders {
		g.Go(func() error {
			for i := w; i < len(keys); i += loadReaders {
				fn, rev, err := r.get(gctx, keys[i])
				if errors.Is(err, nimbus.ErrNotFound) {
					continue // deleted meanwhile: the watch has it
				}
				if err != nil {
					return err
				}
				if r.cache.applyAt(epoch, keys[i], fn, rev) {
					changed[w] = append(changed[w], keys[i])
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
	return nil
}

// consume applies the watch's changes until its channel closes.
func (r *Registry) consume(ch <-chan store.Entry) {
	for e := range ch {
		if e.Deleted {
			r.cache.apply(e.Key, nil, e.Revision)
			r.changed(e.Key)
			continue
		}
		var fn nimbus.Function
		if err := json.Unmarshal(e.Value, &fn); err != nil {
			r.log.Warn("decode watched function", nimbus.LogFunction, e.Key, nimbus.LogErr, err)
			continue
		}
		r.cache.apply(e.Key, &fn, e.Revision)
		r.changed(e.Key)
	}
}
