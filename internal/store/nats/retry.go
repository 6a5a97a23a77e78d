package nats

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats-server/v2/server"
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

// retrier tries operations again while the store does not answer (retry).
type retrier struct {
	// patience is how long an operation whose context has no deadline is
	// tried again; 0 (a single node, where no leader changes) tries once.
	patience time.Duration
	// health, when set, stops the retries once it reports an error (the
	// store knows it cannot write).
	health func() error
}

// newRetrier is the retrier of s's buckets and blobs.
func (s *Store) newRetrier() retrier {
	if s.cfg.Replicas > 1 || s.cfg.URL != "" {
		return retrier{patience: retryFor, health: s.Healthy}
	}
	return retrier{}
}

// retry calls f with a context bounded by attempt until f returns nil or
// an error that is not transient, ctx ends, the store reports itself
// unhealthy, or r.patience has passed (when ctx has no deadline). f is
// told whether an earlier attempt failed transiently: that attempt may
// have been carried out without an answer. It returns f's last error.
func (r retrier) retry(ctx context.Context, attempt time.Duration, f func(ctx context.Context, again bool) error) error {
	if r.patience == 0 {
		return f(ctx, false)
	}
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(r.patience)
	}
	again := false
	for {
		actx, cancel := context.WithTimeout(ctx, attempt)
		err := f(actx, again)
		cancel()
		if !transient(err) || ctx.Err() != nil || time.Until(deadline) < retryPause {
			return err
		}
		if r.health != nil {
			if herr := r.health(); herr != nil {
				return herr
			}
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

// CaughtUp reports whether this member's copy of the bucket (Store.KV's
// name) holds every message the bucket's stream leader held when asked:
// a member that restarts reads its own copy first, which lacks what was
// written while it was away until JetStream has brought it up to date.
// It returns "" when it has, else what it waits for. Without an embedded
// server (remote mode), or on a single node, there is nothing to catch up.
func (s *Store) CaughtUp(ctx context.Context, bucket string) (string, error) {
	if s.proc == nil || s.cfg.Cluster.Listen == "" {
		return "", nil
	}
	srv := s.proc.server()
	if srv == nil {
		return "the embedded NATS server is restarting", nil
	}
	stream := "KV_" + s.cfg.Prefix + "_" + bucket
	var leader uint64
	err := retrier{patience: retryFor}.retry(ctx, attemptTimeout, func(ctx context.Context, _ bool) error {
		st, err := s.js.Stream(ctx, stream) // the stream leader answers
		if err == nil {
			leader = st.CachedInfo().State.LastSeq
		}
		return err
	})
	if err != nil {
		return "", storeErr("stream info "+stream, err)
	}
	acc, err := srv.JszAccount(&server.JSzOptions{Account: server.DEFAULT_GLOBAL_ACCOUNT, Streams: true})
	if err != nil {
		return "", fmt.Errorf("local state of %s: %w", stream, err)
	}
	for _, sd := range acc.Streams {
		if sd.Name == stream {
			if sd.State.LastSeq >= leader {
				return "", nil
			}
			return fmt.Sprintf("this member's copy of the %s bucket is at message %d of %d", bucket, sd.State.LastSeq, leader), nil
		}
	}
	return fmt.Sprintf("this member has no copy of the %s bucket yet", bucket), nil
}
