package nats

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/engine"
	"github.com/nimbus-serverless/nimbus/internal/fnlog"
	natsstore "github.com/nimbus-serverless/nimbus/internal/store/nats"
)

// maxSkew is how far apart the clocks of the nodes that write may be: a
// read with Since goes back until messages this much older than Since.
const maxSkew = 5 * time.Minute

// Read returns the q.Limit most recent lines of fn matching q, oldest
// first (this node's buffered lines written first: Sync), and the position of the newest message it considered (Follow
// continues after it). It reads the subject backwards in spans of
// sequences, each forward by a consumer of its own. ErrUnavailable: the
// store did not answer.
func (s *Store) Read(ctx context.Context, fn string, q fnlog.Query) ([]engine.LogRecord, uint64, error) {
	s.Sync(ctx)
	subj := s.subj + fn
	last, err := s.st.GetLastMsgForSubject(ctx, subj)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, s.unavailable(err)
	}
	pos := last.Sequence
	var out []engine.LogRecord // newest first
	span := uint64(64)
	for hi := pos; hi > 0 && len(out) < q.Limit; {
		lo := uint64(1)
		if hi > span {
			lo = hi - span + 1
		}
		msgs, err := s.read(ctx, subj, lo, hi)
		if err != nil {
			return nil, 0, err
		}
		for i := len(msgs) - 1; i >= 0 && len(out) < q.Limit; i-- {
			m := &msgs[i]
			for j := len(m.recs) - 1; j >= 0 && len(out) < q.Limit; j-- {
				r := &m.recs[j]
				if q.Matches(r.T, r.R, r.L) {
					out = append(out, engine.LogRecord{Time: r.T, Function: fn, RequestID: r.R, Line: r.L})
				}
			}
			if !q.Since.IsZero() && m.at.Before(q.Since.Add(-maxSkew)) {
				hi = 0
				break
			}
		}
		if hi > 0 {
			hi = lo - 1
		}
		span = min(2*span, 4096)
	}
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out, pos, nil
}

// readMsg is a message read back: its lines and when the store took it.
type readMsg struct {
	at   time.Time
	recs []stored
}

// read returns the messages on subj with sequences lo to hi, in order. A
// message on subj exists at hi, so the reads never wait.
func (s *Store) read(ctx context.Context, subj string, lo, hi uint64) ([]readMsg, error) {
	var out []readMsg
	err := natsstore.ReadRange(ctx, s.st, subj, lo, hi, func(m natsstore.Msg) bool {
		out = append(out, readMsg{at: m.Time, recs: s.decode(m.Data)})
		return true
	})
	if err != nil {
		return nil, s.unavailable(err)
	}
	return out, nil
}

// decode reads a message's lines, skipping damaged ones.
func (s *Store) decode(data []byte) []stored {
	var out []stored
	for len(data) > 0 {
		line := data
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			line, data = data[:i], data[i+1:]
		} else {
			data = nil
		}
		var r stored
		if err := json.Unmarshal(line, &r); err != nil {
			s.log.Warn("function logs: skipped a damaged line", nimbus.LogErr, err)
			continue
		}
		out = append(out, r)
	}
	return out
}

// followInactive is how long a follow's consumer outlives its reader.
const followInactive = 10 * time.Second

// Follow sends fn's lines matching q (its Since, RequestID and Filter)
// stored after the position after, as they come, until ctx ends; then
// the channel closes. ErrUnavailable: the store did not answer.
func (s *Store) Follow(ctx context.Context, fn string, q fnlog.Query, after uint64) (<-chan engine.LogRecord, error) {
	cons, err := s.st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{s.subj + fn}, DeliverPolicy: jetstream.DeliverByStartSequencePolicy,
		OptStartSeq: after + 1,
		// Gone from the server soon after the follow stops (nats.go's
		// default keeps it 5 minutes: every console page view opens one).
		InactiveThreshold: followInactive,
	})
	if err != nil {
		return nil, s.unavailable(err)
	}
	it, err := cons.Messages()
	if err != nil {
		return nil, s.unavailable(err)
	}
	ch := make(chan engine.LogRecord, 256)
	go func() {
		defer close(ch)
		defer it.Stop()
		for {
			m, err := it.Next(jetstream.NextContext(ctx))
			if err != nil {
				if ctx.Err() == nil {
					s.log.Warn("function logs: follow", nimbus.LogFunction, fn, nimbus.LogErr, err)
				}
				return
			}
			for _, r := range s.decode(m.Data()) {
				if !q.Matches(r.T, r.R, r.L) {
					continue
				}
				select {
				case ch <- engine.LogRecord{Time: r.T, Function: fn, RequestID: r.R, Line: r.L}:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return ch, nil
}

func (s *Store) unavailable(err error) error {
	if errors.Is(err, context.Canceled) {
		return err
	}
	return nimbus.Errorf(nimbus.ErrUnavailable, "function logs: %v", err)
}
