// Package nats is the Async Service's backend on NATS JetStream (see
// async.Backend): what `nimbus serve` runs, on the embedded server or on a
// NATS cluster shared by several nodes.
//
// Storage, named after the store prefix p (streams) and P (its case kept):
//
//   - P_QUEUE (limits, file), subject p.async.q.<function>: the queue. A
//     message holds a batch of events: writes are committed in groups, so
//     one fsync covers every event that arrived meanwhile. A message stays
//     until each of its events has a durable outcome; then it is deleted.
//   - P_async_claims (key-value, memory): which node holds which queue
//     message, until when. A node renews its claims; a claim that is not
//     renewed lapses and any node may take the message. Claims are in
//     memory: when the whole store restarts (the embedded server always
//     does, with its node) every message is free again at once.
//   - P_TASKS (limits, file, max age = the retention), subject
//     p.async.task.<function>: task records, in batches. Every node follows
//     the stream into a task index of its own (SQLite, in Config.IndexDir),
//     which answers task queries at the cost of the page.
//   - P_DLQ (limits, file), subject p.async.dlq.<function>: dead letters.
//   - p.async.wake (core NATS, not stored): after a write of events, the
//     functions that have new work, so that every node looks at once.
//
// The queue needs no JetStream consumer: a node reads a function's next
// message with a direct get by subject and takes it with a claim, so the
// number of functions is not bounded by the server's consumer limits and
// costs nothing while they are idle. (Nimbus before this design kept the
// queue in P_ASYNC, a work queue with a consumer per function; Open moves
// what it still holds into P_QUEUE and deletes it.)
package nats

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/async"
)

// Config wires a Backend.
type Config struct {
	JS     jetstream.JetStream
	NC     *nats.Conn
	Prefix string // the store prefix, e.g. "nimbus"
	// Replicas is how many copies JetStream keeps of the streams and
	// buckets made here (the store's Replicas; 1 when 0).
	Replicas int
	// IndexDir holds this node's task index; a missing or stale index is
	// rebuilt from the task stream.
	IndexDir string
	// NodeID names this node across its restarts (its data directory):
	// a restarted node frees at once the claims its previous run held.
	NodeID string
	// Retention is how long task records and dead letters are kept.
	Retention time.Duration
	// ClaimTTL is how long a claim lasts without renewal: how soon
	// another node takes over the messages of a node that died.
	ClaimTTL time.Duration
	// WriteTimeout bounds the wait for the store to confirm a write.
	WriteTimeout time.Duration
	// Health, when set, says why the store cannot write now (nil: it can):
	// writes then fail at once rather than after the write timeout.
	Health func() error
	Now    func() time.Time
	Logger *slog.Logger
}

// Defaults.
const (
	DefaultClaimTTL     = 30 * time.Second
	DefaultWriteTimeout = 5 * time.Second
	// envelope is the room a message needs beyond an event's payload.
	envelope = 16 << 10
)

func (c *Config) validate() error {
	if c.JS == nil || c.NC == nil || c.IndexDir == "" || c.NodeID == "" {
		return errors.New("async/nats: JS, NC, IndexDir and NodeID are required")
	}
	if c.Prefix == "" {
		c.Prefix = "nimbus"
	}
	if c.Retention <= 0 {
		c.Retention = async.DefaultRetention
	}
	if c.ClaimTTL <= 0 {
		c.ClaimTTL = DefaultClaimTTL
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = DefaultWriteTimeout
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// MaxEvent is the largest event payload a NATS connection can carry in a
// queue message.
func MaxEvent(nc *nats.Conn) int { return int(nc.MaxPayload()) - envelope }

// names are the streams', buckets' and subjects' names.
type names struct {
	events, tasks, dlq, claims string // streams and the claims bucket
	evSubj, taskSubj, dlqSubj  string // subject prefixes, ending in "."
	wake                       string
	oldEvents, oldEvSubj       string // the queue of the previous design
}

func newNames(prefix string) names {
	p := strings.ToLower(prefix)
	return names{
		events: prefix + "_QUEUE", tasks: prefix + "_TASKS", dlq: prefix + "_DLQ", claims: prefix + "_async_claims",
		evSubj: p + ".async.q.", taskSubj: p + ".async.task.", dlqSubj: p + ".async.dlq.",
		wake: p + ".async.wake", oldEvents: prefix + "_ASYNC", oldEvSubj: p + ".async.ev.",
	}
}

// Backend is the JetStream async.Backend.
type Backend struct {
	cfg   Config
	log   *slog.Logger
	names names
	w     *writer
	// lastTaskSeq is the task stream's sequence of the latest records this
	// node wrote.
	lastTaskSeq atomic.Uint64
	*queue
	*records
	*letters

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

var _ async.Backend = (*Backend)(nil)

// Open creates (or finds) the streams and the claims bucket, frees the
// claims this node's previous run left, brings the task index up to date
// with the task stream and starts following it.
func Open(ctx context.Context, cfg Config) (*Backend, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	b := &Backend{cfg: cfg, log: cfg.Logger, names: newNames(cfg.Prefix)}
	b.ctx, b.cancel = context.WithCancel(context.Background())
	b.w = newWriter(cfg.JS, MaxEvent(cfg.NC), cfg.WriteTimeout, cfg.Logger, b.committed)
	b.w.health = cfg.Health
	b.w.stored = b.stored
	var err error
	if b.queue, err = openQueue(ctx, b); err == nil {
		if b.records, err = openRecords(ctx, b); err == nil {
			b.letters, err = openLetters(ctx, b)
		}
	}
	if err != nil {
		_ = b.Close(context.Background())
		return nil, fmt.Errorf("async: %w", err)
	}
	return b, nil
}

// Close stops the backend: queued writes fail, claims still held are
// freed, and the index is closed.
func (b *Backend) Close(ctx context.Context) error {
	b.cancel()
	b.w.close()
	var errs []error
	if b.queue != nil {
		errs = append(errs, b.queue.close(ctx))
	}
	if b.records != nil {
		errs = append(errs, b.records.close(ctx))
	}
	done := make(chan struct{})
	go func() {
		b.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		errs = append(errs, fmt.Errorf("async: close: %w", ctx.Err()))
	}
	return errors.Join(errs...)
}

// write stores task records and events and waits until they are durable;
// then this node's index has the records at once. Usually they go in one
// commit round. When an event is keyed (its submitter named the task id),
// the events go first, in a round of their own, and the records in the
// next: a record stored without its event (the two in one round, the
// record's write acknowledged and the event's not, as when a cluster
// changes the queue's leader) would make the retry with the same task id
// find the task and store nothing, and the event would never run. An
// event stored without its record (the record's write failed) still runs,
// and the retry's event, of a later life of the task, supersedes it. The
// second round costs a keyed submission one more commit's wait.
func (b *Backend) write(ctx context.Context, recs []*nimbus.Task, evs []*async.Event) error {
	evReqs := make([]writeReq, 0, len(evs))
	keyed := false
	for _, ev := range evs {
		eb, err := json.Marshal(ev)
		if err != nil {
			return fmt.Errorf("encode event: %w", err)
		}
		evReqs = append(evReqs, writeReq{subject: b.names.evSubj + ev.Function, rec: eb})
		keyed = keyed || ev.Keyed
	}
	recReqs := make([]writeReq, 0, len(recs))
	for _, t := range recs {
		tb, err := json.Marshal(t)
		if err != nil {
			return fmt.Errorf("encode task record: %w", err)
		}
		recReqs = append(recReqs, writeReq{subject: b.names.taskSubj + t.Function, rec: tb})
	}
	rounds := [][]writeReq{append(recReqs, evReqs...)}
	if keyed {
		rounds = [][]writeReq{evReqs, recReqs}
	}
	for _, reqs := range rounds {
		if len(reqs) == 0 {
			continue
		}
		if err := b.w.writeAll(ctx, reqs); err != nil {
			return err
		}
	}
	if b.records != nil {
		b.records.applyLocal(recs)
	}
	return nil
}

// stored notes the stream position of this node's latest task records, so
// that a listing can wait for the index to have them.
func (b *Backend) stored(subject string, seq uint64) {
	if strings.HasPrefix(subject, b.names.taskSubj) {
		for {
			cur := b.lastTaskSeq.Load()
			if seq <= cur || b.lastTaskSeq.CompareAndSwap(cur, seq) {
				return
			}
		}
	}
}

// committed is told by the writer which subjects a round stored: the
// functions that got events are announced to every node.
func (b *Backend) committed(subjects []string) {
	var fns []string
	for _, s := range subjects {
		if fn, ok := strings.CutPrefix(s, b.names.evSubj); ok {
			fns = append(fns, fn)
		}
	}
	if len(fns) > 0 && b.queue != nil {
		b.queue.announce(fns)
	}
}

// goBackground runs f in a goroutine that Close waits for.
func (b *Backend) goBackground(f func(ctx context.Context)) {
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		f(b.ctx)
	}()
}
