package nats

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nuid"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/trigger"
)

// core consumes a core NATS subject as a member of the queue group until
// ctx ends.
func (r *run) core(ctx context.Context) error {
	ln := trigger.NewLanes[*held](r.opts, 2*r.opts.BatchSize*r.opts.Concurrency)
	sub, err := r.nc.QueueSubscribe(r.src.cfg.Subject, r.name, func(m *nats.Msg) {
		// Blocking here when the lanes are full leaves the messages in
		// the subscription's buffer.
		msg := r.coreMessage(m)
		ln.Put(ctx, msg.Key, &held{msg: msg})
	})
	if err != nil {
		return fmt.Errorf("nats subscribe %s: %w", r.src.cfg.Subject, err)
	}
	// Active once the server has the subscription: a flush is a round
	// trip. While the server is unreachable, the subscription is made on
	// connect, and the connect handler reports Active then; it may run
	// late, so it may do so only once the flush is over.
	err = r.nc.FlushTimeout(r.src.probeWait)
	r.subscribed.Store(true)
	if err == nil || r.nc.IsConnected() {
		r.opts.Status.Connected()
	}
	ln.Work(ctx, r.opts.Concurrency, func(_ string, batch []*held) { r.deliverCore(ctx, batch) })
	if err := sub.Unsubscribe(); err != nil {
		r.log.Warn("nats unsubscribe", nimbus.LogErr, err)
	}
	if n := len(ln.Drain()); n > 0 {
		r.log.Warn("core NATS messages dropped at shutdown (core NATS is at-most-once)", "count", n)
	}
	return nil
}

// coreMessage converts a core NATS message.
func (r *run) coreMessage(m *nats.Msg) trigger.Message {
	return trigger.Message{
		ID:              nuid.Next(),
		Source:          r.src.source,
		Type:            EventType,
		Subject:         m.Subject,
		Time:            time.Now().UTC(),
		Key:             m.Subject,
		DataContentType: contentType(m.Data),
		Data:            m.Data,
		TraceParent:     traceParent(m.Header),
	}
}

// traceParent is the span context in a message's headers.
func traceParent(h nats.Header) string {
	var t trigger.TraceHeaders
	for k, vs := range h {
		if len(vs) > 0 && trigger.IsTraceHeader(k) {
			t.Add(k, vs[0])
		}
	}
	return t.Value()
}

// deliverCore delivers a batch, retrying with back-off while ctx lasts:
// core NATS cannot redeliver, so giving up loses the batch.
func (r *run) deliverCore(ctx context.Context, batch []*held) {
	msgs := messages(batch)
	for n := uint64(1); ; n++ {
		err := r.sink.Deliver(ctx, msgs)
		if err == nil {
			return
		}
		if ctx.Err() != nil {
			r.log.Warn("core NATS batch dropped at shutdown (core NATS is at-most-once)", "count", len(msgs), nimbus.LogErr, err)
			return
		}
		d := r.src.backoff(n)
		r.log.Warn("nats deliver failed; retrying", "subject", msgs[0].Subject, "retry_in", d, nimbus.LogErr, err)
		if trigger.Sleep(ctx, d) != nil {
			return
		}
	}
}
