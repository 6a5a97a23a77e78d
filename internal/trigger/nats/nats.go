// Package nats is the NATS message source of triggers, for core NATS and
// JetStream, on github.com/nats-io/nats.go.
//
// # Delivery guarantees
//
// Core NATS (Config without Stream) is at-most-once: the server keeps no
// message, so a message is lost when no node is subscribed, when a node
// crashes or stops while holding it, or when a slow node's client buffer
// overflows. Nodes share a queue group, so each message goes to one of them.
// A failed Deliver is retried on the node (with back-off) while it runs.
// Use JetStream when messages must not be lost.
//
// JetStream (Config.Stream set) is at-least-once: the nodes share one
// durable pull consumer (AckExplicit, unlimited deliveries, a bounded
// MaxAckPending). A message is acknowledged only after Sink.Deliver
// returned nil for its batch. When Deliver fails, the batch is negatively
// acknowledged with a delay growing with the message's delivery count, so
// the stream redelivers it later, to any node. A node that stops ends its
// pull subscription, then naks what it holds, so another node takes it at
// once (a message the server sent to the ended subscription meanwhile
// comes back after AckWait). While the node holds a
// message (queued or in a long Deliver) it tells the server it is in
// progress every AckWait/3, so the server does not redeliver it elsewhere.
// A message held by a crashed node is redelivered after AckWait (30 s).
//
// # Batches and order
//
// Messages are batched per subject (the Message.Key): a batch holds at most
// Options.BatchSize messages of one subject, gathered for at most
// Options.BatchWindow, and a subject has at most one batch in flight, so a
// node delivers each subject's messages in the order it took them. Batches
// of different subjects run in parallel up to Options.Concurrency, so
// parallelism comes from distinct subjects (e.g. orders.<customer>) and from
// more nodes. A node holds a bounded number of messages: past that it stops
// taking more (JetStream: stops pulling; core NATS: the subscription's
// client-side buffer grows, and overflows as above). Order is per node: a
// JetStream message redelivered after a failure, or consumed by another
// node, may overtake later messages of its subject.
//
// # Status
//
// A core NATS source is Active once the server has its subscription, so
// a message published from then on reaches it. Disconnections and failed
// reconnects show as the Error state with the reason; the client
// reconnects forever. A JetStream source reports lag
// every 10 s: the consumer's messages not yet delivered plus those
// delivered and not yet acknowledged (NumPending + NumAckPending). Core
// NATS has no backlog to report.
package nats

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/trigger"
)

// EventType is the CloudEvents type of NATS messages.
const EventType = "com.nimbus.nats.message"

// closeTimeout bounds the flush of acknowledgements at shutdown.
const closeTimeout = 5 * time.Second

// Source consumes a NATS subject or a JetStream stream.
type Source struct {
	cfg    Config
	source string // the CloudEvents source

	ackWait       time.Duration // JetStream AckWait
	lagEvery      time.Duration // between lag probes
	probeWait     time.Duration // bounds one JetStream API call
	minBackoff    time.Duration // retries of Deliver (core), nak delays and consumer set-up
	maxBackoff    time.Duration
	reconnectWait time.Duration
}

var _ trigger.Source = (*Source)(nil)

var _ trigger.Redactor = (*Source)(nil)

// Secrets implements trigger.Redactor: the credentials (user and password,
// or a token) of the url's servers.
func (s *Source) Secrets() trigger.Secrets { return trigger.Secrets{URLs: []string{"url"}} }

// Config returns the validated configuration (defaults filled in).
func (s *Source) Config() Config { return s.cfg }

// Run consumes until ctx ends and returns nil then. It returns an error
// when there is no queue group or consumer name, or when the JetStream
// server refuses the consumer's configuration (e.g. a filter subject
// outside the stream, or a durable that exists with another start
// position).
func (s *Source) Run(ctx context.Context, sink trigger.Sink, opts trigger.Options) error {
	opts = withDefaults(opts)
	r := &run{src: s, sink: sink, opts: opts, log: opts.Logger.With("url", s.source)}
	if s.cfg.JetStream() {
		r.name = s.cfg.Consumer
		if r.name == "" {
			r.name = durableName(opts.Group)
		}
		if r.name == "" {
			return errors.New("nats trigger: no consumer name: set the config's consumer or Options.Group")
		}
	} else {
		r.name = s.cfg.Queue
		if r.name == "" {
			r.name = queueName(opts.Group)
		}
		if r.name == "" {
			return errors.New("nats trigger: no queue group: set the config's queue or Options.Group")
		}
	}
	nc, err := r.connect()
	if err != nil {
		return err
	}
	r.nc = nc
	defer r.close()
	if s.cfg.JetStream() {
		return r.jetStream(ctx)
	}
	return r.core(ctx)
}

// withDefaults fills in unset options.
func withDefaults(opts trigger.Options) trigger.Options {
	opts.BatchSize = max(opts.BatchSize, 1)
	opts.Concurrency = max(opts.Concurrency, 1)
	if opts.Status == nil {
		opts.Status = trigger.NewStatus()
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return opts
}

// run is one Run of a Source.
type run struct {
	src     *Source
	sink    trigger.Sink
	opts    trigger.Options
	log     *slog.Logger
	name    string // queue group or durable consumer
	nc      *nats.Conn
	closing atomic.Bool
	// subscribed is set once a core NATS subscription is made: before
	// that, a connection alone is not Active (a message published then
	// would reach no one).
	subscribed atomic.Bool
}

// connect dials the server; while it is unreachable the client keeps
// trying in the background and the Status says why.
func (r *run) connect() (*nats.Conn, error) {
	st := r.opts.Status
	nc, err := nats.Connect(r.src.cfg.URL,
		nats.Name("nimbus-trigger"),
		nats.MaxReconnects(-1),
		nats.RetryOnFailedConnect(true),
		nats.ReconnectWait(r.src.reconnectWait),
		nats.ConnectHandler(func(*nats.Conn) {
			if r.src.cfg.JetStream() || r.subscribed.Load() {
				st.Connected()
			}
		}),
		nats.ReconnectHandler(func(*nats.Conn) {
			r.log.Info("nats reconnected")
			st.Connected()
		}),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if r.closing.Load() {
				return
			}
			r.log.Warn("nats disconnected", nimbus.LogErr, err)
			st.Error(fmt.Errorf("disconnected: %v", orUnknown(err)))
		}),
		nats.ReconnectErrHandler(func(_ *nats.Conn, err error) {
			if !r.closing.Load() {
				st.Error(fmt.Errorf("connect: %v", orUnknown(err)))
			}
		}),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			r.log.Warn("nats error", nimbus.LogErr, err)
		}),
	)
	if err != nil {
		return nil, fmt.Errorf("nats connect: %w", err)
	}
	return nc, nil
}

// close flushes pending acknowledgements and closes the connection.
func (r *run) close() {
	r.closing.Store(true)
	if r.nc.IsConnected() {
		if err := r.nc.FlushTimeout(closeTimeout); err != nil {
			r.log.Warn("nats flush", nimbus.LogErr, err)
		}
	}
	r.nc.Close()
}

func orUnknown(err error) error {
	if err == nil {
		return errors.New("connection closed")
	}
	return err
}

// contentType is application/json for JSON data, else octet-stream.
func contentType(data []byte) string {
	if json.Valid(data) {
		return "application/json"
	}
	return "application/octet-stream"
}

// backoff is the delay before retry n (1-based): minBackoff doubling up to
// maxBackoff.
func (s *Source) backoff(n uint64) time.Duration {
	d := s.minBackoff
	for i := uint64(1); i < n && d < s.maxBackoff; i++ {
		d *= 2
	}
	return min(d, s.maxBackoff)
}
