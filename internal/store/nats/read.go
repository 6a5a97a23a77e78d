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
// acks, so pulls of large messages ask for fewer. The first pull asks for
// firstBatch, which is under rangeBytes even at NATS's largest payload
// (1 MB by default), and later pulls for what the sizes seen allow.
const (
	rangeBatch = 256
	rangeBytes = 16 << 20
)

var firstBatch = 16 // a variable for the tests, which ask for drops

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
	batch, limit := firstBatch, rangeBatch
	for {
		next, err := readFrom(ctx, st, subj, lo, hi, &batch, limit, each)
		if err != nil || next == 0 {
			return err
		}
		limit = max(1, batch/4)
		lo, batch = next, limit
	}
}

// readFrom is ReadRange with one consumer, pulls of *batch messages at
// most limit; after a gap it returns the sequence to read again from (0:
// done).
func readFrom(ctx context.Context, st jetstream.Stream, subj string, lo, hi uint64, batch *int, limit int, each func(Msg) bool) (uint64, error) {
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
	var pending uint64   // messages on subj after the last one, when it came
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
			delivered, pending = md.Sequence.Consumer, md.NumPending
			seq := md.Sequence.Stream
			if seq >= hi || md.NumPending == 0 {
				done = true
			}
			if seq > hi {
				continue
			}
			*batch = min(limit, max(1, rangeBytes/max(1, len(m.Data()))))
			if !each(Msg{Seq: seq, Time: md.Timestamp, Data: m.Data()}) {
				return 0, nil
			}
			lo = seq + 1
		}
		if err := b.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) {
			return 0, err
		}
		if done {
			return 0, nil
		}
		if n == 0 {
			if pending > 0 {
				// The client dropped the last messages of a pull: nothing
				// after them shows the gap, but the last one seen said
				// more were to come.
				return lo, nil
			}
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
