package nats

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/nimbus-serverless/nimbus"
)

// errClosed: the backend is shutting down.
var errClosed = nimbus.Errorf(nimbus.ErrUnavailable, "the Async Service is shutting down")

// writer commits records to JetStream in groups: every record that arrives
// while one round is being stored goes into the next round, one message per
// subject, so a single fsync covers many records. A caller of writeAll
// returns once its records are stored (fsynced, with the embedded server),
// or with nimbus.ErrUnavailable when the store did not confirm them within
// the write timeout: the writer never waits on the store for good.
type writer struct {
	js       jetstream.JetStream
	maxBytes int
	timeout  time.Duration
	log      *slog.Logger
	// stored is told of each message stored, before its writers are;
	// committed of the subjects of every round stored.
	stored    func(subject string, seq uint64)
	committed func(subjects []string)
	// health, when set, fails a round at once while the store cannot
	// write.
	health func() error

	reqs chan writeReq
	quit chan struct{}
	wg   sync.WaitGroup
	once sync.Once
}

type writeReq struct {
	subject string
	rec     []byte     // one JSON value
	done    chan error // nil: nobody waits
	alone   bool       // in a message of its own
}

// maxRound bounds the records of one round.
const maxRound = 4096

func newWriter(js jetstream.JetStream, maxBytes int, timeout time.Duration, log *slog.Logger, committed func([]string)) *writer {
	w := &writer{js: js, maxBytes: maxBytes, timeout: timeout, log: log, committed: committed,
		reqs: make(chan writeReq, maxRound), quit: make(chan struct{})}
	w.wg.Add(1)
	go w.loop()
	return w
}

// writeAll stores the records, in order, and waits until all are durable.
// Errors: nimbus.ErrUnavailable (not stored in time, or closing), ctx errors.
func (w *writer) writeAll(ctx context.Context, reqs []writeReq) error {
	ctx, cancel := context.WithTimeout(ctx, w.timeout+time.Second)
	defer cancel()
	done := make(chan error, len(reqs))
	for _, r := range reqs {
		r.done = done
		select {
		case w.reqs <- r:
		case <-w.quit:
			return errClosed
		case <-ctx.Done():
			return w.timedOut(ctx)
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
			return w.timedOut(ctx)
		}
	}
	return first
}

// timedOut turns the end of a write's wait into its error: the caller's
// own cancellation stays as it is, a deadline becomes ErrUnavailable.
func (w *writer) timedOut(ctx context.Context) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return nimbus.Errorf(nimbus.ErrUnavailable, "the store did not confirm the write within %s; retry later", w.timeout)
	}
	return ctx.Err()
}

// post stores rec without waiting (for records whose loss only delays
// information, such as Running). It never blocks: when the writer is
// backed up (the store does not answer) the record is dropped.
func (w *writer) post(subject string, rec []byte) {
	select {
	case w.reqs <- writeReq{subject: subject, rec: rec}:
	default:
		w.log.Warn("async: the writer is backed up; a record was not stored", "subject", subject)
	}
}

// close stops the writer; queued writes fail with errClosed.
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

// batch is one message of a round and the records in it.
type batch struct {
	body []byte
	reqs []writeReq
	fut  jetstream.PubAckFuture
	err  error
}

// commit stores one round: one message per subject (more when a subject's
// records exceed maxBytes), published together, then waits for every ack
// until the write timeout.
func (w *writer) commit(round []writeReq) {
	if w.health != nil {
		if err := w.health(); err != nil {
			for _, r := range round {
				if r.done != nil {
					r.done <- err
				}
			}
			return
		}
	}
	msgs := w.pack(round)
	for _, m := range msgs {
		m.fut, m.err = w.js.PublishMsgAsync(&nats.Msg{Subject: m.reqs[0].subject, Data: m.body},
			jetstream.WithStallWait(w.timeout))
	}
	deadline := time.NewTimer(w.timeout)
	defer deadline.Stop()
	var subjects []string
	for _, m := range msgs {
		err := m.err
		if err == nil {
			select {
			case ack := <-m.fut.Ok():
				if w.stored != nil {
					w.stored(m.reqs[0].subject, ack.Sequence)
				}
			case err = <-m.fut.Err():
			case <-deadline.C:
				err = nimbus.Errorf(nimbus.ErrUnavailable, "the store did not confirm the write within %s; retry later", w.timeout)
				deadline.Reset(0) // the rest of the round has timed out too
			case <-w.quit:
				err = errClosed
			}
		}
		if err != nil {
			if !errors.Is(err, nimbus.ErrUnavailable) {
				err = nimbus.Errorf(nimbus.ErrUnavailable, "the store could not write: %v", err)
			}
			w.log.Warn("async: write failed", "subject", m.reqs[0].subject, "records", len(m.reqs), nimbus.LogErr, err)
		} else {
			subjects = append(subjects, m.reqs[0].subject)
		}
		for _, r := range m.reqs {
			if r.done != nil {
				r.done <- err
			}
		}
	}
	if len(subjects) > 0 && w.committed != nil {
		w.committed(subjects)
	}
}

// pack groups a round's records into messages: a JSON array per subject,
// split where it would pass maxBytes; an alone record gets its own.
func (w *writer) pack(round []writeReq) []*batch {
	var msgs []*batch
	open := map[string]*batch{} // the subject's message being filled
	for _, r := range round {
		m := open[r.subject]
		if m == nil || r.alone || len(m.body)+len(r.rec)+2 > w.maxBytes {
			m = &batch{body: append(make([]byte, 0, 256), '[')}
			msgs = append(msgs, m)
			if r.alone {
				delete(open, r.subject)
			} else {
				open[r.subject] = m
			}
		} else {
			m.body = append(m.body, ',')
		}
		m.body = append(m.body, r.rec...)
		m.reqs = append(m.reqs, r)
	}
	for _, m := range msgs {
		m.body = append(m.body, ']')
	}
	return msgs
}
