// Package kafka is the Kafka message source of triggers, on
// github.com/twmb/franz-go.
//
// # Semantics
//
// Every node of a deployment joins one consumer group (Config.Group, or
// Options.Group), so each partition is consumed by one node at a time.
// Records are delivered in batches of at most Options.BatchSize records of
// one partition, in offset order; a partition has at most one batch in
// flight, and at most Options.Concurrency batches (of different partitions)
// are in flight on a node.
//
// Offsets are committed only after Sink.Deliver returned nil for a batch,
// one synchronous commit per batch, never before: a crash or a lost
// connection redelivers what was not committed (at-least-once). A batch
// whose Deliver fails is retried, with exponential back-off, until it
// succeeds or the partition moves to another node, which then starts from
// the last commit: a partition never skips a batch, so the Sink must
// dead-letter poison messages (it does).
//
// Fetching pauses per partition: a partition holding a full batch that is
// not yet delivered (all concurrency slots busy, or its previous batch
// still in flight) is not fetched from until the batch is taken.
//
// A node that crashes stays a member of the group until its session times
// out (Config.SessionTimeout, 45 s by default): meanwhile its partitions
// wait. A node that stops cleanly leaves the group at once.
//
// On a rebalance, a revoked partition's in-flight batch may finish and
// commit (for at most 30 s, then it is cancelled and redelivered by the new
// owner); its undelivered records are dropped and refetched by the new
// owner. A lost partition (the member was fenced) is dropped at once.
//
// Lag, reported in Options.Status every 10 s, is the group's: the sum over
// the topic's partitions of the end offset minus the committed offset. A
// partition without a commit counts from its start offset with
// StartTrimHorizon and as 0 with StartLatest. The same probe reports
// unreachable brokers, an unknown topic and other broker errors as the
// Error state; franz-go reconnects by itself.
package kafka

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/trigger"
)

// EventType is the CloudEvents type of Kafka messages.
const EventType = "com.nimbus.kafka.message"

// commitTimeout bounds one offset commit; commits outlive the Run context
// so that a batch delivered just before shutdown is still committed.
const commitTimeout = 10 * time.Second

// Source consumes one Kafka topic as a member of a consumer group.
type Source struct {
	cfg     Config
	source  string        // the CloudEvents source
	session time.Duration // the group session timeout

	lagEvery   time.Duration // between lag probes
	probeWait  time.Duration // bounds one probe
	minBackoff time.Duration // first retry of a failed Deliver
	maxBackoff time.Duration
	revokeWait time.Duration // how long a revoked partition's batch may finish
	extra      []kgo.Opt     // tests tune the client
}

var _ trigger.Source = (*Source)(nil)

// Config returns the validated configuration (defaults filled in).
func (s *Source) Config() Config { return s.cfg }

// Run consumes until ctx ends and returns nil then. It returns an error
// only when there is no consumer group to join or the client cannot be
// built from the configuration.
func (s *Source) Run(ctx context.Context, sink trigger.Sink, opts trigger.Options) error {
	opts = withDefaults(opts)
	group := s.cfg.Group
	if group == "" {
		group = opts.Group
	}
	if group == "" {
		return errors.New("kafka trigger: no consumer group: set the config's group or Options.Group")
	}
	c := &consumer{
		src:     s,
		sink:    sink,
		opts:    opts,
		log:     opts.Logger.With("topic", s.cfg.Topic, "group", group),
		group:   group,
		ctx:     ctx,
		slots:   make(chan struct{}, opts.Concurrency),
		workers: make(map[int32]*partition),
	}
	cl, err := kgo.NewClient(c.clientOpts()...)
	if err != nil {
		return fmt.Errorf("kafka client: %w", err)
	}
	c.cl = cl
	c.run(ctx)
	return nil
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

// consumer is one Run: a group member and its partition workers.
type consumer struct {
	src   *Source
	sink  trigger.Sink
	opts  trigger.Options
	log   *slog.Logger
	group string
	ctx   context.Context // the Run context
	cl    *kgo.Client
	dial  dialHook
	slots chan struct{} // one token per batch in flight

	mu      sync.Mutex
	workers map[int32]*partition // by partition, the ones this member owns
}

// clientOpts are the franz-go options of the group member.
func (c *consumer) clientOpts() []kgo.Opt {
	start := kgo.NewOffset().AtEnd()
	if c.src.cfg.StartPosition == StartTrimHorizon {
		start = kgo.NewOffset().AtStart()
	}
	opts := []kgo.Opt{
		kgo.SeedBrokers(c.src.cfg.Brokers...),
		kgo.ClientID("nimbus"),
		kgo.ConsumerGroup(c.group),
		kgo.ConsumeTopics(c.src.cfg.Topic),
		kgo.ConsumeResetOffset(start),
		kgo.DisableAutoCommit(),
		kgo.SessionTimeout(c.src.session),
		kgo.HeartbeatInterval(min(maxHeartbeat, c.src.session/3)),
		// Revocations run between polls, never while a poll's records
		// are being handed to the workers.
		kgo.BlockRebalanceOnPoll(),
		kgo.OnPartitionsRevoked(c.revoked),
		kgo.OnPartitionsLost(c.lost),
		kgo.WithLogger(kgoLogger{c.log}),
		kgo.WithHooks(&c.dial),
	}
	return append(opts, c.src.extra...)
}

// run polls until ctx ends, then stops the workers and leaves the group.
func (c *consumer) run(ctx context.Context) {
	pctx, stopProbe := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { c.probeLoop(pctx) })
	c.poll(ctx)
	stopProbe()
	wg.Wait()
	c.release(c.owned(), 0)
	leave, cancel := context.WithTimeout(context.WithoutCancel(ctx), commitTimeout)
	defer cancel()
	if err := c.cl.LeaveGroupContext(leave); err != nil {
		c.log.Warn("kafka leave group", nimbus.LogErr, err)
	}
	c.cl.CloseAllowingRebalance()
}

// poll hands fetched records to the partition workers until ctx ends.
func (c *consumer) poll(ctx context.Context) {
	backoff := c.src.minBackoff
	for {
		fs := c.cl.PollFetches(ctx)
		if ctx.Err() != nil || fs.IsClientClosed() {
			c.cl.AllowRebalance()
			return
		}
		failed := c.fetchErrors(fs)
		fs.EachPartition(func(p kgo.FetchTopicPartition) {
			if len(p.Records) > 0 {
				c.dispatch(p.Partition, p.Records)
			}
		})
		c.cl.AllowRebalance()
		if !failed || !fs.Empty() {
			backoff = c.src.minBackoff
			continue
		}
		if trigger.Sleep(ctx, backoff) != nil {
			return
		}
		backoff = min(2*backoff, c.src.maxBackoff)
	}
}

// fetchErrors reports a poll's errors and says whether there were any.
func (c *consumer) fetchErrors(fs kgo.Fetches) bool {
	errs := fs.Errors()
	for _, e := range errs {
		if errors.Is(e.Err, context.Canceled) {
			continue
		}
		c.log.Warn("kafka fetch", "partition", e.Partition, nimbus.LogErr, e.Err)
		c.opts.Status.Error(fmt.Errorf("fetch %s[%d]: %w", e.Topic, e.Partition, e.Err))
	}
	return len(errs) > 0
}

// dispatch queues records for their partition's worker, starting it if
// needed, and pauses fetching from the partition while it holds a batch.
func (c *consumer) dispatch(id int32, recs []*kgo.Record) {
	c.mu.Lock()
	p, ok := c.workers[id]
	if !ok {
		p = newPartition(c, id)
		c.workers[id] = p
		go p.run()
	}
	c.mu.Unlock()
	p.add(recs)
}

// owned lists the partitions that have a worker.
func (c *consumer) owned() []int32 {
	c.mu.Lock()
	defer c.mu.Unlock()
	ids := make([]int32, 0, len(c.workers))
	for id := range c.workers {
		ids = append(ids, id)
	}
	return ids
}

// revoked runs when the group takes partitions away: their in-flight
// batches may finish (and commit) for up to revokeWait.
func (c *consumer) revoked(_ context.Context, _ *kgo.Client, tps map[string][]int32) {
	c.release(tps[c.src.cfg.Topic], c.src.revokeWait)
}

// lost runs when this member was fenced: commits would fail, so the
// partitions' batches are cancelled at once.
func (c *consumer) lost(_ context.Context, _ *kgo.Client, tps map[string][]int32) {
	c.release(tps[c.src.cfg.Topic], 0)
}

// release stops the workers of ids, giving in-flight batches up to wait to
// finish, and clears their paused state.
func (c *consumer) release(ids []int32, wait time.Duration) {
	var stop []*partition
	c.mu.Lock()
	for _, id := range ids {
		if p, ok := c.workers[id]; ok {
			stop = append(stop, p)
			delete(c.workers, id)
		}
	}
	c.mu.Unlock()
	var wg sync.WaitGroup
	for _, p := range stop {
		wg.Go(func() { p.stop(wait) })
	}
	wg.Wait()
	if len(ids) > 0 {
		c.cl.ResumeFetchPartitions(map[string][]int32{c.src.cfg.Topic: ids})
	}
}

// message converts a record.
func (c *consumer) message(r *kgo.Record) trigger.Message {
	ext := map[string]any{"partition": r.Partition, "offset": r.Offset}
	if len(r.Key) > 0 {
		ext["key"] = keyString(r.Key)
	}
	return trigger.Message{
		ID:              strconv.FormatInt(int64(r.Partition), 10) + "-" + strconv.FormatInt(r.Offset, 10),
		Source:          c.src.source,
		Type:            EventType,
		Subject:         r.Topic,
		Time:            r.Timestamp,
		Key:             strconv.FormatInt(int64(r.Partition), 10),
		DataContentType: contentType(r.Value),
		Data:            r.Value,
		Extensions:      ext,
		TraceParent:     traceParent(r.Headers),
	}
}

// traceParent is the span context in a record's headers.
func traceParent(hs []kgo.RecordHeader) string {
	var t trigger.TraceHeaders
	for _, h := range hs {
		if trigger.IsTraceHeader(h.Key) {
			t.Add(h.Key, string(h.Value))
		}
	}
	return t.Value()
}

// keyString shows a record key as text, or base64 when it is not UTF-8.
func keyString(k []byte) string {
	if utf8.Valid(k) {
		return string(k)
	}
	return base64.StdEncoding.EncodeToString(k)
}

// contentType is application/json for JSON data, else octet-stream.
func contentType(data []byte) string {
	if json.Valid(data) {
		return "application/json"
	}
	return "application/octet-stream"
}
