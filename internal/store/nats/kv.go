package nats

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/store"
)

// kv is a store.KV on a JetStream key-value bucket with history 1. A delete
// leaves a delete marker as the key's only message, so the value is gone,
// the key is not listed, and Create may write the key again.
type kv struct {
	kv jetstream.KeyValue
	retrier
	health func() error // nil, or why writes fail now (Store.Healthy)
	// observe is told each write's duration (Config.ObserveWrite).
	observe func(op string, d time.Duration)
}

// timed tells observe how long op took since start.
func (k *kv) timed(op string, start time.Time) {
	if k.observe != nil {
		k.observe(op, time.Since(start))
	}
}

var _ store.KV = (*kv)(nil)

// Get returns the current entry. Errors: nimbus.ErrNotFound,
// nimbus.ErrInvalid for a bad key.
func (k *kv) Get(ctx context.Context, key string) (store.Entry, error) {
	if err := store.CheckKey(key); err != nil {
		return store.Entry{}, err
	}
	var e jetstream.KeyValueEntry
	err := k.retry(ctx, attemptTimeout, func(ctx context.Context, _ bool) (err error) {
		e, err = k.kv.Get(ctx, key)
		return err
	})
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return store.Entry{}, fmt.Errorf("kv get %q: %w", key, nimbus.ErrNotFound)
	}
	if err != nil {
		return store.Entry{}, storeErr(fmt.Sprintf("kv get %q", key), err)
	}
	return store.Entry{Key: key, Value: e.Value(), Revision: e.Revision()}, nil
}

// Create writes a key that must not exist (or was deleted). Errors:
// nimbus.ErrConflict, nimbus.ErrInvalid for a bad key.
func (k *kv) Create(ctx context.Context, key string, value []byte) (uint64, error) {
	if err := store.CheckKey(key); err != nil {
		return 0, err
	}
	if err := k.health(); err != nil {
		return 0, err
	}
	defer k.timed("kv_create", time.Now())
	var rev uint64
	err := k.retry(ctx, attemptTimeout, func(ctx context.Context, again bool) (err error) {
		rev, err = k.kv.Create(ctx, key, value)
		if again && isWrongRevision(err) {
			if r, ok := k.landed(ctx, key, value); ok {
				rev, err = r, nil
			}
		}
		return err
	})
	if isWrongRevision(err) {
		return 0, fmt.Errorf("kv create %q: %w", key, nimbus.ErrConflict)
	}
	if err != nil {
		return 0, storeErr(fmt.Sprintf("kv create %q", key), err)
	}
	return rev, nil
}

// Update writes a key whose current revision is rev. Errors:
// nimbus.ErrPreconditionFailed when it is not, or the key does not exist
// (rev 0 always fails); nimbus.ErrInvalid for a bad key.
func (k *kv) Update(ctx context.Context, key string, value []byte, rev uint64) (uint64, error) {
	if err := store.CheckKey(key); err != nil {
		return 0, err
	}
	if err := k.health(); err != nil {
		return 0, err
	}
	if rev == 0 {
		// JetStream reads an expected revision of 0 as "must not exist".
		return 0, fmt.Errorf("kv update %q: revision 0: %w", key, nimbus.ErrPreconditionFailed)
	}
	defer k.timed("kv_update", time.Now())
	var next uint64
	err := k.retry(ctx, attemptTimeout, func(ctx context.Context, again bool) (err error) {
		next, err = k.kv.Update(ctx, key, value, rev)
		if again && isWrongRevision(err) {
			if r, ok := k.landed(ctx, key, value); ok && r > rev {
				next, err = r, nil
			}
		}
		return err
	})
	if isWrongRevision(err) {
		return 0, fmt.Errorf("kv update %q: %w", key, nimbus.ErrPreconditionFailed)
	}
	if err != nil {
		return 0, storeErr(fmt.Sprintf("kv update %q", key), err)
	}
	return next, nil
}

// Put writes a key unconditionally. Errors: nimbus.ErrInvalid for a bad key.
func (k *kv) Put(ctx context.Context, key string, value []byte) (uint64, error) {
	if err := store.CheckKey(key); err != nil {
		return 0, err
	}
	if err := k.health(); err != nil {
		return 0, err
	}
	defer k.timed("kv_put", time.Now())
	var rev uint64
	err := k.retry(ctx, attemptTimeout, func(ctx context.Context, _ bool) (err error) {
		rev, err = k.kv.Put(ctx, key, value)
		return err
	})
	if err != nil {
		return 0, storeErr(fmt.Sprintf("kv put %q", key), err)
	}
	return rev, nil
}

// Delete removes a key. Errors: nimbus.ErrNotFound, nimbus.ErrInvalid for a
// bad key.
func (k *kv) Delete(ctx context.Context, key string) error {
	if err := store.CheckKey(key); err != nil {
		return err
	}
	if err := k.health(); err != nil {
		return err
	}
	defer k.timed("kv_delete", time.Now())
	// JetStream writes a delete marker whether or not the key exists; tie
	// the marker to the revision seen so that a concurrent write is not
	// hidden and a concurrent delete reports ErrNotFound.
	// A delete that got no answer is tried again; if the key is gone
	// then, the unanswered one deleted it.
	err := k.retry(ctx, attemptTimeout, func(ctx context.Context, again bool) error {
		for {
			e, err := k.kv.Get(ctx, key)
			if errors.Is(err, jetstream.ErrKeyNotFound) {
				if again {
					return nil
				}
				return fmt.Errorf("kv delete %q: %w", key, nimbus.ErrNotFound)
			}
			if err != nil {
				return err
			}
			err = k.kv.Delete(ctx, key, jetstream.LastRevision(e.Revision()))
			if !isWrongRevision(err) {
				return err
			}
			// The key changed since the Get: look again.
		}
	})
	if err != nil && !errors.Is(err, nimbus.ErrNotFound) {
		return storeErr(fmt.Sprintf("kv delete %q", key), err)
	}
	return err
}

// Keys lists the keys, sorted, without deleted ones.
func (k *kv) Keys(ctx context.Context) ([]string, error) {
	var keys []string
	err := k.retry(ctx, listTimeout, func(ctx context.Context, _ bool) (err error) {
		keys, err = k.kv.Keys(ctx)
		return err
	})
	if errors.Is(err, jetstream.ErrNoKeysFound) {
		return []string{}, nil
	}
	if err != nil {
		return nil, storeErr("kv keys", err)
	}
	return keys, nil // sorted and deduplicated by jetstream
}

// isWrongRevision reports whether err is JetStream's "wrong last sequence"
// answer to a conditional write (code 10071, or 10164 on replicated
// streams), however the client wrapped it.
// Watch implements store.KV.
func (k *kv) Watch(ctx context.Context) (<-chan store.Entry, error) {
	w, err := k.kv.WatchAll(ctx, jetstream.UpdatesOnly())
	if err != nil {
		return nil, storeErr("kv watch", err)
	}
	out := make(chan store.Entry, 64)
	go func() {
		defer close(out)
		defer func() { _ = w.Stop() }()
		for {
			var e jetstream.KeyValueEntry
			var ok bool
			select {
			case <-ctx.Done():
				return
			case e, ok = <-w.Updates():
			}
			if !ok {
				return
			}
			if e == nil {
				continue // the end of initial values (none with UpdatesOnly)
			}
			se := store.Entry{Key: e.Key(), Value: e.Value(), Revision: e.Revision(), Deleted: e.Operation() != jetstream.KeyValuePut}
			select {
			case out <- se:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out, nil
}

func isWrongRevision(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return true
	}
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) &&
		(apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
			apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}
