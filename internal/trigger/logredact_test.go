package trigger

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/testenv"
)

// leakySource fails, panics or is refused with its URL, credentials
// included, in the error: what a careless client library does.
type leakySource struct{ url, mode string }

func leakyFactory(raw json.RawMessage) (Source, error) {
	var c struct{ URL, Mode string }
	if err := json.Unmarshal(raw, &c); err != nil {
		return nil, err
	}
	if c.Mode == "invalid" {
		return nil, nimbus.Invalidf("cannot use %s", c.URL)
	}
	if c.Mode == "factory-panic" {
		panic("factory cannot parse " + c.URL)
	}
	return &leakySource{url: c.URL, mode: c.Mode}, nil
}

func (s *leakySource) Run(ctx context.Context, _ Sink, _ Options) error {
	if s.mode == "panic" {
		panic("lost connection to " + s.url)
	}
	return fmt.Errorf("connect to %s: connection refused", s.url)
}

// TestLogLinesRedacted: whatever a trigger's source or factory says of its
// credentials (in an error, a refusal, a panic), neither the manager's log
// lines nor the trigger's status carry them.
func TestLogLinesRedacted(t *testing.T) {
	noLeaks(t)
	password := fmt.Sprintf("pw-%d-%d", os.Getpid(), time.Now().UnixNano())
	url := "amqp://app:" + password + "@broker.example:5672/"
	var trs []nimbus.Trigger
	for _, mode := range []string{"error", "panic", "invalid", "factory-panic"} {
		raw, _ := json.Marshal(map[string]string{"url": url, "mode": mode})
		trs = append(trs, nimbus.Trigger{Name: mode, Type: "leaky", Enabled: true, Config: raw})
	}
	var logs testenv.Buffer
	m := NewManager(ManagerConfig{
		Functions: newFakeFunctions(&nimbus.Function{Name: "fn", Triggers: trs}), Invoker: &fakeInvoker{},
		Types:  map[string]Factory{"leaky": leakyFactory},
		Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Sleep: func(ctx context.Context, _ time.Duration) error {
			<-ctx.Done() // no restarts
			return ctx.Err()
		},
	})
	t.Cleanup(func() { closeManager(t, m) })
	if err := m.Open(t.Context()); err != nil {
		t.Fatal(err)
	}
	for _, tr := range trs {
		deadline := time.Now().Add(10 * time.Second)
		for v := m.Status("fn", &tr); v.State != StateError; v = m.Status("fn", &tr) {
			if time.Now().After(deadline) {
				t.Fatalf("trigger %s: state %s, want %s", tr.Name, v.State, StateError)
			}
			time.Sleep(time.Millisecond)
		}
		if v := m.Status("fn", &tr); strings.Contains(v.Reason, password) {
			t.Errorf("trigger %s: status reason %q holds the password", tr.Name, v.Reason)
		}
	}
	for _, tr := range trs { // a state may be set just before its log line is written
		deadline := time.Now().Add(10 * time.Second)
		for !strings.Contains(logs.String(), "trigger="+tr.Name) {
			if time.Now().After(deadline) {
				t.Fatalf("trigger %s logged nothing: the check would prove nothing", tr.Name)
			}
			time.Sleep(time.Millisecond)
		}
	}
	if strings.Contains(logs.String(), password) {
		t.Errorf("a log line holds the password:\n%s", logs.String())
	}
	if !strings.Contains(logs.String(), "app:"+Redacted+"@") {
		t.Errorf("no log line shows the redacted URL:\n%s", logs.String())
	}
}
