package nats

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/trigger"
)

// pullExpiry is how long one pull request waits on the server.
const pullExpiry = 10 * time.Second

// jsRun is one Run of a JetStream source.
type jsRun struct {
	*run
	js    jetstream.JetStream
	lanes *trigger.Lanes[*held]

	mu     sync.Mutex
	inHand map[*held]struct{} // every message taken and not yet settled
	cons   jetstream.Consumer // nil until created
	iter   jetstream.MessagesContext
}

// limits are the bounds on messages in hand: the lanes hold up to hold,
// the pull buffer up to pull, and the consumer lets all nodes together
// have maxAckPending unacknowledged.
func limits(opts trigger.Options) (hold, pull, maxAckPending int) {
	full := opts.BatchSize * opts.Concurrency
	hold = full + opts.BatchSize
	pull = max(opts.BatchSize, min(full, 1000))
	maxAckPending = min(max(1000, 4*(hold+pull)), 100_000)
	return hold, pull, maxAckPending
}

// jetStream consumes the durable consumer until ctx ends.
func (r *run) jetStream(ctx context.Context) error {
	js, err := jetstream.New(r.nc)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	hold, _, _ := limits(r.opts)
	j := &jsRun{run: r, js: js, lanes: trigger.NewLanes[*held](r.opts, hold), inHand: make(map[*held]struct{})}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	wg.Go(func() {
		j.lanes.Work(ctx, r.opts.Concurrency, func(_ string, b []*held) { j.deliver(ctx, b) })
	})
	wg.Go(func() { j.heartbeats(ctx) })
	wg.Go(func() { j.probeLoop(ctx) })
	err = j.consume(ctx)
	cancel()
	wg.Wait()
	j.handOver()
	return err
}

// handOver naks every message still in hand (queued, buffered by the
// iterator, or whose Deliver was cancelled), so that another node takes it
// at once rather than after AckWait. It runs once the pull subscription is
// gone: a nak sent while it still existed could come straight back to it.
func (j *jsRun) handOver() {
	j.mu.Lock()
	batch := make([]*held, 0, len(j.inHand))
	for h := range j.inHand {
		batch = append(batch, h)
	}
	clear(j.inHand)
	j.mu.Unlock()
	j.nak(batch, 0)
}

// consume (re)creates the consumer and pulls from it until ctx ends or the
// server refuses the consumer's configuration.
func (j *jsRun) consume(ctx context.Context) error {
	for attempt := uint64(1); ; attempt++ {
		cons, err := j.ensure(ctx)
		if err != nil && refused(err) {
			j.opts.Status.Error(err)
			return err
		}
		if err == nil {
			attempt = 0 // the next failure backs off from the start
			j.setConsumer(cons)
			j.probe(ctx)
			err = j.pull(ctx, cons)
		}
		if ctx.Err() != nil {
			return nil
		}
		j.log.Warn("nats jetstream consumer", nimbus.LogErr, err)
		if j.nc.IsConnected() {
			j.opts.Status.Error(err)
		}
		if trigger.Sleep(ctx, j.src.backoff(attempt)) != nil {
			return nil
		}
	}
}

// ensure creates the durable consumer or updates it to this config.
func (j *jsRun) ensure(ctx context.Context) (jetstream.Consumer, error) {
	_, _, maxAck := limits(j.opts)
	policy := jetstream.DeliverNewPolicy
	if j.src.cfg.StartPosition == StartTrimHorizon {
		policy = jetstream.DeliverAllPolicy
	}
	ctx, cancel := context.WithTimeout(ctx, j.src.probeWait)
	defer cancel()
	cons, err := j.js.CreateOrUpdateConsumer(ctx, j.src.cfg.Stream, jetstream.ConsumerConfig{
		Durable:       j.name,
		Description:   "nimbus trigger",
		DeliverPolicy: policy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       j.src.ackWait,
		MaxDeliver:    -1,
		MaxAckPending: maxAck,
		FilterSubject: j.src.cfg.Subject,
	})
	if err != nil {
		return nil, fmt.Errorf("consumer %s on stream %s: %w", j.name, j.src.cfg.Stream, err)
	}
	return cons, nil
}

// refused reports a configuration the server refuses (a bad request, or
// one it cannot apply to the existing consumer, e.g. a changed start
// position), which retrying cannot fix.
func refused(err error) bool {
	var jsErr jetstream.JetStreamError
	if !errors.As(err, &jsErr) || jsErr.APIError() == nil {
		return false
	}
	api := jsErr.APIError()
	return api.Code == 400 || api.ErrorCode == jetstream.JSErrCodeConsumerCreate
}

// pull hands messages to the lanes until the iterator fails or ctx ends.
func (j *jsRun) pull(ctx context.Context, cons jetstream.Consumer) error {
	_, pull, _ := limits(j.opts)
	// A pull request lost to a server restart is replaced once two
	// heartbeats are missed: a short heartbeat bounds that gap.
	it, err := cons.Messages(jetstream.PullMaxMessages(pull),
		jetstream.PullExpiry(pullExpiry), jetstream.PullHeartbeat(pullExpiry/5),
		jetstream.WithMessagesErrOnMissingHeartbeat(false))
	if err != nil {
		return fmt.Errorf("pull from consumer %s: %w", j.name, err)
	}
	j.mu.Lock()
	j.iter = it
	j.mu.Unlock()
	defer it.Stop()
	for {
		m, err := it.Next(jetstream.NextContext(ctx))
		if err != nil {
			if ctx.Err() != nil {
				j.handBack(it)
				return nil
			}
			return fmt.Errorf("pull from consumer %s: %w", j.name, err)
		}
		h, err := j.message(m)
		if err != nil {
			j.log.Warn("nats jetstream message without metadata", "subject", m.Subject(), nimbus.LogErr, err)
			continue
		}
		j.hold(h)
		if !j.lanes.Put(ctx, h.msg.Key, h) {
			j.handBack(it)
			return nil
		}
	}
}

// handBack drains the iterator, keeping what it buffered in hand for
// handOver. It returns once the server has dropped the subscription.
func (j *jsRun) handBack(it jetstream.MessagesContext) {
	it.Drain()
	for {
		m, err := it.Next(jetstream.NextMaxWait(closeTimeout))
		if err != nil {
			return
		}
		if h, err := j.message(m); err == nil {
			j.hold(h)
		}
	}
}

// message converts a JetStream message.
func (j *jsRun) message(m jetstream.Msg) (*held, error) {
	md, err := m.Metadata()
	if err != nil {
		return nil, err
	}
	return &held{js: m, deliveries: md.NumDelivered, msg: trigger.Message{
		ID:              strconv.FormatUint(md.Sequence.Stream, 10),
		Source:          j.src.source,
		Type:            EventType,
		Subject:         m.Subject(),
		Time:            md.Timestamp,
		Key:             m.Subject(),
		DataContentType: contentType(m.Data()),
		Data:            m.Data(),
		Extensions:      map[string]any{"stream": md.Stream, "sequence": md.Sequence.Stream},
		TraceParent:     traceParent(m.Headers()),
	}}, nil
}

// deliver hands a batch to the sink and settles it: ack on success, nak
// with a growing delay on failure. A batch cancelled because the node is
// stopping stays in hand for handOver.
func (j *jsRun) deliver(ctx context.Context, batch []*held) {
	err := j.sink.Deliver(ctx, messages(batch))
	switch {
	case err == nil:
		for _, h := range batch {
			if err := h.js.Ack(); err != nil {
				j.log.Debug("nats ack", "seq", h.msg.ID, nimbus.LogErr, err)
			}
		}
	case ctx.Err() != nil:
		return
	default:
		d := j.src.backoff(batch[0].deliveries)
		j.log.Warn("nats deliver failed; redelivery later", "subject", batch[0].msg.Subject, "retry_in", d, nimbus.LogErr, err)
		j.nak(batch, d)
	}
	j.release(batch)
}

// nak asks the server to redeliver after delay.
func (j *jsRun) nak(batch []*held, delay time.Duration) {
	for _, h := range batch {
		var err error
		if delay > 0 {
			err = h.js.NakWithDelay(delay)
		} else {
			err = h.js.Nak()
		}
		if err != nil {
			j.log.Debug("nats nak", "seq", h.msg.ID, nimbus.LogErr, err)
		}
	}
}

func (j *jsRun) hold(h *held) {
	j.mu.Lock()
	j.inHand[h] = struct{}{}
	j.mu.Unlock()
}

func (j *jsRun) release(batch []*held) {
	j.mu.Lock()
	for _, h := range batch {
		delete(j.inHand, h)
	}
	j.mu.Unlock()
}

// heartbeats tells the server, every AckWait/3, that the messages in hand
// are in progress, so it does not redeliver them while they wait or run.
func (j *jsRun) heartbeats(ctx context.Context) {
	t := time.NewTicker(j.src.ackWait / 3)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-ctx.Done():
			return
		}
		j.mu.Lock()
		msgs := make([]jetstream.Msg, 0, len(j.inHand))
		for h := range j.inHand {
			msgs = append(msgs, h.js)
		}
		j.mu.Unlock()
		for _, m := range msgs {
			_ = m.InProgress() // a message settled meanwhile just errs
		}
	}
}

func (j *jsRun) setConsumer(c jetstream.Consumer) {
	j.mu.Lock()
	j.cons = c
	j.mu.Unlock()
}

// probeLoop reports lag every lagEvery until ctx ends.
func (j *jsRun) probeLoop(ctx context.Context) {
	t := time.NewTicker(j.src.lagEvery)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			j.probe(ctx)
		case <-ctx.Done():
			return
		}
	}
}

// probe reads the consumer's info: its backlog is the lag. A consumer
// that disappeared (deleted, or the stream was) is created again.
func (j *jsRun) probe(ctx context.Context) {
	j.mu.Lock()
	cons, it := j.cons, j.iter
	j.mu.Unlock()
	if cons == nil {
		return
	}
	pctx, cancel := context.WithTimeout(ctx, j.src.probeWait)
	defer cancel()
	info, err := cons.Info(pctx)
	switch {
	case ctx.Err() != nil:
	case err != nil:
		if errors.Is(err, jetstream.ErrConsumerNotFound) || errors.Is(err, jetstream.ErrStreamNotFound) {
			if it != nil {
				it.Stop() // consume creates it again
			}
		}
		if j.nc.IsConnected() {
			j.opts.Status.Error(fmt.Errorf("consumer %s: %w", j.name, err))
		}
	default:
		j.opts.Status.Lag(int64(info.NumPending) + int64(info.NumAckPending))
		if j.nc.IsConnected() {
			j.opts.Status.Connected()
		}
	}
}

// held is a message the source holds until its batch is settled.
type held struct {
	msg        trigger.Message
	js         jetstream.Msg // nil for core NATS
	deliveries uint64        // JetStream: how often the server delivered it
}

// messages returns the batch's messages.
func messages(batch []*held) []trigger.Message {
	out := make([]trigger.Message, len(batch))
	for i, h := range batch {
		out[i] = h.msg
	}
	return out
}
