package nats

import (
	"bytes"
	"context"
	"errors"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Taking over from a dead member.
//
// When a cluster member dies, JetStream elects new leaders for what it led
// (its metadata group, streams, buckets) within its Raft election timeout
// (4 to 9 s after the leader's last heartbeat). A write sent meanwhile is
// not refused: the followers receive it and nobody answers, so the writer
// hears nothing. Without a bound of its own, an object store Put then waits
// for acknowledgements that never come until its context ends (it had
// blobWriteTimeout, 2 minutes), and a KV write fails after JetStream's
// default request timeout with a 503. So every write here is tried in
// attempts of a bounded length (attemptTimeout; the chunks of a blob each
// get blobAckTimeout) and tried again, while it fails for want of an
// answer, until the caller's context ends or retryFor has passed: a write
// lands once the new leader is elected, a few seconds after the death.

const (
	// attemptTimeout bounds one attempt at a KV write or read, or at
	// opening a blob.
	attemptTimeout = 4 * time.Second
	// listTimeout bounds one attempt at listing a bucket's keys.
	listTimeout = 15 * time.Second
	// retryFor is how long an operation whose context has no deadline is
	// tried again while the store does not answer.
	retryFor = 30 * time.Second
	// retryPause is the pause between attempts.
	retryPause = 200 * time.Millisecond
)

// transient reports whether err says that nobody answered (in time), so
// that the same request may succeed once JetStream has a leader again.
func transient(err error) bool {
	var api *jetstream.APIError
	switch {
	case err == nil:
		return false
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, nats.ErrTimeout), errors.Is(err, nats.ErrNoResponders),
		errors.Is(err, jetstream.ErrNoStreamResponse), errors.Is(err, jetstream.ErrAsyncPublishTimeout),
		errors.Is(err, nats.ErrDisconnected), errors.Is(err, nats.ErrConnectionReconnecting),
		errors.Is(err, jetstream.ErrJetStreamNotEnabled):
		return true
	case errors.As(err, &api):
		// 10008: JetStream cluster temporarily unavailable (no leader).
		return api.ErrorCode == 10008
	}
	return false
}

// retry calls f with a context bounded by attempt until f returns nil or
// an error that is not transient, ctx ends, or retryFor has passed (when
// ctx has no deadline). f is told whether an earlier attempt failed
// transiently: that attempt may have been carried out without an answer.
// It returns f's last error.
func retry(ctx context.Context, attempt time.Duration, f func(ctx context.Context, again bool) error) error {
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(retryFor)
	}
	again := false
	for {
		actx, cancel := context.WithTimeout(ctx, attempt)
		err := f(actx, again)
		cancel()
		if !transient(err) || ctx.Err() != nil || time.Until(deadline) < retryPause {
			return err
		}
		again = true
		select {
		case <-ctx.Done():
			return err
		case <-time.After(retryPause):
		}
	}
}

// landed reports, after a conditional write of value to key failed on a
// revision mismatch following an attempt that got no answer, whether
// that attempt did land: the key holds value now. It returns the key's
// revision if so.
func (k *kv) landed(ctx context.Context, key string, value []byte) (uint64, bool) {
	e, err := k.kv.Get(ctx, key)
	if err != nil || e.Operation() != jetstream.KeyValuePut || !bytes.Equal(e.Value(), value) {
		return 0, false
	}
	return e.Revision(), true
}
