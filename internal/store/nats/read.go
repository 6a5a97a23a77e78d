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

// rangeBatch is how many messages one pull of ReadRange asks for.
const rangeBatch = 256

// ReadRange calls each with the messages of st on subj (a filter, wildcards
// allowed) with sequences lo to hi, in order, and stops early when each
// returns false. It reads with an ephemeral consumer of its own (in
// memory, no acks; one filter subject, which NATS servers before 2.10
// take too), deleted after, and never waits for messages: it ends at hi
// or at the stream's last message on subj. Errors: the store's.
func ReadRange(ctx context.Context, st jetstream.Stream, subj string, lo, hi uint64, each func(Msg) bool) error {
	cons, err := st.CreateConsumer(ctx, jetstream.ConsumerConfig{
		FilterSubject: subj, DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: lo,
		AckPolicy: jetstream.AckNonePolicy, MemoryStorage: true, InactiveThreshold: time.Minute,
	})
	if err != nil {
		return err
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = st.DeleteConsumer(dctx, cons.CachedInfo().Name)
	}()
	for {
		b, err := cons.FetchNoWait(rangeBatch)
		if err != nil {
			return err
		}
		n, done := 0, false
		for m := range b.Messages() {
			n++
			md, err := m.Metadata()
			if err != nil {
				return err
			}
			seq := md.Sequence.Stream
			if seq >= hi || md.NumPending == 0 {
				done = true
			}
			if seq > hi {
				continue
			}
			if !each(Msg{Seq: seq, Time: md.Timestamp, Data: m.Data()}) {
				return nil
			}
		}
		if err := b.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) {
			return err
		}
		if done || n == 0 {
			return nil
		}
	}
}
