// Package timer is the timer trigger: a cron schedule (5 or 6 fields,
// descriptors, @every) in a time zone fires a function with a fixed
// payload.
//
// Every node that runs a timer trigger computes the same ticks. Before a
// node delivers a tick it claims it with a create-if-absent write of a key
// made of the function, the trigger and the tick's Unix time in a shared
// store.KV bucket, so a tick fires once however many nodes run the trigger
// and across restarts. A claim holds {"state":"claimed"} with a heartbeat the
// claimer renews while the delivery runs; it becomes {"state":"done"} when
// the sink accepted the tick. A claim whose heartbeat is older than the
// lease belongs to a node that died: another node (or the same one after a
// restart) takes it over with a compare-and-swap on its revision and
// delivers the tick. A tick whose delivery failed stays claimed and is
// retried with back-off.
//
// Missed ticks: when no node ran the trigger for a while (all were down),
// the most recent tick missed is fired once at start-up if it is at most the
// catch-up window old (Config.CatchUpWindow, default 1h); earlier missed
// ticks are skipped. A node that falls behind while it runs (its store did
// not answer, it was suspended) fires the ticks it passed over that are at
// most a minute old, late. A new trigger fires nothing missed. Each trigger keeps
// an "alive" key, refreshed by the nodes running it, that tells start-up
// from when ticks were missed.
//
// The bucket needs a TTL longer than MaxCatchUpWindow (TickTTL), so old tick
// keys go away.
package timer

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"log/slog"
	"strconv"
	"time"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/lazyre"
	"github.com/nimbus-serverless/nimbus/internal/store"
	"github.com/nimbus-serverless/nimbus/internal/trigger"
)

// Defaults of Deps.
const (
	// DefaultLease is how long a claim lives without a heartbeat.
	DefaultLease = time.Minute
	// TickBucket is the store.KV bucket the node should open for Deps.KV.
	TickBucket = "timer_ticks"
	// TickTTL is the TTL TickBucket needs: longer than MaxCatchUpWindow
	// and the recovery horizon, so a tick key outlives every look-back.
	TickTTL = 48 * time.Hour
)

// CloudEvents attributes of a tick.
const (
	EventType = "com.nimbus.timer.tick"
)

// Deps are what the timer triggers of one node share.
type Deps struct {
	// KV holds the tick claims; every node of a deployment must use the
	// same bucket (TickBucket, with a TTL of TickTTL).
	KV store.KV
	// Clock is SystemClock when nil.
	Clock Clock
	// Lease is DefaultLease when zero.
	Lease  time.Duration
	Logger *slog.Logger
}

// Timers makes the Sources of timer triggers.
type Timers struct {
	deps Deps
}

// New returns Timers using deps.
func New(deps Deps) *Timers {
	if deps.Clock == nil {
		deps.Clock = SystemClock{}
	}
	if deps.Lease <= 0 {
		deps.Lease = DefaultLease
	}
	if deps.Logger == nil {
		deps.Logger = slog.New(slog.DiscardHandler)
	}
	return &Timers{deps: deps}
}

// Factory returns the trigger.Factory of one trigger of one function: the
// claims and the CloudEvents' source are named after them.
func (t *Timers) Factory(function, triggerName string) trigger.Factory {
	return func(config json.RawMessage) (trigger.Source, error) {
		return t.NewSource(function, triggerName, config)
	}
}

// NewSource validates config and returns the Source of a timer trigger.
// Errors are user errors (nimbus.ErrInvalid).
func (t *Timers) NewSource(function, triggerName string, config json.RawMessage) (*Source, error) {
	if function == "" || triggerName == "" {
		return nil, nimbus.Invalidf("timer: function and trigger names are required")
	}
	p, err := parseConfig(config, t.deps.Clock.Now())
	if err != nil {
		return nil, err
	}
	return &Source{
		deps:     t.deps,
		cfg:      p,
		function: function,
		name:     triggerName,
		prefix:   keyPart(function) + "." + keyPart(triggerName),
		owner:    newOwner(),
		log:      t.deps.Logger.With(nimbus.LogFunction, function, nimbus.LogTrigger, triggerName),
	}, nil
}

// Source fires one timer trigger.
type Source struct {
	deps     Deps
	cfg      parsed
	function string
	name     string
	prefix   string // key prefix: function "." trigger
	owner    string // this Source's id in claims
	log      *slog.Logger
}

var _ trigger.Source = (*Source)(nil)

// Run fires ticks until ctx ends, then waits for the deliveries in flight to
// return. It returns nil, or an error at once when Deps.KV is nil.
func (s *Source) Run(ctx context.Context, sink trigger.Sink, opts trigger.Options) error {
	if s.deps.KV == nil {
		return errors.New("timer: no tick store (Deps.KV is nil)")
	}
	r := newRun(s, sink, opts)
	defer r.wg.Wait()
	start, ok := r.startUp(ctx)
	if !ok {
		return nil
	}
	r.loop(ctx, start)
	return nil
}

// message is the event of one tick.
func (s *Source) message(tick time.Time) trigger.Message {
	if s.cfg.Format == FormatFC {
		return s.fcMessage(tick)
	}
	return trigger.Message{
		ID:              s.name + "-" + strconv.FormatInt(tick.Unix(), 10),
		Source:          "nimbus://timer/" + s.function + "/" + s.name,
		Type:            EventType,
		Time:            tick.UTC(),
		DataContentType: "application/json",
		Data:            s.cfg.payload,
	}
}

func (s *Source) tickKey(tick time.Time) string {
	return s.prefix + "." + strconv.FormatInt(tick.Unix(), 10)
}

func (s *Source) aliveKey() string { return s.prefix + ".alive" }

// safePart matches names usable as they are in a key.
var safePart = lazyre.New(`^[-_a-zA-Z0-9]+$`)

// keyPart is name when it is safe in a KV key, else "=" and its hex (which
// no safe name starts with, so the two never collide).
func keyPart(name string) string {
	if safePart().MatchString(name) {
		return name
	}
	return "=" + hex.EncodeToString([]byte(name))
}

func newOwner() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// tickState is the value of a tick key.
type tickState struct {
	State     string    `json:"state"` // stateClaimed or stateDone
	Owner     string    `json:"owner,omitempty"`
	Heartbeat time.Time `json:"heartbeat,omitzero"`
}

const (
	stateClaimed = "claimed"
	stateDone    = "done"
)

// aliveState is the value of a trigger's alive key.
type aliveState struct {
	Since time.Time `json:"since"` // when a node first ran the trigger
	At    time.Time `json:"at"`    // when a node last said it runs it
}

// encode marshals the plain structs above, which cannot fail.
func encode(v any) []byte {
	b, _ := json.Marshal(v)
	return b
}

// fcMessage is the event of one tick in Function Compute's format:
// {"triggerTime", "triggerName", "payload"}, the payload as configured
// (Function Compute's is a string; "" when there is none).
func (s *Source) fcMessage(tick time.Time) trigger.Message {
	payload := json.RawMessage(`""`)
	if len(s.cfg.Payload) > 0 && string(s.cfg.Payload) != "null" {
		payload = s.cfg.payload
	}
	data, _ := json.Marshal(struct {
		TriggerTime string          `json:"triggerTime"`
		TriggerName string          `json:"triggerName"`
		Payload     json.RawMessage `json:"payload"`
	}{tick.UTC().Format(time.RFC3339), s.name, payload})
	return trigger.Message{
		ID:     s.name + "-" + strconv.FormatInt(tick.Unix(), 10),
		Source: "nimbus://timer/" + s.function + "/" + s.name,
		Type:   EventType, Time: tick.UTC(), DataContentType: "application/json", Data: data, Raw: true,
	}
}
