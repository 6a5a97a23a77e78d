package trigger

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/nimbus-serverless/nimbus"
)

// MaxPayload is the largest request a function is given (Lambda's 6 MB
// synchronous limit): a batch whose events are larger is split, and an event
// larger on its own goes to the failure destination at once.
const MaxPayload = 6 << 20

// Invoker runs a function synchronously (the engine).
type Invoker interface {
	// Invoke errors: nimbus.ErrThrottled (no capacity: waited out, not a
	// failure), nimbus.ErrConflict (shutting down), ctx errors; others are
	// platform failures of the attempt.
	Invoke(ctx context.Context, fn *nimbus.Function, req nimbus.Invocation) (nimbus.Result, error)
}

// Functions looks functions up (the registry).
type Functions interface {
	// Get errors: nimbus.ErrNotFound.
	Get(ctx context.Context, name string) (*nimbus.Function, error)
	// Resolve returns the function name with qualifier: a published
	// version, or the version an alias routes this call to (by its
	// weights). Errors: nimbus.ErrNotFound (the function, version or alias).
	Resolve(ctx context.Context, name, qualifier string) (*nimbus.Function, error)
}

// Target is what an invocation through a trigger of fn whose Qualifier is
// qualifier runs: fn itself ("": $LATEST), or the version qualifier names;
// for an alias, the version it routes this invocation to. Every trigger
// calls it for each invocation (a function URL for each request, a message
// trigger for each attempt at a batch), so moving an alias moves the
// triggers' traffic at once. Errors: nimbus.ErrNotFound (the version or
// alias no longer exists).
func Target(ctx context.Context, fns Functions, fn *nimbus.Function, qualifier string) (*nimbus.Function, error) {
	if qualifier == "" {
		return fn, nil
	}
	return fns.Resolve(ctx, fn.Name, qualifier)
}

// Failure is a message that failed for good, as sent to a failure
// destination.
type Failure struct {
	Function string
	Trigger  string
	Message  Message
	// Event is the message as the CloudEvent the function was given.
	Event []byte
	// Reason says why, e.g. "the function failed 4 times: Error: boom".
	Reason string
	// Attempts is how many times the function ran with the message.
	Attempts int
	// Response is the function's last answer (its error payload), if any;
	// FuncError is "Unhandled" or "Handled" when the function failed.
	Response  []byte
	FuncError string
	// Qualifier is the trigger's version or alias ("": $LATEST); Executed
	// the version that ran last ("" when none did).
	Qualifier, Executed string
}

// FailureSender sends messages that failed for good to a failure
// destination (see internal/destination).
type FailureSender interface {
	Send(ctx context.Context, dest string, f Failure) error
}

// SinkConfig wires a Deliverer.
type SinkConfig struct {
	Function string
	// Trigger gives the name, type, batch size, retry limit and failure
	// destination.
	Trigger   nimbus.Trigger
	Functions Functions
	Invoker   Invoker
	// Failures sends to Trigger.FailureDestination; DeadLetter is the
	// source's own dead-letter queue. Without either, a message that failed
	// for good is logged and dropped.
	Failures   FailureSender
	DeadLetter DeadLetterer
	// Status gets the counts: Delivered for messages whose invocation
	// succeeded, Failed for those that failed for good, and the reason of
	// each failed attempt (Errored).
	Status *Status
	// Metrics is told of batches, deliveries and failures (nil: nothing).
	Metrics Metrics
	Logger  *slog.Logger
	// MaxPayload caps one invocation's payload (default MaxPayload).
	MaxPayload int
	// Retry and Throttle are the back-off schedules (defaults RetryBackoff
	// and ThrottleBackoff); Sleep waits (default trigger.Sleep) and Now
	// tells the time (default time.Now). Tests replace them.
	Retry, Throttle Backoff
	Sleep           func(ctx context.Context, d time.Duration) error
	Now             func() time.Time
}

// Deliverer is the Sink of one trigger: it turns batches into CloudEvents,
// invokes the function, retries what failed and hands what keeps failing to
// the failure destination.
type Deliverer struct {
	cfg SinkConfig
	log *slog.Logger
}

var _ Sink = (*Deliverer)(nil)

// NewSink returns the Deliverer of one trigger.
func NewSink(cfg SinkConfig) *Deliverer {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Status == nil {
		cfg.Status = NewStatus()
	}
	if cfg.Metrics == nil {
		cfg.Metrics = noMetrics{}
	}
	if cfg.MaxPayload <= 0 {
		cfg.MaxPayload = MaxPayload
	}
	if cfg.Retry == (Backoff{}) {
		cfg.Retry = RetryBackoff
	}
	if cfg.Throttle == (Backoff{}) {
		cfg.Throttle = ThrottleBackoff
	}
	if cfg.Sleep == nil {
		cfg.Sleep = Sleep
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	log := cfg.Logger.With(nimbus.LogFunction, cfg.Function, nimbus.LogTrigger, cfg.Trigger.Name)
	return &Deliverer{cfg: cfg, log: log}
}

// item is a message with its encoded event.
type item struct {
	msg Message
	ev  []byte
}

// Deliver implements Sink. A trigger whose BatchSize is 1 gives the function
// each message as one event object (application/cloudevents+json); a larger
// BatchSize gives a JSON array of events, even of one
// (application/cloudevents-batch+json), so a function sees one shape.
func (d *Deliverer) Deliver(ctx context.Context, batch []Message) error {
	if len(batch) == 0 {
		return nil
	}
	d.cfg.Metrics.Batch(d.cfg.Function, d.cfg.Trigger.Type, len(batch), lag(batch, d.cfg.Now()))
	items := d.prepare(batch)
	chunks, tooBig := d.chunk(items)
	if len(tooBig) > 0 {
		reason := fmt.Sprintf("the event is larger than the %d-byte payload limit", d.cfg.MaxPayload)
		d.cfg.Status.Errored(reason, d.cfg.Now())
		if err := d.fail(ctx, tooBig, outcome{reason: reason}, 0); err != nil {
			return err
		}
	}
	for _, c := range chunks {
		if err := d.deliverChunk(ctx, c); err != nil {
			return err
		}
	}
	return nil
}

// prepare fills in the CloudEvent attributes a source left empty and
// encodes each message.
func (d *Deliverer) prepare(batch []Message) []item {
	now := d.cfg.Now()
	items := make([]item, len(batch))
	for i, m := range batch {
		if m.ID == "" {
			m.ID = uuid.NewString()
		}
		m.ID = validUTF8(m.ID) // as the function sees it, for partial batch responses
		if m.Source == "" {
			m.Source = "/nimbus/functions/" + d.cfg.Function + "/triggers/" + d.cfg.Trigger.Name
		}
		if m.Type == "" {
			m.Type = "com.nimbus." + d.cfg.Trigger.Type + ".message"
		}
		if m.Time.IsZero() {
			m.Time = now
		}
		ev := EncodeEvent(m)
		if m.Raw {
			ev = m.Data
		}
		items[i] = item{msg: m, ev: ev}
	}
	return items
}

// validUTF8 returns s as JSON carries it: each invalid byte replaced by
// U+FFFD.
func validUTF8(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	b, _ := json.Marshal(s)
	_ = json.Unmarshal(b, &s)
	return s
}

// chunk splits items into runs whose payload fits the limit, in order, and
// returns apart the items too large on their own.
func (d *Deliverer) chunk(items []item) (chunks [][]item, tooBig []item) {
	var cur []item
	size := 2 // the array's brackets
	for _, it := range items {
		n := len(it.ev) + 1
		if len(it.ev)+2 > d.cfg.MaxPayload {
			tooBig = append(tooBig, it)
			continue
		}
		if len(cur) > 0 && size+n > d.cfg.MaxPayload {
			chunks = append(chunks, cur)
			cur, size = nil, 2
		}
		cur = append(cur, it)
		size += n
	}
	if len(cur) > 0 {
		chunks = append(chunks, cur)
	}
	return chunks, tooBig
}

// deliverChunk invokes the function with items until each succeeded or
// failed past the retry limit.
func (d *Deliverer) deliverChunk(ctx context.Context, items []item) error {
	pending := items
	for attempt := 1; ; attempt++ {
		out, err := d.attempt(ctx, pending)
		if err != nil {
			return err
		}
		if ok := len(pending) - len(out.failed); ok > 0 {
			d.cfg.Status.Delivered(ok, d.cfg.Now())
			d.cfg.Metrics.Delivered(d.cfg.Function, d.cfg.Trigger.Type, ok)
		}
		if len(out.failed) == 0 {
			return nil
		}
		d.cfg.Status.Errored(out.reason, d.cfg.Now())
		if attempt > d.cfg.Trigger.MaxRetries {
			return d.fail(ctx, out.failed, out, attempt)
		}
		delay := d.cfg.Retry.Delay(attempt - 1)
		d.log.Info("trigger: retrying failed messages", "messages", len(out.failed), "attempt", attempt,
			"delay", delay, "reason", out.reason)
		if err := d.cfg.Sleep(ctx, delay); err != nil {
			return err
		}
		pending = out.failed
	}
}

// outcome is what one invocation of a batch came to.
type outcome struct {
	failed    []item
	reason    string
	response  []byte
	funcError string
	// executed is the version that ran ("" when none did).
	executed string
}

// attempt invokes the function once with items, waiting out throttling. Its
// error means the Deliverer cannot go on (ctx ended, shutting down, the
// function is gone). A trigger's version or alias that is gone fails the
// attempt, as a failed invocation does: the messages are retried, then go
// to the failure destination.
func (d *Deliverer) attempt(ctx context.Context, items []item) (outcome, error) {
	req := d.request(items)
	for throttled := 0; ; throttled++ {
		fn, err := d.cfg.Functions.Get(ctx, d.cfg.Function)
		if err != nil {
			return outcome{}, fmt.Errorf("look up function: %w", err)
		}
		run, err := Target(ctx, d.cfg.Functions, fn, d.cfg.Trigger.Qualifier)
		if errors.Is(err, nimbus.ErrNotFound) {
			return outcome{failed: items, reason: fmt.Sprintf("version or alias %s of function %s does not exist (deleted since the trigger was made)",
				d.cfg.Trigger.Qualifier, d.cfg.Function)}, nil
		}
		if err != nil {
			return outcome{}, fmt.Errorf("look up version %s: %w", d.cfg.Trigger.Qualifier, err)
		}
		res, err := d.cfg.Invoker.Invoke(ctx, run, req)
		switch {
		case err == nil:
			out := judge(items, res)
			out.executed = run.Qualifier()
			return out, nil
		case ctx.Err() != nil:
			return outcome{}, ctx.Err()
		case errors.Is(err, nimbus.ErrThrottled):
			if err := d.cfg.Sleep(ctx, d.cfg.Throttle.Delay(throttled)); err != nil {
				return outcome{}, err
			}
		case errors.Is(err, nimbus.ErrConflict):
			return outcome{}, fmt.Errorf("invoke: %w", err)
		default:
			d.log.Warn("trigger: invoke failed", nimbus.LogErr, err)
			return outcome{failed: items, reason: "the invocation failed: " + err.Error()}, nil
		}
	}
}

// request builds the invocation of items: one event or an array. HTTP
// functions receive it as a POST with the CloudEvents content type.
func (d *Deliverer) request(items []item) nimbus.Invocation {
	payload, ct := items[0].ev, ContentTypeEvent
	if d.cfg.Trigger.BatchSize > 1 || len(items) > 1 {
		msgs := make([]byte, 0, len(items)*(len(items[0].ev)+1)+2)
		msgs = append(msgs, '[')
		for i, it := range items {
			if i > 0 {
				msgs = append(msgs, ',')
			}
			msgs = append(msgs, it.ev...)
		}
		payload, ct = append(msgs, ']'), ContentTypeBatch
	}
	if items[0].msg.Raw {
		ct = "application/json"
	}
	return nimbus.Invocation{
		RequestID:  uuid.NewString(),
		Payload:    payload,
		Trigger:    d.cfg.Trigger.Type,
		TraceLinks: traceLinks(items),
		HTTP: &nimbus.HTTPRequest{Method: http.MethodPost, Path: "/", Body: payload,
			Header: http.Header{"Content-Type": {ct}}},
	}
}

// traceLinks collects the span contexts that came with the items.
func traceLinks(items []item) []string {
	var links []string
	for _, it := range items {
		if it.msg.TraceParent != "" {
			links = append(links, it.msg.TraceParent)
		}
	}
	return links
}

// judge reads an invocation's result: a function error or an HTTP error
// status fails every item; a partial batch response fails the items it
// names.
func judge(items []item, res nimbus.Result) outcome {
	if res.Err != nil {
		kind := "Handled"
		if res.Err.Unhandled {
			kind = "Unhandled"
		}
		return outcome{failed: items, reason: "the function failed: " + res.Err.Error(), response: res.Payload, funcError: kind}
	}
	if res.HTTP != nil && res.HTTP.Status/100 != 2 {
		return outcome{failed: items, reason: fmt.Sprintf("the function answered HTTP %d", res.HTTP.Status), response: res.Payload}
	}
	ids, err := partialFailures(res.Payload)
	if err != nil {
		return outcome{failed: items, reason: err.Error(), response: res.Payload}
	}
	if len(ids) == 0 {
		return outcome{}
	}
	known := make(map[string]bool, len(items))
	for _, it := range items {
		known[it.msg.ID] = true
	}
	for id := range ids {
		if !known[id] {
			return outcome{failed: items, response: res.Payload,
				reason: fmt.Sprintf("the partial batch response names item %q, which is not in the batch", id)}
		}
	}
	out := outcome{reason: "the function reported the item failed (batchItemFailures)", response: res.Payload}
	for _, it := range items {
		if ids[it.msg.ID] {
			out.failed = append(out.failed, it)
		}
	}
	return out
}

// partialFailures reads Lambda's partial batch response,
// {"batchItemFailures": [{"itemIdentifier": "<id>"}, ...]}, from a JSON
// object result. An answer without the member, or with null or an empty
// list, reports no failure; a malformed one is an error (the whole batch
// failed), as Lambda has it.
func partialFailures(payload []byte) (map[string]bool, error) {
	var obj map[string]json.RawMessage
	if json.Unmarshal(payload, &obj) != nil {
		return nil, nil // not an object: a plain success
	}
	raw, ok := obj["batchItemFailures"]
	if !ok || string(raw) == "null" {
		return nil, nil
	}
	var list []map[string]json.RawMessage
	if err := json.Unmarshal(raw, &list); err != nil {
		return nil, errors.New("the partial batch response is malformed: batchItemFailures must be a list of {\"itemIdentifier\": \"<id>\"}")
	}
	ids := make(map[string]bool, len(list))
	for _, f := range list {
		var id string
		if json.Unmarshal(f["itemIdentifier"], &id) != nil || id == "" {
			return nil, errors.New("the partial batch response is malformed: an entry of batchItemFailures has no itemIdentifier string")
		}
		ids[id] = true
	}
	return ids, nil
}

// fail sends items that failed for good to the failure destination (or the
// source's dead-letter queue), then counts them.
func (d *Deliverer) fail(ctx context.Context, items []item, out outcome, attempts int) error {
	reason := out.reason
	if attempts > 0 {
		reason = fmt.Sprintf("failed %d times; last: %s", attempts, out.reason)
	}
	var err error
	switch dest := d.cfg.Trigger.FailureDestination; {
	case dest != "":
		err = d.toDestination(ctx, dest, items, out, reason, attempts)
	case d.cfg.DeadLetter != nil:
		err = d.toDeadLetter(ctx, items, reason)
	default:
		d.drop(items, reason)
	}
	if err != nil {
		return err
	}
	d.cfg.Status.Failed(len(items))
	d.cfg.Metrics.Failed(d.cfg.Function, d.cfg.Trigger.Type, len(items))
	return nil
}

func (d *Deliverer) drop(items []item, reason string) {
	for _, it := range items {
		d.log.Warn("trigger: message dropped: it failed for good and the trigger has no failure destination",
			"id", it.msg.ID, "reason", reason)
	}
}

func (d *Deliverer) toDestination(ctx context.Context, dest string, items []item, out outcome, reason string, attempts int) error {
	if d.cfg.Failures == nil {
		return fmt.Errorf("send to failure destination %s: this node has no destination sender", dest)
	}
	for _, it := range items {
		f := Failure{Function: d.cfg.Function, Trigger: d.cfg.Trigger.Name, Message: it.msg, Event: it.ev,
			Reason: reason, Attempts: attempts, Response: out.response, FuncError: out.funcError,
			Qualifier: d.cfg.Trigger.Qualifier, Executed: out.executed}
		err := d.retrySend(ctx, func() error { return d.cfg.Failures.Send(ctx, dest, f) })
		if err != nil {
			return fmt.Errorf("send message %s to failure destination %s: %w", it.msg.ID, dest, err)
		}
		d.log.Info("trigger: message sent to the failure destination", "id", it.msg.ID, "destination", dest, "reason", reason)
	}
	return nil
}

func (d *Deliverer) toDeadLetter(ctx context.Context, items []item, reason string) error {
	msgs := make([]Message, len(items))
	for i, it := range items {
		msgs[i] = it.msg
	}
	err := d.retrySend(ctx, func() error { return d.cfg.DeadLetter.DeadLetter(ctx, msgs) })
	if errors.Is(err, ErrNoDeadLetter) {
		d.drop(items, reason)
		return nil
	}
	if err != nil {
		return fmt.Errorf("send %d messages to the dead-letter queue: %w", len(msgs), err)
	}
	d.log.Info("trigger: messages sent to the dead-letter queue", "messages", len(msgs), "reason", reason)
	return nil
}

// destinationAttempts is how often sending to the failure destination is
// tried before Deliver gives up (and the source delivers the batch again
// later).
const destinationAttempts = 3

// retrySend calls send until it succeeds, at most destinationAttempts times.
func (d *Deliverer) retrySend(ctx context.Context, send func() error) error {
	var err error
	for i := range destinationAttempts {
		if err = send(); err == nil || errors.Is(err, ErrNoDeadLetter) {
			return err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if i+1 < destinationAttempts {
			if err := d.cfg.Sleep(ctx, d.cfg.Throttle.Delay(i)); err != nil {
				return err
			}
		}
	}
	return err
}
