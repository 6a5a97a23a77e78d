package triggertest

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/trigger"
)

// poisonInvoker plays a function that fails (in a partial batch response)
// every event whose data is poison, and processes the others.
type poisonInvoker struct {
	poison []byte

	mu       sync.Mutex
	done     map[string]bool // data of the events processed
	attempts int             // invocations that saw poison
}

// event is what the invoker reads of a CloudEvent.
type event struct {
	ID         string          `json:"id"`
	Data       json.RawMessage `json:"data"`
	DataBase64 string          `json:"data_base64"`
}

func (e event) data() []byte {
	if e.DataBase64 != "" {
		b, _ := base64.StdEncoding.DecodeString(e.DataBase64)
		return b
	}
	var s string
	if json.Unmarshal(e.Data, &s) == nil {
		return []byte(s)
	}
	return e.Data
}

func (p *poisonInvoker) Invoke(_ context.Context, _ *nimbus.Function, req nimbus.Invocation) (nimbus.Result, error) {
	var evs []event
	if err := json.Unmarshal(req.Payload, &evs); err != nil {
		return nimbus.Result{}, fmt.Errorf("poisonInvoker: the payload is no batch of events: %w", err)
	}
	type item struct {
		ID string `json:"itemIdentifier"`
	}
	var failed []item
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, e := range evs {
		if bytes.Equal(e.data(), p.poison) {
			failed = append(failed, item{e.ID})
			p.attempts++
			continue
		}
		p.done[string(e.data())] = true
	}
	out, _ := json.Marshal(map[string]any{"batchItemFailures": failed})
	return nimbus.Result{Payload: out}, nil
}

func (p *poisonInvoker) processed() (int, int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.done), p.attempts
}

// anyFunction finds every function.
type anyFunction struct{}

func (anyFunction) Get(_ context.Context, name string) (*nimbus.Function, error) {
	return &nimbus.Function{Name: name}, nil
}

func (f anyFunction) Resolve(ctx context.Context, name, _ string) (*nimbus.Function, error) {
	return f.Get(ctx, name)
}

// failureRecorder is a failure destination that keeps what it is sent.
type failureRecorder struct {
	mu   sync.Mutex
	sent [][]byte
}

func (f *failureRecorder) Send(_ context.Context, _ string, fl trigger.Failure) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sent = append(f.sent, fl.Message.Data)
	return nil
}

func (f *failureRecorder) data() [][]byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([][]byte(nil), f.sent...)
}

// testDeadLetters: with the trigger's own Sink, a message the function
// keeps failing goes, after its retries, to the source's dead-letter
// destination (or, without one, to the trigger's failure destination), and
// the source goes on: every other message is processed.
func testDeadLetters(t *testing.T, h Harness) {
	tg := h.Setup(t)
	src := tg.Source(t, SourceSetup{DeadLetter: h.DeadLetter})
	poison := []byte(Body(7))
	inv := &poisonInvoker{poison: poison, done: map[string]bool{}}
	const retries = 1
	fast := trigger.Backoff{Base: time.Millisecond, Max: 10 * time.Millisecond}
	counts := trigger.NewStatus()
	cfg := trigger.SinkConfig{
		Function: "fn", Functions: anyFunction{}, Invoker: inv, Status: counts, Retry: fast, Throttle: fast,
		Trigger: nimbus.Trigger{Name: "suite", Type: "suite", Enabled: true, BatchSize: 5, MaxRetries: retries},
	}
	failures := &failureRecorder{}
	if h.DeadLetter {
		dl, ok := src.(trigger.DeadLetterer)
		if !ok {
			t.Fatalf("%T is no trigger.DeadLetterer", src)
		}
		cfg.DeadLetter = dl
	} else {
		cfg.Trigger.FailureDestination = "suite:failures"
		cfg.Failures = failures
	}
	o := options(5, 5*time.Millisecond, 2)
	stop := Run(t, src, trigger.NewSink(cfg), o)
	waitActive(t, o)
	tg.Publish(t, 2, bodies(0, 20)...)
	WaitFor(t, "19 messages processed and the poison one failed for good", func() bool {
		done, _ := inv.processed()
		return done == 19 && counts.View().Failed >= 1
	})
	waitSettled(t, o)
	stop()
	if _, attempts := inv.processed(); attempts < retries+1 {
		t.Errorf("the poison message was tried %d times, want %d (MaxRetries %d)", attempts, retries+1, retries)
	}
	var dead [][]byte
	WaitFor(t, "the dead letter", func() bool {
		if h.DeadLetter {
			dead = tg.DeadLetters(t)
		} else {
			dead = failures.data()
		}
		return len(dead) > 0
	})
	if len(dead) != 1 || !bytes.Equal(dead[0], poison) {
		t.Errorf("dead letters %q, want the poison message %q once", dead, poison)
	}
}
