package nats

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/nimbus-serverless/nimbus"
)

// letters is the async.Letters: the dead-letter stream, one message per
// dead letter (so that re-driving one deletes just it), its sequence the
// letter's Seq.
type letters struct {
	b   *Backend
	dlq jetstream.Stream
}

func openLetters(ctx context.Context, b *Backend) (*letters, error) {
	st, err := b.cfg.JS.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name: b.names.dlq, Subjects: []string{b.names.dlqSubj + ">"}, Retention: jetstream.LimitsPolicy,
		Storage: jetstream.FileStorage, Replicas: b.cfg.Replicas, MaxAge: b.cfg.Retention, Description: "Nimbus async dead letters",
	})
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", b.names.dlq, err)
	}
	return &letters{b: b, dlq: st}, nil
}

// Bury implements async.Letters.
func (l *letters) Bury(ctx context.Context, dl *nimbus.DeadLetter) error {
	b, err := json.Marshal(dl)
	if err != nil {
		return fmt.Errorf("encode dead letter: %w", err)
	}
	return l.b.w.writeAll(ctx, []writeReq{{subject: l.b.names.dlqSubj + dl.Function, rec: b, alone: true}})
}

// Letters implements async.Letters: it reads fn's subject from after,
// which costs the page.
func (l *letters) Letters(ctx context.Context, fn string, after uint64, limit int) ([]nimbus.DeadLetter, error) {
	subj := l.b.names.dlqSubj + fn
	last, err := l.dlq.GetLastMsgForSubject(ctx, subj)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, l.unavailable(err)
	}
	if last.Sequence <= after {
		return nil, nil // nothing after the marker: no need to wait for one
	}
	cfg := jetstream.OrderedConsumerConfig{FilterSubjects: []string{subj}}
	if after > 0 {
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, after+1
	}
	cons, err := l.b.cfg.JS.OrderedConsumer(ctx, l.b.names.dlq, cfg)
	if err != nil {
		return nil, l.unavailable(err)
	}
	var out []nimbus.DeadLetter
	for len(out) < limit {
		m, err := cons.Next(jetstream.FetchMaxWait(2 * time.Second))
		if errors.Is(err, jetstream.ErrNoMessages) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) {
			break
		}
		if err != nil {
			return nil, l.unavailable(err)
		}
		md, err := m.Metadata()
		if err != nil {
			return nil, l.unavailable(err)
		}
		var dls []nimbus.DeadLetter
		if json.Unmarshal(m.Data(), &dls) == nil {
			for _, dl := range dls {
				dl.Seq = md.Sequence.Stream
				out = append(out, dl)
			}
		}
		if md.NumPending == 0 || md.Sequence.Stream >= last.Sequence {
			break
		}
	}
	return out[:min(len(out), limit)], nil
}

// Remove implements async.Letters.
func (l *letters) Remove(ctx context.Context, seq uint64) error {
	if err := l.dlq.DeleteMsg(ctx, seq); err != nil && !gone(err) {
		return l.unavailable(err)
	}
	return nil
}

// gone reports whether err says the message is not there (any more). A
// failed delete carries JetStream's error only as text: its codes 10043
// ("sequence not found") and 10057 ("no message found") say so.
func gone(err error) bool {
	return errors.Is(err, jetstream.ErrMsgNotFound) ||
		(errors.Is(err, jetstream.ErrMsgDeleteUnsuccessful) &&
			(strings.Contains(err.Error(), "err_code=10043") || strings.Contains(err.Error(), "err_code=10057")))
}

func (l *letters) unavailable(err error) error {
	if errors.Is(err, context.Canceled) {
		return err
	}
	return nimbus.Errorf(nimbus.ErrUnavailable, "async: dead letters: %v", err)
}
