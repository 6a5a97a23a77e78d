package nats

import (
	"context"
	"errors"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Msg is a stream message read back by ReadRange.
type Msg struct {
	Seq  uint64
	Time time.Time // when the stream stored it
	Data []byte
}

// rangeBatch is the most messages one pull of ReadRange asks for, and
// rangeBytes about the most bytes: the client drops the messages of a
// pull past its pending limit (64 MB), silently for a consumer without
// acks, so pulls of large messages ask for fewer.
const (
	rangeBatch = 256
	rangeBytes = 16 << 20
)

// ReadRange calls each with the messages of st on subj (a filter, wildcards
// allowed) with sequences lo to hi, in order, and stops early when each
// returns false. It reads with an ephemeral consumer of its own (in
// memory, no acks; one filter subject, which NATS servers before 2.10
// take too), deleted after, and never waits for messages: it ends at hi
// or at the stream's last message on subj. A message the client dropped
// (a gap in the consumer's sequence) is read again by a new consumer
// from where the gap began, with smaller pulls: none is skipped.
// Errors: the store's.
func ReadRange(ctx context.Context, st jetstream.Stream, subj string, lo, hi uint64, each func(Msg) bool) error {
	batch := rangeBatch
	for {
		next, err := readFrom(ctx, st, subj, lo, hi, &batch, each)
		if err != nil || next == 0 {
			return err
		}
		lo, batch = next, max(1, batch/4)
	}
}

// readFrom is ReadRange with one consumer; after a gap it returns the
// sequence to read again from (0: done).
func readFrom(ctx context.Context, st jetstream.Stream, subj string, lo, hi uint64, batch *int, each func(Msg) bool) (uint64, error) {
	cons, err := st.CreateConsumer(ctx, jetstream.ConsumerConfig{
		FilterSubject: subj, DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: lo,
		AckPolicy: jetstream.AckNonePolicy, MemoryStorage: true, InactiveThreshold: time.Minute,
	})
	if err != nil {
		return 0, err
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = st.DeleteConsumer(dctx, cons.CachedInfo().Name)
	}()
	var delivered uint64 // the consumer sequence of the last message
	for {
		b, err := cons.FetchNoWait(*batch)
		if err != nil {
			return 0, err
		}
		n, done := 0, false
		for m := range b.Messages() {
			n++
			md, err := m.Metadata()
			if err != nil {
				return 0, err
			}
			if md.Sequence.Consumer != delivered+1 {
				for range b.Messages() { // drain the pull before the consumer goes
				}
				return lo, nil // the client dropped messages: read again from lo
			}
			delivered = md.Sequence.Consumer
			seq := md.Sequence.Stream
			if seq >= hi || md.NumPending == 0 {
				done = true
			}
			if seq > hi {
				continue
			}
			if size := len(m.Data()); size > 0 {
				*batch = min(*batch, max(1, rangeBytes/size))
			}
			if !each(Msg{Seq: seq, Time: md.Timestamp, Data: m.Data()}) {
				return 0, nil
			}
			lo = seq + 1
		}
		if err := b.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) {
			return 0, err
		}
		if done || n == 0 {
			return 0, nil
		}
	}
}

// SeqSince is the sequence of the first message of st on subj stored at t
// or later, or the stream's last sequence + 1 when there is none.
// Errors: the store's.
func SeqSince(ctx context.Context, st jetstream.Stream, subj string, t time.Time) (uint64, error) {
	cons, err := st.CreateConsumer(ctx, jetstream.ConsumerConfig{
		FilterSubject: subj, DeliverPolicy: jetstream.DeliverByStartTimePolicy, OptStartTime: &t,
		AckPolicy: jetstream.AckNonePolicy, MemoryStorage: true, InactiveThreshold: time.Minute,
	})
	if err != nil {
		return 0, err
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = st.DeleteConsumer(dctx, cons.CachedInfo().Name)
	}()
	b, err := cons.FetchNoWait(1)
	if err != nil {
		return 0, err
	}
	for m := range b.Messages() {
		md, err := m.Metadata()
		if err != nil {
			return 0, err
		}
		return md.Sequence.Stream, nil
	}
	if err := b.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) {
		return 0, err
	}
	info, err := st.Info(ctx)
	if err != nil {
		return 0, err
	}
	return info.State.LastSeq + 1, nil
}
