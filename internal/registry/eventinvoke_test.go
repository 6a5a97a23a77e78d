package registry

import (
	"bytes"
	"context"
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/codepkg"
	"github.com/nimbus-serverless/nimbus/internal/store/mem"
)

func newEventInvokeRegistry(t *testing.T, names ...string) *Registry {
	t.Helper()
	r := newTestRegistry(t, mem.NewKV(), mem.NewBlobs())
	rt, h := "python3.11", "app.handler"
	for _, name := range names {
		if _, err := r.Create(t.Context(), FunctionInput{Name: name, Runtime: &rt, Handler: &h}, testZip(t)); err != nil {
			t.Fatal(err)
		}
	}
	return r
}

func set(c nimbus.EventInvokeConfig) func(*nimbus.EventInvokeConfig) (*nimbus.EventInvokeConfig, error) {
	return func(*nimbus.EventInvokeConfig) (*nimbus.EventInvokeConfig, error) { return &c, nil }
}

func TestSetEventInvokeConfig(t *testing.T) {
	r := newEventInvokeRegistry(t, "f", "next")
	ctx := t.Context()
	fn, err := r.SetEventInvokeConfig(ctx, "f", "", set(nimbus.EventInvokeConfig{
		MaximumRetryAttempts: new(8), MaximumEventAgeInSeconds: new(nimbus.MaxEventAgeSeconds),
		OnSuccess: "next", OnFailure: "https://example.com/hook", DestinationSecret: "k",
		MaxConcurrency: 3, MaxEventsPerSecond: 0.5,
	}))
	if err != nil {
		t.Fatalf("SetEventInvokeConfig: %v", err)
	}
	if c := fn.EventInvoke; c == nil || c.Retries() != 8 || c.OnSuccess != "next" || c.LastModified.IsZero() {
		t.Fatalf("stored config = %+v", c)
	}
	// change gets a copy of the current configuration.
	fn, err = r.SetEventInvokeConfig(ctx, "f", "", func(cur *nimbus.EventInvokeConfig) (*nimbus.EventInvokeConfig, error) {
		if cur == nil || *cur.MaximumRetryAttempts != 8 {
			return nil, errors.New("no current config")
		}
		*cur.MaximumRetryAttempts = 1
		return cur, nil
	})
	if err != nil || fn.EventInvoke.Retries() != 1 || fn.EventInvoke.MaxConcurrency != 3 {
		t.Fatalf("merge: %+v, %v", fn.EventInvoke, err)
	}
	got, err := r.Get(ctx, "f")
	if err != nil || got.EventInvoke.Retries() != 1 {
		t.Fatalf("Get after set: %+v, %v", got.EventInvoke, err)
	}
	fn, err = r.SetEventInvokeConfig(ctx, "f", "", set0)
	if err != nil || fn.EventInvoke != nil {
		t.Fatalf("remove: %+v, %v", fn.EventInvoke, err)
	}
	if _, err := r.SetEventInvokeConfig(ctx, "nope", "", set0); !errors.Is(err, nimbus.ErrNotFound) {
		t.Errorf("unknown function: %v, want nimbus.ErrNotFound", err)
	}
	boom := errors.New("boom")
	if _, err := r.SetEventInvokeConfig(ctx, "f", "", func(*nimbus.EventInvokeConfig) (*nimbus.EventInvokeConfig, error) { return nil, boom }); !errors.Is(err, boom) {
		t.Errorf("change's error: %v, want it returned", err)
	}
}

func set0(*nimbus.EventInvokeConfig) (*nimbus.EventInvokeConfig, error) { return nil, nil }

func TestSetEventInvokeConfigBad(t *testing.T) {
	r := newEventInvokeRegistry(t, "f", "next")
	tests := []struct {
		name string
		c    nimbus.EventInvokeConfig
		kind error
		want string
	}{
		{"retries negative", nimbus.EventInvokeConfig{MaximumRetryAttempts: new(-1)}, nimbus.ErrValidation, "greater than or equal to 0"},
		{"retries too many", nimbus.EventInvokeConfig{MaximumRetryAttempts: new(9)}, nimbus.ErrValidation, "maximumRetryAttempts"},
		{"age too short", nimbus.EventInvokeConfig{MaximumEventAgeInSeconds: new(59)}, nimbus.ErrValidation, "greater than or equal to 60"},
		{"age too long", nimbus.EventInvokeConfig{MaximumEventAgeInSeconds: new(604801)}, nimbus.ErrValidation, "less than or equal to 604800"},
		{"concurrency negative", nimbus.EventInvokeConfig{MaxConcurrency: -1}, nimbus.ErrValidation, "nimbusMaxConcurrency"},
		{"rate negative", nimbus.EventInvokeConfig{MaxEventsPerSecond: -0.1}, nimbus.ErrValidation, "nimbusMaxEventsPerSecond"},
		{"rate NaN", nimbus.EventInvokeConfig{MaxEventsPerSecond: math.NaN()}, nimbus.ErrValidation, "nimbusMaxEventsPerSecond"},
		{"secret too long", nimbus.EventInvokeConfig{DestinationSecret: strings.Repeat("s", 1025)}, nimbus.ErrValidation, "nimbusDestinationSecret"},
		{"self", nimbus.EventInvokeConfig{OnFailure: "f"}, nimbus.ErrInvalid, "itself"},
		{"self by ARN", nimbus.EventInvokeConfig{OnSuccess: "arn:aws:lambda:us-east-1:000000000000:function:f"}, nimbus.ErrInvalid, "itself"},
		{"missing function", nimbus.EventInvokeConfig{OnSuccess: "ghost"}, nimbus.ErrInvalid, "ghost does not exist"},
		{"sqs", nimbus.EventInvokeConfig{OnFailure: "arn:aws:sqs:us-east-1:000000000000:q"}, nimbus.ErrInvalid, "sqs"},
		{"wildcard subject", nimbus.EventInvokeConfig{OnFailure: "nats:a.*"}, nimbus.ErrInvalid, "wildcards"},
	}
	for _, tt := range tests {
		_, err := r.SetEventInvokeConfig(t.Context(), "f", "", set(tt.c))
		if !errors.Is(err, tt.kind) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v, want %v mentioning %q", tt.name, err, tt.kind, tt.want)
		}
		if strings.Contains(tt.name, "secret") && strings.Contains(err.Error(), "sss") {
			t.Errorf("%s: the message repeats the secret", tt.name)
		}
	}
	fn, err := r.Get(context.Background(), "f")
	if err != nil || fn.EventInvoke != nil {
		t.Errorf("after bad sets: %+v, %v; want no config", fn.EventInvoke, err)
	}
}

// TestEventInvokeConfigQualified: versions and aliases have configs of
// their own, on the function's record (a version's snapshot stays as it
// was published), sealed each under its own qualifier, without flow
// control, and gone with their version or alias.
func TestEventInvokeConfigQualified(t *testing.T) {
	kv, blobs := mem.NewKV(), mem.NewBlobs()
	cfg := Config{KV: kv, Versions: mem.NewKV(), Blobs: blobs, Code: readyCode{}, Runtimes: []string{"python3.11"}, Limits: codepkg.DefaultLimits()}
	r := openPublished(t, cfg)
	ctx := t.Context()
	for q, retries := range map[string]int{"": 1, "1": 0, "live": 2} {
		c := nimbus.EventInvokeConfig{MaximumRetryAttempts: new(retries), DestinationSecret: destSecret + "-" + q}
		if _, err := r.SetEventInvokeConfig(ctx, "f", q, set(c)); err != nil {
			t.Fatalf("set %q: %v", q, err)
		}
	}
	fn, err := r.Get(ctx, "f")
	if err != nil {
		t.Fatal(err)
	}
	for q, want := range map[string]int{"": 1, nimbus.Latest: 1, "1": 0, "live": 2, "2": nimbus.DefaultRetryAttempts} {
		if got := fn.EventInvokeFor(q).Retries(); got != want {
			t.Errorf("EventInvokeFor(%q).Retries() = %d, want %d", q, got, want)
		}
	}
	if v, err := r.Version(ctx, "f", 1); err != nil || v.EventInvoke != nil || v.EventInvokeQualified != nil {
		t.Errorf("version 1's snapshot: %+v, %v; want no event invoke config", v, err)
	}

	// Sealed each for its qualifier: another node opens them.
	e, err := kv.Get(ctx, "f")
	if err != nil || bytes.Contains(e.Value, []byte(destSecret)) {
		t.Fatalf("stored record holds a destination secret in clear (%v): %s", err, e.Value)
	}
	other := openTestRegistry(t, cfg)
	fn2, err := other.Get(ctx, "f")
	if err != nil || fn2.EventInvokeFor("live").DestinationSecret != destSecret+"-live" || fn2.EventInvoke.DestinationSecret != destSecret+"-" {
		t.Fatalf("other node: %+v, %v", fn2, err)
	}

	for _, tt := range []struct {
		q    string
		c    nimbus.EventInvokeConfig
		kind error
		want string
	}{
		{"2", nimbus.EventInvokeConfig{MaximumRetryAttempts: new(1)}, nimbus.ErrNotFound, "f:2"},
		{"nope", nimbus.EventInvokeConfig{MaximumRetryAttempts: new(1)}, nimbus.ErrNotFound, "f:nope"},
		{"live", nimbus.EventInvokeConfig{MaxConcurrency: 2}, nimbus.ErrInvalid, "NimbusMaxConcurrency"},
		{"1", nimbus.EventInvokeConfig{MaxEventsPerSecond: 1}, nimbus.ErrInvalid, "not on f:1"},
	} {
		if _, err := r.SetEventInvokeConfig(ctx, "f", tt.q, set(tt.c)); !errors.Is(err, tt.kind) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("set %q %+v: %v, want %v mentioning %q", tt.q, tt.c, err, tt.kind, tt.want)
		}
	}
	if _, err := r.SetEventInvokeConfig(ctx, "f", nimbus.Latest, set(nimbus.EventInvokeConfig{MaxConcurrency: 2})); err != nil {
		t.Errorf("flow control on $LATEST: %v", err)
	}

	if err := r.DeleteAlias(ctx, "f", "live"); err != nil {
		t.Fatal(err)
	}
	if err := r.DeleteVersion(ctx, "f", 1); err != nil {
		t.Fatal(err)
	}
	if fn, err = r.Get(ctx, "f"); err != nil || fn.EventInvokeQualified != nil || fn.EventInvoke == nil {
		t.Errorf("after deleting the alias and the version: %+v, %v; want $LATEST's config alone", fn, err)
	}
}
