package async

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nimbus-serverless/nimbus"
)

// errClosed: the service is shutting down.
var errClosed = errors.New("async: service closed")

// writer commits records to JetStream in groups: every record that arrives
// while one round is being stored goes into the next round, one message per
// subject, so a single fsync covers many records. A caller of write returns
// once its record is stored (fsynced, with the embedded server).
type writer struct {
	js       jetstream.JetStream
	maxBytes int
	log      *slog.Logger
	reqs     chan writeReq
	quit     chan struct{}
	wg       sync.WaitGroup
	once     sync.Once
}

type writeReq struct {
	subject string
	rec     []byte     // one JSON value
	done    chan error // nil: nobody waits
	alone   bool       // in a message of its own
}

// maxRound bounds the records of one round.
const maxRound = 4096

func newWriter(js jetstream.JetStream, maxBytes int, log *slog.Logger) *writer {
	w := &writer{js: js, maxBytes: maxBytes, log: log, reqs: make(chan writeReq, maxRound), quit: make(chan struct{})}
	w.wg.Add(1)
	go w.loop()
	return w
}

// writeAll stores the records, in order, and waits until all are durable.
func (w *writer) writeAll(ctx context.Context, reqs []writeReq) error {
	done := make(chan error, len(reqs))
	for _, r := range reqs {
		r.done = done
		select {
		case w.reqs <- r:
		case <-w.quit:
			return errClosed
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	var first error
	for range reqs {
		select {
		case err := <-done:
			if first == nil {
				first = err
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return first
}

// post stores rec without waiting (for records whose loss only delays
// information, such as Running).
func (w *writer) post(subject string, rec []byte) {
	select {
	case w.reqs <- writeReq{subject: subject, rec: rec}:
	case <-w.quit:
	}
}

func (w *writer) close() {
	w.once.Do(func() { close(w.quit) })
	w.wg.Wait()
}

func (w *writer) loop() {
	defer w.wg.Done()
	for {
		var first writeReq
		select {
		case first = <-w.reqs:
		case <-w.quit:
			w.failQueued()
			return
		}
		round := []writeReq{first}
	more:
		for len(round) < maxRound {
			select {
			case r := <-w.reqs:
				round = append(round, r)
			default:
				break more
			}
		}
		w.commit(round)
	}
}

func (w *writer) failQueued() {
	for {
		select {
		case r := <-w.reqs:
			if r.done != nil {
				r.done <- errClosed
			}
		default:
			return
		}
	}
}

// commit stores one round: one message per subject (more when a subject's
// records exceed maxBytes), published together, then waits for every ack.
func (w *writer) commit(round []writeReq) {
	type msgReqs struct {
		fut  jetstream.PubAckFuture
		err  error
		reqs []writeReq
	}
	var msgs []*msgReqs
	open := map[string]*msgReqs{} // the subject's message being filled
	bodies := map[*msgReqs][]byte{}
	for _, r := range round {
		m := open[r.subject]
		if m == nil || r.alone || len(bodies[m])+len(r.rec)+2 > w.maxBytes {
			m = &msgReqs{}
			msgs = append(msgs, m)
			if !r.alone {
				open[r.subject] = m
			} else {
				delete(open, r.subject)
			}
			bodies[m] = append(make([]byte, 0, 256), '[')
		} else {
			bodies[m] = append(bodies[m], ',')
		}
		bodies[m] = append(bodies[m], r.rec...)
		m.reqs = append(m.reqs, r)
	}
	for _, m := range msgs {
		body := append(bodies[m], ']')
		m.fut, m.err = w.js.PublishMsgAsync(&nats.Msg{Subject: m.reqs[0].subject, Data: body})
	}
	for _, m := range msgs {
		err := m.err
		if err == nil {
			select {
			case <-m.fut.Ok():
			case err = <-m.fut.Err():
			}
		}
		if err != nil {
			err = fmt.Errorf("store async records: %w", err)
			w.log.Warn("async write failed", "subject", m.reqs[0].subject, "records", len(m.reqs), nimbus.LogErr, err)
		}
		for _, r := range m.reqs {
			if r.done != nil {
				r.done <- err
			}
		}
	}
}
