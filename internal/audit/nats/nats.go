// Package nats is the audit.Log on NATS JetStream, what a node runs: the
// stream P_AUDIT (limits, file storage, max age = the retention), one
// message per event on the subject p.audit.<function>.<key>.<action>
// (each "~" when empty or not a subject token), so that a listing filtered
// by function, key or action reads only the messages it may show.
//
// Durability is the server's: the embedded server stores with sync_always,
// so an event Record returned for is on disk.
package nats

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/audit"
	"github.com/nimbus-serverless/nimbus/internal/lazyre"
	natsstore "github.com/nimbus-serverless/nimbus/internal/store/nats"
)

// Config wires a Log.
type Config struct {
	JS     jetstream.JetStream
	Prefix string // the store prefix, e.g. "nimbus"
	// Replicas is how many copies JetStream keeps of the streams and
	// buckets made here (the store's Replicas; 1 when 0).
	Replicas int
	// Retention is how long events are kept (audit.DefaultRetention when 0).
	Retention time.Duration
	// WriteTimeout bounds the wait for the store to confirm a write
	// (DefaultWriteTimeout when 0).
	WriteTimeout time.Duration
	// Health, when set, says why the store cannot write now (nil: it can):
	// Record then fails at once rather than after the write timeout.
	Health func() error
	Logger *slog.Logger
}

// DefaultWriteTimeout bounds a Record whose context has no deadline.
const DefaultWriteTimeout = 5 * time.Second

// Log is the JetStream audit.Log.
type Log struct {
	cfg  Config
	st   jetstream.Stream
	name string // the stream
	subj string // the subject prefix, ending in "."

	closed atomic.Bool
}

var _ audit.Log = (*Log)(nil)

// Open creates (or finds, and updates the retention of) the stream.
func Open(ctx context.Context, cfg Config) (*Log, error) {
	if cfg.JS == nil {
		return nil, errors.New("audit/nats: JS is required")
	}
	if cfg.Prefix == "" {
		cfg.Prefix = "nimbus"
	}
	if cfg.Retention <= 0 {
		cfg.Retention = audit.DefaultRetention
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = DefaultWriteTimeout
	}
	l := &Log{cfg: cfg, name: cfg.Prefix + "_AUDIT", subj: strings.ToLower(cfg.Prefix) + ".audit."}
	st, err := cfg.JS.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name: l.name, Subjects: []string{l.subj + ">"}, Retention: jetstream.LimitsPolicy,
		Storage: jetstream.FileStorage, Replicas: cfg.Replicas, MaxAge: cfg.Retention, Description: "Nimbus audit trail",
	})
	if err != nil {
		return nil, fmt.Errorf("audit: stream %s: %w", l.name, err)
	}
	l.st = st
	return l, nil
}

// token is s as a subject token: itself when it is one, else "~".
func token(s string) string {
	if s != "" && len(s) <= 256 && tokenChars().MatchString(s) {
		return s
	}
	return "~"
}

var tokenChars = lazyre.New(`^[A-Za-z0-9_-]+$`)

// filterToken is a filter value as a subject token: a wildcard for "".
func filterToken(s string) string {
	if s == "" {
		return "*"
	}
	return token(s)
}

// Close ends the Log's use: later Records fail. The Log holds nothing of
// its own (the connection is the store's).
func (l *Log) Close(context.Context) error {
	l.closed.Store(true)
	return nil
}

// Record implements audit.Log.
func (l *Log) Record(ctx context.Context, e audit.Event) error {
	if l.closed.Load() {
		return nimbus.Errorf(nimbus.ErrUnavailable, "audit: record: the audit trail is closed")
	}
	if l.cfg.Health != nil {
		if err := l.cfg.Health(); err != nil {
			return fmt.Errorf("audit: record: %w", err)
		}
	}
	b, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("audit: encode: %w", err)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, l.cfg.WriteTimeout)
		defer cancel()
	}
	subj := l.subj + token(e.Function) + "." + token(e.Key) + "." + token(e.Action)
	if _, err := l.cfg.JS.Publish(ctx, subj, b); err != nil {
		return l.unavailable("record", err)
	}
	return nil
}

// maxSkew is how far apart the clocks of the nodes that record may be: a
// listing with Since reads back until events this much older than Since.
const maxSkew = 5 * time.Minute

// List implements audit.Log. It reads the stream backwards in spans
// (each read forward by a consumer of its own), from the newest matching
// message or the marker, until it has a page and one more event.
func (l *Log) List(ctx context.Context, f audit.Filter) ([]audit.Event, string, error) {
	if err := f.Check(); err != nil {
		return nil, "", err
	}
	below, err := audit.ParseMarker(f.Marker)
	if err != nil {
		return nil, "", err
	}
	subj := l.subj + filterToken(f.Function) + "." + filterToken(f.Key) + "." + filterToken(f.Action)
	last, err := l.st.GetLastMsgForSubject(ctx, subj)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, "", nil
	}
	if err != nil {
		return nil, "", l.unavailable("list", err)
	}
	hi := last.Sequence
	if below > 0 {
		hi = min(hi, below-1)
	}
	var out []audit.Event
	span := uint64(max(2*f.Limit, 128))
	for hi > 0 {
		lo := uint64(1)
		if hi > span {
			lo = hi - span + 1
		}
		msgs, err := l.read(ctx, subj, lo, hi)
		if err != nil {
			return nil, "", err
		}
		for i := len(msgs) - 1; i >= 0; i-- {
			m := &msgs[i]
			if f.Matches(&m.ev) {
				if len(out) == f.Limit {
					return out, audit.Marker(m.seq + 1), nil
				}
				out = append(out, m.ev)
			}
			if !f.Since.IsZero() && m.ev.Time.Before(f.Since.Add(-maxSkew)) {
				return out, "", nil
			}
		}
		hi = lo - 1
		span = min(2*span, 1<<16)
	}
	return out, "", nil
}

type stored struct {
	seq uint64
	ev  audit.Event
}

// read returns the messages on subj with sequences lo to hi, in order. A
// message on subj exists at hi or after it, so the reads never wait.
func (l *Log) read(ctx context.Context, subj string, lo, hi uint64) ([]stored, error) {
	var out []stored
	err := natsstore.ReadRange(ctx, l.st, subj, lo, hi, func(m natsstore.Msg) bool {
		var ev audit.Event
		if err := json.Unmarshal(m.Data, &ev); err != nil {
			l.log().Warn("audit: skipped a damaged event", "seq", m.Seq, "err", err)
			return true
		}
		out = append(out, stored{seq: m.Seq, ev: ev})
		return true
	})
	if err != nil {
		return nil, l.unavailable("list", err)
	}
	return out, nil
}

func (l *Log) log() *slog.Logger {
	if l.cfg.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return l.cfg.Logger
}

func (l *Log) unavailable(op string, err error) error {
	if errors.Is(err, context.Canceled) {
		return err
	}
	return nimbus.Errorf(nimbus.ErrUnavailable, "audit: %s: %v", op, err)
}
