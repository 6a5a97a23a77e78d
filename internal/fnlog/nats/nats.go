// Package nats keeps functions' log lines durably on NATS JetStream: the
// stream P_LOGS (limits, file storage), one message per batch of a
// function's lines on the subject p.logs.<function>.
//
// Lines come from the engine's LogStore (Add, never blocking): they are
// buffered per function and published in batches, every FlushInterval or
// at FlushBytes, off the invoke path. The buffer is bounded (BufferBytes):
// over it, and whenever the store cannot take a batch, lines are dropped
// and counted (Dropped). A message holds at most MaxMessageBytes; a
// function keeps at most MaxBytes/MaxMessageBytes messages (the oldest go
// first), and none older than the retention.
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
	"unicode/utf8"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/engine"
	"github.com/nimbus-serverless/nimbus/internal/fnlog"
)

// Sizes and times of the writer.
const (
	// MaxMessageBytes is the largest message (a batch of lines); the
	// stream refuses larger ones. A longer line is stored in pieces.
	MaxMessageBytes = 64 << 10
	// DefaultFlushInterval is the longest a line waits in the buffer,
	// DefaultFlushBytes the size at which a function's batch goes at once.
	DefaultFlushInterval = 200 * time.Millisecond
	DefaultFlushBytes    = 48 << 10
	// DefaultBufferBytes bounds the lines waiting to be written, all
	// functions together.
	DefaultBufferBytes = 8 << 20
	// DefaultWriteTimeout bounds the wait for the store to acknowledge a
	// flush.
	DefaultWriteTimeout = 2 * time.Second
	// pieceBytes is the longest piece of a line in a message.
	pieceBytes = 32 << 10
	// recOverhead is what a line costs in the buffer beyond its bytes.
	recOverhead = 96
)

// Config wires a Store.
type Config struct {
	JS     jetstream.JetStream
	Prefix string // the store prefix, e.g. "nimbus"
	// Replicas is how many copies JetStream keeps of the streams and
	// buckets made here (the store's Replicas; 1 when 0).
	Replicas int
	// Retention is how long lines are kept (fnlog.DefaultRetention when 0).
	Retention time.Duration
	// MaxBytes bounds each function's stored log (fnlog.DefaultMaxBytes
	// when 0; at least MaxMessageBytes).
	MaxBytes      int64
	BufferBytes   int           // DefaultBufferBytes when 0
	FlushInterval time.Duration // DefaultFlushInterval when 0
	FlushBytes    int           // DefaultFlushBytes when 0
	WriteTimeout  time.Duration // DefaultWriteTimeout when 0
	// Health, when set, says why the store cannot write now (nil: it can):
	// a flush then drops its lines at once rather than after the timeout.
	Health func() error
	Logger *slog.Logger
}

// Store is the durable log of every function: the engine's LogSink and
// what the API reads.
type Store struct {
	cfg  Config
	st   jetstream.Stream
	name string // the stream
	subj string // the subject prefix, ending in "."
	log  *slog.Logger

	mu       sync.Mutex // guards the fields below; never held across I/O
	pending  map[string]*batch
	buffered int      // bytes of pending and of batches being written
	purges   []string // functions whose subject is to be purged
	closed   bool

	kick    chan struct{}      // a batch is full, or a purge waits
	syncs   chan chan struct{} // flush now, and close the channel when done
	stop    chan struct{}
	stopped chan struct{}

	written, dropped atomic.Uint64 // lines
	warnedAt         atomic.Int64  // unix nanoseconds of the last outage warning
}

type batch struct {
	recs  []engine.LogRecord
	bytes int
}

var _ engine.LogSink = (*Store)(nil)

// Open creates (or finds, and updates the limits of) the stream and starts
// the writer; Close stops it.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	if cfg.JS == nil {
		return nil, errors.New("fnlog/nats: JS is required")
	}
	cfg.Prefix = cmpOr(cfg.Prefix, "nimbus")
	cfg.Retention = cmpOr(cfg.Retention, fnlog.DefaultRetention)
	cfg.MaxBytes = max(cmpOr(cfg.MaxBytes, fnlog.DefaultMaxBytes), MaxMessageBytes)
	cfg.BufferBytes = cmpOr(cfg.BufferBytes, DefaultBufferBytes)
	cfg.FlushInterval = cmpOr(cfg.FlushInterval, DefaultFlushInterval)
	cfg.FlushBytes = min(cmpOr(cfg.FlushBytes, DefaultFlushBytes), MaxMessageBytes/2)
	cfg.WriteTimeout = cmpOr(cfg.WriteTimeout, DefaultWriteTimeout)
	s := &Store{
		cfg: cfg, name: cfg.Prefix + "_LOGS", subj: strings.ToLower(cfg.Prefix) + ".logs.",
		log: cfg.Logger, pending: make(map[string]*batch),
		kick: make(chan struct{}, 1), syncs: make(chan chan struct{}), stop: make(chan struct{}), stopped: make(chan struct{}),
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	st, err := cfg.JS.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name: s.name, Subjects: []string{s.subj + ">"}, Retention: jetstream.LimitsPolicy,
		Storage: jetstream.FileStorage, Replicas: cfg.Replicas, MaxAge: cfg.Retention, Discard: jetstream.DiscardOld,
		MaxMsgsPerSubject: cfg.MaxBytes / MaxMessageBytes, MaxMsgSize: MaxMessageBytes,
		Description: "Nimbus function logs",
	})
	if err != nil {
		return nil, fmt.Errorf("function logs: stream %s: %w", s.name, err)
	}
	s.st = st
	go s.run()
	return s, nil
}

func cmpOr[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// Written is how many lines the store has acknowledged.
func (s *Store) Written() uint64 { return s.written.Load() }

// Dropped is how many lines were lost: over the buffer, or in a batch the
// store did not take (down, full, too slow).
func (s *Store) Dropped() uint64 { return s.dropped.Load() }

// Add buffers a line to be written; it never blocks. Over the buffer the
// line is dropped (and counted).
func (s *Store) Add(rec engine.LogRecord) {
	n := len(rec.Line) + len(rec.RequestID) + recOverhead
	s.mu.Lock()
	if s.closed || s.buffered+n > s.cfg.BufferBytes {
		s.mu.Unlock()
		s.dropped.Add(1)
		return
	}
	b := s.pending[rec.Function]
	if b == nil {
		b = &batch{}
		s.pending[rec.Function] = b
	}
	b.recs = append(b.recs, rec)
	b.bytes += n
	s.buffered += n
	full := b.bytes >= s.cfg.FlushBytes
	s.mu.Unlock()
	if full {
		s.poke()
	}
}

// Forget drops a deleted function's buffered lines and purges its stored
// ones (in the background).
func (s *Store) Forget(fn string) {
	s.mu.Lock()
	if b := s.pending[fn]; b != nil {
		s.buffered -= b.bytes
		delete(s.pending, fn)
	}
	if !s.closed {
		s.purges = append(s.purges, fn)
	}
	s.mu.Unlock()
	s.poke()
}

func (s *Store) poke() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// Close writes what is buffered (within ctx) and stops the writer; later
// lines are dropped. The Store holds nothing else of its own (the
// connection is the store's).
func (s *Store) Close(ctx context.Context) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	close(s.stop)
	select {
	case <-s.stopped:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Sync writes the lines buffered so far now, and returns when the store
// has taken them (or dropped them), when the Store is closed, or when ctx
// ends.
func (s *Store) Sync(ctx context.Context) {
	done := make(chan struct{})
	select {
	case s.syncs <- done:
	case <-s.stopped:
		return
	case <-ctx.Done():
		return
	}
	select {
	case <-done:
	case <-ctx.Done():
	}
}

// run flushes every FlushInterval, and at once when a batch is full,
// until Close; then once more.
func (s *Store) run() {
	defer close(s.stopped)
	t := time.NewTicker(s.cfg.FlushInterval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			s.flush(true)
			return
		case <-t.C:
			s.flush(true)
		case <-s.kick:
			s.flush(false)
		case done := <-s.syncs:
			s.flush(true)
			close(done)
		}
	}
}

// flush writes the pending batches (only the full ones unless all), then
// purges the subjects of deleted functions.
func (s *Store) flush(all bool) {
	s.mu.Lock()
	take := make(map[string]*batch)
	for fn, b := range s.pending {
		if all || b.bytes >= s.cfg.FlushBytes {
			take[fn] = b
			delete(s.pending, fn)
		}
	}
	purges := s.purges
	s.purges = nil
	s.mu.Unlock()
	if len(take) > 0 {
		s.write(take)
	}
	for _, fn := range purges {
		s.purge(fn)
	}
}

// write publishes the batches and waits for their acknowledgements.
func (s *Store) write(take map[string]*batch) {
	bytes, lines := 0, 0
	for _, b := range take {
		bytes += b.bytes
		lines += len(b.recs)
	}
	defer func() {
		s.mu.Lock()
		s.buffered -= bytes
		s.mu.Unlock()
	}()
	if s.cfg.Health != nil {
		if err := s.cfg.Health(); err != nil {
			s.lost(lines, err)
			return
		}
	}
	type sent struct {
		f     jetstream.PubAckFuture
		lines int
	}
	var futures []sent
	for fn, b := range take {
		for _, m := range encode(b.recs) {
			f, err := s.cfg.JS.PublishAsync(s.subj+fn, m.data)
			if err != nil {
				s.lost(m.lines, err)
				continue
			}
			futures = append(futures, sent{f, m.lines})
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.WriteTimeout)
	defer cancel()
	for _, p := range futures {
		select {
		case <-p.f.Ok():
			s.written.Add(uint64(p.lines))
		case err := <-p.f.Err():
			s.lost(p.lines, err)
		case <-ctx.Done():
			s.lost(p.lines, errors.New("no acknowledgement within the write timeout"))
		}
	}
}

// lost counts lines that were not written and warns, at most every 10 s.
func (s *Store) lost(lines int, err error) {
	s.dropped.Add(uint64(lines))
	now := time.Now().UnixNano()
	last := s.warnedAt.Load()
	if now-last >= int64(10*time.Second) && s.warnedAt.CompareAndSwap(last, now) {
		s.log.Warn("function logs: lines dropped, the store did not take them", "lines", lines,
			"dropped_total", s.dropped.Load(), nimbus.LogErr, err)
	}
}

// purge removes a function's stored lines.
func (s *Store) purge(fn string) {
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.WriteTimeout)
	defer cancel()
	if err := s.st.Purge(ctx, jetstream.WithPurgeSubject(s.subj+fn)); err != nil {
		s.log.Warn("function logs: purge a deleted function's log", nimbus.LogFunction, fn, nimbus.LogErr, err)
	}
}

// stored is a line as a message holds it (one JSON object a line).
type stored struct {
	T time.Time `json:"t"`
	R string    `json:"r,omitempty"`
	L string    `json:"l"`
}

type message struct {
	data  []byte
	lines int
}

// maxEncoded is the most a message's lines may take.
const maxEncoded = MaxMessageBytes - 1024

// encode packs records into messages of at most MaxMessageBytes, a line
// too long for one in pieces.
func encode(recs []engine.LogRecord) []message {
	var out []message
	var cur message
	add := func(b []byte) {
		if len(cur.data)+len(b) > maxEncoded && cur.lines > 0 {
			out = append(out, cur)
			cur = message{}
		}
		cur.data = append(cur.data, b...)
		cur.lines++
	}
	for i := range recs {
		r := &recs[i]
		for _, b := range encodePieces(stored{T: r.Time, R: r.RequestID, L: r.Line}) {
			add(b)
		}
	}
	if cur.lines > 0 {
		out = append(out, cur)
	}
	return out
}

// encodePieces is a line as one or more JSON lines, each small enough for
// a message (escaping can make a piece up to six times its bytes).
func encodePieces(r stored) [][]byte {
	if len(r.L) <= pieceBytes {
		if b, err := json.Marshal(r); err == nil && len(b) < maxEncoded/2 {
			return [][]byte{append(b, '\n')}
		}
		if len(r.L) < 2 {
			return nil // cannot happen: a JSON string of one byte is short
		}
	}
	cut := min(len(r.L)/2, pieceBytes)
	for cut > 0 && !utf8.RuneStart(r.L[cut]) {
		cut--
	}
	if cut == 0 {
		cut = min(len(r.L)/2, pieceBytes)
	}
	a, b := r, r
	a.L, b.L = r.L[:cut], r.L[cut:]
	return append(encodePieces(a), encodePieces(b)...)
}
