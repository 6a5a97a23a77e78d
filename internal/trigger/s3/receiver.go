// Package s3 is the object-storage trigger: S3 bucket event notifications
// (the {"Records":[...]} JSON that AWS S3 and S3-compatible stores such as
// MinIO and versitygw send) are POSTed by the store to a Nimbus endpoint,
// filtered by bucket, event type and key prefix and suffix, and delivered
// to the function as CloudEvents.
//
// A Receiver holds the triggers running on this node. The API hands it the
// bodies that arrive at POST /nimbus/v1/s3-events/{function}/{trigger};
// Receive answers only after the trigger's Sink accepted every matching
// record, so a store that retries failed webhooks (MinIO does) loses
// nothing. A trigger's Source (from Receiver.Factory) registers its Sink
// while it runs.
package s3

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/trigger"
)

// Receiver routes notifications to the triggers registered on this node.
// It is safe for concurrent use.
type Receiver struct {
	// RequireSecret refuses notifications to triggers that have no
	// secret: a node with API authentication on accepts no anonymous
	// push. Set it before the first Register.
	RequireSecret bool

	mu   sync.RWMutex
	regs map[regKey]*registration
	log  *slog.Logger
}

type regKey struct{ function, trigger string }

// registration is one running trigger.
type registration struct {
	cfg    Config
	sink   trigger.Sink
	batch  int
	slots  chan struct{} // bounds the deliveries in flight
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup // Receives in flight
}

// NewReceiver returns a Receiver with no triggers; log may be nil.
func NewReceiver(log *slog.Logger) *Receiver {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Receiver{regs: make(map[regKey]*registration), log: log}
}

// Register routes the notifications for function's trigger to sink, in
// batches of at most opts.BatchSize records with at most opts.Concurrency
// batches in flight, until unregister is called. unregister cancels the
// deliveries in flight and waits for them. Registering a trigger again
// replaces the earlier registration.
func (r *Receiver) Register(function, triggerName string, cfg Config, sink trigger.Sink, opts trigger.Options) (unregister func()) {
	ctx, cancel := context.WithCancel(context.Background())
	reg := &registration{
		cfg:    cfg,
		sink:   sink,
		batch:  max(1, opts.BatchSize),
		slots:  make(chan struct{}, max(1, opts.Concurrency)),
		ctx:    ctx,
		cancel: cancel,
	}
	if r.RequireSecret && cfg.Secret == "" {
		r.log.Warn("s3 trigger has no secret: its notifications are refused until it has one (authentication is on)",
			nimbus.LogFunction, function, nimbus.LogTrigger, triggerName)
	}
	k := regKey{function, triggerName}
	r.mu.Lock()
	r.regs[k] = reg
	r.mu.Unlock()
	return func() {
		r.mu.Lock()
		if r.regs[k] == reg {
			delete(r.regs, k)
		}
		r.mu.Unlock()
		cancel()
		reg.wg.Wait()
	}
}

// Result tells what Receive did with a notification.
type Result struct {
	Records   int  `json:"records"`   // records in the notification
	Delivered int  `json:"delivered"` // records that matched and were delivered
	Test      bool `json:"test,omitempty"`
}

// Receive delivers a notification body to function's trigger and returns
// once the trigger's Sink accepted every matching record. secret is the
// one the request carried ("" for none). Errors: nimbus.ErrNotFound (no
// such trigger runs here), nimbus.ErrForbidden (wrong or missing secret),
// nimbus.ErrMalformed (not an S3 event notification); any other error means
// the delivery failed and the store should send the notification again.
func (r *Receiver) Receive(ctx context.Context, function, triggerName, secret string, body []byte) (Result, error) {
	reg, err := r.acquire(function, triggerName)
	if err != nil {
		return Result{}, err
	}
	defer reg.wg.Done()
	if reg.cfg.Secret == "" && r.RequireSecret {
		return Result{}, nimbus.Errorf(nimbus.ErrForbidden, "The trigger has no secret, and this node accepts no unauthenticated notification: give the trigger a secret (config \"secret\") and send it with each notification")
	}
	if s := reg.cfg.Secret; s != "" && subtle.ConstantTimeCompare([]byte(s), []byte(secret)) != 1 {
		return Result{}, nimbus.Errorf(nimbus.ErrForbidden, "The notification must carry the trigger's secret (query parameter secret, Authorization: Bearer or X-Nimbus-Secret)")
	}
	n, err := ParseNotification(body)
	if err != nil {
		return Result{}, err
	}
	res := Result{Records: len(n.Records), Test: n.Test}
	var batch []trigger.Message
	for _, rec := range n.Records {
		if reg.cfg.Match(rec) {
			batch = append(batch, reg.cfg.Message(rec))
		}
	}
	if err := reg.deliver(ctx, batch); err != nil {
		r.log.Warn("s3 notification not delivered", nimbus.LogFunction, function, nimbus.LogTrigger, triggerName, nimbus.LogErr, err)
		return res, err
	}
	res.Delivered = len(batch)
	return res, nil
}

// acquire returns the trigger's registration, counted in flight.
func (r *Receiver) acquire(function, triggerName string) (*registration, error) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	reg := r.regs[regKey{function, triggerName}]
	if reg == nil {
		return nil, nimbus.Errorf(nimbus.ErrNotFound, "No enabled object-storage trigger %q for function %q", triggerName, function)
	}
	reg.wg.Add(1)
	return reg, nil
}

// deliver hands the messages to the sink in batches, ending when ctx or the
// registration ends.
func (reg *registration) deliver(ctx context.Context, msgs []trigger.Message) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(reg.ctx, cancel)()
	for len(msgs) > 0 {
		n := min(reg.batch, len(msgs))
		select {
		case reg.slots <- struct{}{}:
		case <-ctx.Done():
			return fmt.Errorf("deliver: %w", context.Cause(ctx))
		}
		err := reg.sink.Deliver(ctx, msgs[:n])
		<-reg.slots
		if err != nil {
			return fmt.Errorf("deliver: %w", err)
		}
		msgs = msgs[n:]
	}
	return nil
}

// Factory returns the trigger.Factory of one trigger of one function: its
// Source registers the trigger's Sink in r while it runs.
func (r *Receiver) Factory(function, triggerName string) trigger.Factory {
	return func(config json.RawMessage) (trigger.Source, error) {
		cfg, err := ParseConfig(config)
		if err != nil {
			return nil, err
		}
		return &Source{recv: r, function: function, name: triggerName, cfg: cfg}, nil
	}
}

// Source is an object-storage trigger: it receives rather than pulls, so
// running it means being registered in the Receiver.
type Source struct {
	recv     *Receiver
	function string
	name     string
	cfg      Config
}

var _ trigger.Source = (*Source)(nil)

var _ trigger.Redactor = (*Source)(nil)

// Secrets implements trigger.Redactor: the secret notifications must carry.
func (s *Source) Secrets() trigger.Secrets { return trigger.Secrets{Values: []string{"secret"}} }

// Run registers the trigger until ctx ends, then unregisters it (waiting
// for the deliveries in flight) and returns nil.
func (s *Source) Run(ctx context.Context, sink trigger.Sink, opts trigger.Options) error {
	unregister := s.recv.Register(s.function, s.name, s.cfg, sink, opts)
	defer unregister()
	if opts.Status != nil {
		opts.Status.Connected()
	}
	<-ctx.Done()
	return nil
}
