package records

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/nimbus-serverless/nimbus"
)

// Defaults of a Config.
const (
	DefaultRetention     = 7 * 24 * time.Hour
	DefaultFlushInterval = 50 * time.Millisecond
	DefaultMaxPending    = 100_000
	DefaultWriteTimeout  = 5 * time.Second
)

// Config wires a Store.
type Config struct {
	JS     jetstream.JetStream
	Prefix string // the store prefix, e.g. "nimbus"
	// Replicas is how many copies JetStream keeps of the streams and
	// buckets made here (the store's Replicas; 1 when 0).
	Replicas int
	// Retention is how long records are kept (DefaultRetention when 0).
	Retention time.Duration
	// FlushInterval is how long a record may wait before it is written
	// (DefaultFlushInterval when 0): what a SIGKILL may lose.
	FlushInterval time.Duration
	// MaxPending bounds the records waiting to be written (while the
	// store is slow or down); beyond it records are dropped and counted.
	MaxPending int
	// WriteTimeout bounds one write.
	WriteTimeout time.Duration
	// Health, when set, says why the store cannot write now.
	Health func() error
	// Node is this node's id: the holder of the usage aggregation lease.
	Node string
	// Prices is the price table of usage reports.
	Prices Prices
	// Aggregate runs the usage aggregation on this node when it holds the
	// lease (every node of a cluster competes for it). Off in tests that
	// want none.
	Aggregate bool
	// AggregateInterval is how often the aggregation folds new records
	// into usage (default 1 s).
	AggregateInterval time.Duration
	// Counter, when set, is told of the records written and dropped
	// (metrics.Metrics).
	Counter Counter
	Logger  *slog.Logger
}

// Counter counts records written and dropped.
type Counter interface {
	RecordsWritten(n int)
	RecordsDropped(n int)
}

// Store keeps the records of a node's invocations in the stream
// <Prefix>_INVOCATIONS (one message per batch of one function's records,
// JSON lines, on the subject <prefix>.inv.<function>) and the usage they
// add up to (usage.go).
type Store struct {
	cfg  Config
	log  *slog.Logger
	st   jetstream.Stream
	name string // the stream
	subj string // the subject prefix, ending in "."

	in      chan Record
	flushes chan chan struct{}
	written counter
	dropped counter
	closed  atomic.Bool

	usage *usage
	stats *stats
	enc   lineEncoder // the writer's, reused

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// Open creates (or finds, and updates the retention of) the stream and the
// usage buckets, and starts the writer (and the aggregation when
// cfg.Aggregate). Close stops them.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	if cfg.JS == nil {
		return nil, errors.New("records: JS is required")
	}
	if cfg.Prefix == "" {
		cfg.Prefix = "nimbus"
	}
	if cfg.Retention <= 0 {
		cfg.Retention = DefaultRetention
	}
	if cfg.FlushInterval <= 0 {
		cfg.FlushInterval = DefaultFlushInterval
	}
	if cfg.MaxPending <= 0 {
		cfg.MaxPending = DefaultMaxPending
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = DefaultWriteTimeout
	}
	if cfg.AggregateInterval <= 0 {
		cfg.AggregateInterval = time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Prices.Currency == "" {
		cfg.Prices = DefaultPrices()
	}
	s := &Store{cfg: cfg, log: cfg.Logger, name: cfg.Prefix + "_INVOCATIONS", subj: strings.ToLower(cfg.Prefix) + ".inv.",
		in: make(chan Record, cfg.MaxPending), flushes: make(chan chan struct{}), enc: newLineEncoder()}
	if cfg.Counter != nil {
		s.written.tell, s.dropped.tell = cfg.Counter.RecordsWritten, cfg.Counter.RecordsDropped
	}
	st, err := cfg.JS.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name: s.name, Subjects: []string{s.subj + ">"}, Retention: jetstream.LimitsPolicy,
		Storage: jetstream.FileStorage, Replicas: cfg.Replicas, MaxAge: cfg.Retention, Description: "Nimbus invocation records",
		// A batch is resent with its message id until the store takes it:
		// the server drops a copy it took within this window.
		Duplicates: dedupWindow,
	})
	if err != nil {
		return nil, fmt.Errorf("records: stream %s: %w", s.name, err)
	}
	s.st = st
	if s.usage, err = openUsage(ctx, s); err != nil {
		return nil, err
	}
	if s.stats, err = openStats(ctx, s); err != nil {
		return nil, err
	}
	bg, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	s.wg.Go(func() { s.writeLoop(bg) })
	if cfg.Aggregate {
		s.wg.Go(func() { s.usage.loop(bg) })
	}
	return s, nil
}

// lineEncoder writes a record as a JSON line into buf.
type lineEncoder struct {
	*json.Encoder
	buf *bytes.Buffer
}

func newLineEncoder() lineEncoder {
	buf := &bytes.Buffer{}
	return lineEncoder{json.NewEncoder(buf), buf}
}

// counter is an atomic count that also tells Config.Counter.
type counter struct {
	n    atomic.Uint64
	tell func(int)
}

func (c *counter) Add(n uint64) {
	c.n.Add(n)
	if c.tell != nil {
		c.tell(int(n))
	}
}

func (c *counter) Load() uint64 { return c.n.Load() }

// Add queues a record to be written. It never blocks: when MaxPending
// records are already waiting, r is dropped (and counted).
func (s *Store) Add(r *Record) {
	if s.closed.Load() {
		s.dropped.Add(1)
		return
	}
	select {
	case s.in <- *r:
	default:
		s.dropped.Add(1)
	}
}

// Written and Dropped count the records written and those lost (the queue
// was full, or they could not be written before Close).
func (s *Store) Written() uint64 { return s.written.Load() }
func (s *Store) Dropped() uint64 { return s.dropped.Load() }

// Flush waits until the records added before it are written (or ctx ends).
func (s *Store) Flush(ctx context.Context) error {
	done := make(chan struct{})
	select {
	case s.flushes <- done:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close writes what is queued (within ctx) and stops the writer and the
// aggregation.
func (s *Store) Close(ctx context.Context) error {
	if s.closed.Swap(true) {
		return nil
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 2*s.cfg.WriteTimeout)
		defer cancel()
	}
	err := s.Flush(ctx)
	s.cancel()
	s.wg.Wait()
	for _, x := range s.stats.index {
		x.close()
	}
	if n := len(s.in); n > 0 {
		s.dropped.Add(uint64(n))
	}
	return err
}

// dedupWindow is how long the stream remembers a batch's message id.
const dedupWindow = time.Hour

// maxMessage bounds one message's records (NATS's default max payload is
// 1 MB).
const maxMessage = 512 << 10

// batch is one message: a function's records as JSON lines, with the id
// that lets the server drop it if a retry sends it again.
type batch struct {
	fn   string
	data []byte
	n    int
	id   string
}

// writeLoop writes the queued records every FlushInterval until ctx ends.
func (s *Store) writeLoop(ctx context.Context) {
	t := time.NewTicker(s.cfg.FlushInterval)
	defer t.Stop()
	var pending []batch // not yet written
	var waiting []chan struct{}
	var seq uint64
	prefix := s.cfg.Node + "-" + strconv.FormatInt(time.Now().UnixNano(), 36) + "-"
	for {
		select {
		case <-ctx.Done():
			for _, b := range pending {
				s.dropped.Add(uint64(b.n))
			}
			return
		case <-t.C:
		case done := <-s.flushes:
			waiting = append(waiting, done)
		}
		pending = s.take(pending, func() string { seq++; return prefix + strconv.FormatUint(seq, 10) })
		if len(pending) > 0 {
			pending = s.write(ctx, pending)
		}
		if len(pending) == 0 || ctx.Err() != nil {
			for _, w := range waiting {
				close(w)
			}
			waiting = waiting[:0]
		}
	}
}

// take turns the queued records into batches after pending, keeping at
// most MaxPending records waiting (the oldest beyond it are dropped and
// counted).
func (s *Store) take(pending []batch, id func() string) []batch {
	byFn := map[string]*batch{}
	var fresh []*batch
loop:
	for range s.cfg.MaxPending {
		var r Record
		select {
		case r = <-s.in:
		default:
			break loop
		}
		s.enc.buf.Reset()
		if err := s.enc.Encode(&r); err != nil { // one line, with its newline
			s.dropped.Add(1)
			continue
		}
		line := s.enc.buf.Bytes()
		b := byFn[r.Function]
		if b == nil || len(b.data)+len(line) >= maxMessage {
			b = &batch{fn: r.Function, id: id(), data: make([]byte, 0, 16<<10)}
			byFn[r.Function] = b
			fresh = append(fresh, b)
		}
		b.data = append(b.data, line...)
		b.n++
	}
	for _, b := range fresh {
		pending = append(pending, *b)
	}
	total := 0
	for _, b := range pending {
		total += b.n
	}
	for len(pending) > 0 && total > s.cfg.MaxPending {
		s.dropped.Add(uint64(pending[0].n))
		total -= pending[0].n
		pending = pending[1:]
	}
	return pending
}

// write publishes the batches and returns those that could not be written,
// to try again (with the same message id: the server drops a batch it
// already has).
func (s *Store) write(ctx context.Context, pending []batch) []batch {
	if s.cfg.Health != nil {
		if err := s.cfg.Health(); err != nil {
			return pending
		}
	}
	wctx, cancel := context.WithTimeout(ctx, s.cfg.WriteTimeout)
	defer cancel()
	acks := make([]jetstream.PubAckFuture, len(pending))
	for i := range pending {
		b := &pending[i]
		f, err := s.cfg.JS.PublishAsync(s.subj+b.fn, b.data, jetstream.WithMsgID(b.id))
		if err != nil {
			break
		}
		acks[i] = f
	}
	rest := pending[:0]
	for i, b := range pending {
		ok := false
		if acks[i] != nil {
			select {
			case <-acks[i].Ok():
				ok = true
			case <-acks[i].Err():
			case <-wctx.Done():
			}
		}
		if ok {
			s.written.Add(uint64(b.n))
		} else {
			rest = append(rest, b)
		}
	}
	if len(rest) > 0 {
		s.log.Warn("records: write failed; will retry", "batches", len(rest))
	}
	return rest
}

func (s *Store) unavailable(op string, err error) error {
	if errors.Is(err, context.Canceled) {
		return err
	}
	return nimbus.Errorf(nimbus.ErrUnavailable, "records: %s: %v", op, err)
}
