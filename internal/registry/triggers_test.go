package registry

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/codepkg"
	"github.com/nimbus-serverless/nimbus/internal/store/mem"
	"github.com/nimbus-serverless/nimbus/internal/trigger"
	"github.com/nimbus-serverless/nimbus/internal/trigger/funcurl"
)

// testTypes knows "fake" (whose config must be a JSON object without
// "bad") and "http" (function URLs, as the node has it).
func testTypes() TriggerTypes {
	check := func(raw json.RawMessage) (trigger.Source, error) {
		var m map[string]any
		if len(raw) > 0 && json.Unmarshal(raw, &m) != nil {
			return nil, nimbus.Invalidf("fake trigger config: must be an object")
		}
		if _, bad := m["bad"]; bad {
			return nil, nimbus.Invalidf("fake trigger config: bad is not allowed")
		}
		return nil, nil
	}
	return TriggerTypes{
		Factories: map[string]trigger.Factory{"fake": check, nimbus.TriggerHTTP: funcurl.Factory},
		Destination: func(d string) error {
			if strings.HasPrefix(d, "nats:") {
				return nil
			}
			return nimbus.Invalidf("destination %q is not a nats: subject", d)
		},
	}
}

func newTriggerRegistry(t *testing.T) *Registry {
	t.Helper()
	r := newTestRegistry(t, mem.NewKV(), mem.NewBlobs())
	rt, h := "python3.11", "app.handler"
	if _, err := r.Create(t.Context(), FunctionInput{Name: "f", Runtime: &rt, Handler: &h}, testZip(t)); err != nil {
		t.Fatal(err)
	}
	return r
}

func ptr[T any](v T) *T { return &v }

func TestAddTriggerValidation(t *testing.T) {
	tests := []struct {
		name string
		in   TriggerInput
		want error
		msg  string
	}{
		{"ok", TriggerInput{Name: "t1", Type: ptr("fake")}, nil, ""},
		{"all fields", TriggerInput{Name: "T_2-x", Type: ptr("fake"), Enabled: ptr(false), Config: json.RawMessage(`{"a":1}`),
			BatchSize: ptr(10000), BatchWindow: ptr(5 * time.Minute), MaxRetries: ptr(100),
			FailureDestination: ptr("nats:dlq"), Concurrency: ptr(1000)}, nil, ""},
		{"empty name", TriggerInput{Type: ptr("fake")}, nimbus.ErrValidation, "triggerName"},
		{"name with a dot", TriggerInput{Name: "a.b", Type: ptr("fake")}, nimbus.ErrValidation, "triggerName"},
		{"long name", TriggerInput{Name: strings.Repeat("n", 65), Type: ptr("fake")}, nimbus.ErrValidation, "triggerName"},
		{"no type", TriggerInput{Name: "t"}, nimbus.ErrInvalid, "type is required: one of fake, http"},
		{"unknown type", TriggerInput{Name: "t", Type: ptr("sqs")}, nimbus.ErrInvalid, `"sqs" is not supported. Types on this node: fake, http`},
		{"bad config", TriggerInput{Name: "t", Type: ptr("fake"), Config: json.RawMessage(`{"bad":1}`)}, nimbus.ErrInvalid, "bad is not allowed"},
		{"config not JSON", TriggerInput{Name: "t", Type: ptr("fake"), Config: json.RawMessage(`{`)}, nimbus.ErrInvalid, "not valid JSON"},
		{"config too big", TriggerInput{Name: "t", Type: ptr("fake"), Config: json.RawMessage(`"` + strings.Repeat("x", 70000) + `"`)}, nimbus.ErrInvalid, "over the limit"},
		{"batch 0", TriggerInput{Name: "t", Type: ptr("fake"), BatchSize: ptr(0)}, nimbus.ErrValidation, "batchSize"},
		{"batch 10001", TriggerInput{Name: "t", Type: ptr("fake"), BatchSize: ptr(10001)}, nimbus.ErrValidation, "batchSize"},
		{"window negative", TriggerInput{Name: "t", Type: ptr("fake"), BatchWindow: ptr(-time.Second)}, nimbus.ErrValidation, "batchWindow"},
		{"window too long", TriggerInput{Name: "t", Type: ptr("fake"), BatchWindow: ptr(5*time.Minute + 1)}, nimbus.ErrValidation, "batchWindow"},
		{"retries negative", TriggerInput{Name: "t", Type: ptr("fake"), MaxRetries: ptr(-1)}, nimbus.ErrValidation, "maxRetries"},
		{"retries 101", TriggerInput{Name: "t", Type: ptr("fake"), MaxRetries: ptr(101)}, nimbus.ErrValidation, "maxRetries"},
		{"concurrency 1001", TriggerInput{Name: "t", Type: ptr("fake"), Concurrency: ptr(1001)}, nimbus.ErrValidation, "concurrency"},
		{"bad destination", TriggerInput{Name: "t", Type: ptr("fake"), FailureDestination: ptr("https://x")}, nimbus.ErrInvalid, "not a nats: subject"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newTriggerRegistry(t)
			got, err := r.AddTrigger(t.Context(), "f", tt.in, testTypes())
			if tt.want == nil {
				if err != nil {
					t.Fatalf("got %v, want success", err)
				}
				stored, err := r.GetTrigger(t.Context(), "f", tt.in.Name)
				if err != nil || stored.ID != got.ID || stored.ID == "" {
					t.Errorf("stored: got %+v, %v; want the created trigger", stored, err)
				}
				return
			}
			if !errors.Is(err, tt.want) || !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("got %v, want %v containing %q", err, tt.want, tt.msg)
			}
		})
	}
}

func TestAddTriggerDefaultsAndConflicts(t *testing.T) {
	r := newTriggerRegistry(t)
	ctx := t.Context()
	got, err := r.AddTrigger(ctx, "f", TriggerInput{Name: "a", Type: ptr("fake")}, testTypes())
	if err != nil {
		t.Fatal(err)
	}
	if !got.Enabled || got.BatchSize != 1 || got.BatchWindow != 0 || got.MaxRetries != nimbus.DefaultTriggerRetries || got.Created.IsZero() {
		t.Errorf("defaults: got %+v", got)
	}
	if _, err := r.AddTrigger(ctx, "f", TriggerInput{Name: "a", Type: ptr("fake")}, testTypes()); !errors.Is(err, nimbus.ErrConflict) {
		t.Errorf("duplicate name: got %v, want ErrConflict", err)
	}
	if _, err := r.AddTrigger(ctx, "nope", TriggerInput{Name: "a", Type: ptr("fake")}, testTypes()); !errors.Is(err, nimbus.ErrNotFound) {
		t.Errorf("unknown function: got %v, want ErrNotFound", err)
	}
	public := json.RawMessage(`{"authType":"NONE"}`)
	if _, err := r.AddTrigger(ctx, "f", TriggerInput{Name: "url", Type: ptr("http"), Config: public}, testTypes()); err != nil {
		t.Fatal(err)
	}
	_, err = r.AddTrigger(ctx, "f", TriggerInput{Name: "url2", Type: ptr("http"), Config: public}, testTypes())
	if !errors.Is(err, nimbus.ErrConflict) || !strings.Contains(err.Error(), "HTTP trigger") {
		t.Errorf("second http trigger: got %v, want ErrConflict", err)
	}
}

func TestUpdateEnableDeleteTrigger(t *testing.T) {
	r := newTriggerRegistry(t)
	ctx := t.Context()
	created, err := r.AddTrigger(ctx, "f", TriggerInput{Name: "a", Type: ptr("fake"), Config: json.RawMessage(`{"x":1}`),
		FailureDestination: ptr("nats:d")}, testTypes())
	if err != nil {
		t.Fatal(err)
	}
	fnBefore, _ := r.Get(ctx, "f")

	got, err := r.UpdateTrigger(ctx, "f", "a", TriggerInput{BatchSize: ptr(50), MaxRetries: ptr(0)}, testTypes())
	if err != nil {
		t.Fatal(err)
	}
	if got.BatchSize != 50 || got.MaxRetries != 0 || string(got.Config) != `{"x":1}` || got.FailureDestination != "nats:d" ||
		got.ID != created.ID || !got.Created.Equal(created.Created) {
		t.Errorf("update: got %+v; want only batch size and retries changed", got)
	}
	fnAfter, _ := r.Get(ctx, "f")
	if fnAfter.CodeSHA256 != fnBefore.CodeSHA256 || !fnAfter.LastModified.Equal(fnBefore.LastModified) {
		t.Error("a trigger update changed the function's code or LastModified")
	}

	for _, tc := range []struct {
		in   TriggerInput
		want error
	}{
		{TriggerInput{Type: ptr("http")}, nimbus.ErrInvalid},
		{TriggerInput{Name: "b"}, nimbus.ErrInvalid},
		{TriggerInput{Config: json.RawMessage(`{"bad":true}`)}, nimbus.ErrInvalid},
		{TriggerInput{BatchWindow: ptr(time.Hour)}, nimbus.ErrValidation},
	} {
		if _, err := r.UpdateTrigger(ctx, "f", "a", tc.in, testTypes()); !errors.Is(err, tc.want) {
			t.Errorf("UpdateTrigger(%+v): got %v, want %v", tc.in, err, tc.want)
		}
	}
	if _, err := r.UpdateTrigger(ctx, "f", "nope", TriggerInput{}, testTypes()); !errors.Is(err, nimbus.ErrNotFound) {
		t.Errorf("update unknown: got %v", err)
	}

	if got, err := r.SetTriggerEnabled(ctx, "f", "a", false); err != nil || got.Enabled {
		t.Errorf("disable: got %+v, %v", got, err)
	}
	if got, _ := r.GetTrigger(ctx, "f", "a"); got.Enabled {
		t.Error("disabled trigger reads as enabled")
	}
	if _, err := r.SetTriggerEnabled(ctx, "f", "nope", true); !errors.Is(err, nimbus.ErrNotFound) {
		t.Errorf("enable unknown: got %v", err)
	}

	_, foundT, err := r.FindTrigger(ctx, created.ID)
	if err != nil || foundT.Name != "a" {
		t.Errorf("FindTrigger: got %+v, %v", foundT, err)
	}
	if err := r.DeleteTrigger(ctx, "f", "a"); err != nil {
		t.Fatal(err)
	}
	if err := r.DeleteTrigger(ctx, "f", "a"); !errors.Is(err, nimbus.ErrNotFound) {
		t.Errorf("second delete: got %v", err)
	}
	if _, _, err := r.FindTrigger(ctx, created.ID); !errors.Is(err, nimbus.ErrNotFound) {
		t.Errorf("FindTrigger after delete: got %v", err)
	}
}

func TestTriggerChangesNotify(t *testing.T) {
	r := newTriggerRegistry(t)
	changed := make(chan string, 10)
	r.OnChange(func(name string) { changed <- name })
	if _, err := r.AddTrigger(t.Context(), "f", TriggerInput{Name: "a", Type: ptr("fake")}, testTypes()); err != nil {
		t.Fatal(err)
	}
	select {
	case name := <-changed:
		if name != "f" {
			t.Errorf("changed %q, want f", name)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no change notification")
	}
}

func TestTriggerPrepare(t *testing.T) {
	r := newTriggerRegistry(t)
	types := testTypes()
	types.Prepare = func(fn *nimbus.Function, tr *nimbus.Trigger) error {
		if fn.Name != "f" {
			t.Errorf("Prepare got function %s", fn.Name)
		}
		if string(tr.Config) == `{"refuse":1}` {
			return nimbus.Invalidf("refused for function %s", fn.Name)
		}
		tr.Config = json.RawMessage(`{"key":"generated"}`)
		return nil
	}
	got, err := r.AddTrigger(t.Context(), "f", TriggerInput{Name: "a", Type: ptr("fake")}, types)
	if err != nil || string(got.Config) != `{"key":"generated"}` {
		t.Fatalf("add: got %+v, %v; want the prepared config", got, err)
	}
	if stored, _ := r.GetTrigger(t.Context(), "f", "a"); string(stored.Config) != `{"key":"generated"}` {
		t.Errorf("stored config: %s", stored.Config)
	}
	_, err = r.UpdateTrigger(t.Context(), "f", "a", TriggerInput{Config: json.RawMessage(`{"refuse":1}`)}, types)
	if !errors.Is(err, nimbus.ErrInvalid) || !strings.Contains(err.Error(), "refused for function f") {
		t.Errorf("update: got %v, want Prepare's refusal", err)
	}
	if _, err := r.AddTrigger(t.Context(), "f", TriggerInput{Name: "b", Type: ptr("fake"), Config: json.RawMessage(`{"refuse":1}`)}, types); err == nil {
		t.Error("add: Prepare's refusal was ignored")
	}
}

// urlKey returns the key in a stored http trigger's config.
func urlKey(t *testing.T, tr *nimbus.Trigger) string {
	t.Helper()
	c, err := funcurl.ParseConfig(tr.Config)
	if err != nil {
		t.Fatalf("stored config %s: %v", tr.Config, err)
	}
	return c.Key
}

// TestURLKeyKept: a KEY URL's key stays through every update that leaves
// it out, and changes only when set or rotated.
func TestURLKeyKept(t *testing.T) {
	r := newTriggerRegistry(t)
	ctx := t.Context()
	keyCfg := json.RawMessage(`{"authType":"KEY"}`)
	created, err := r.AddTrigger(ctx, "f", TriggerInput{Name: "url", Type: ptr("http"), Config: keyCfg}, testTypes())
	if err != nil {
		t.Fatal(err)
	}
	key := urlKey(t, created)
	if len(key) != 43 {
		t.Fatalf("generated key %q, want 43 characters", key)
	}
	for _, in := range []TriggerInput{
		{Config: keyCfg},
		{Config: json.RawMessage(`{"authType":"KEY","invokeMode":"BUFFERED"}`)},
		{BatchSize: ptr(5)},
		{Type: ptr("http"), Enabled: ptr(true), Config: keyCfg},
	} {
		got, err := r.UpdateTrigger(ctx, "f", "url", in, testTypes())
		if err != nil {
			t.Fatalf("UpdateTrigger(%+v): %v", in, err)
		}
		if k := urlKey(t, got); k != key {
			t.Errorf("UpdateTrigger(config %s) changed the key from %q to %q", in.Config, key, k)
		}
	}
	stored, _ := r.GetTrigger(ctx, "f", "url")
	if k := urlKey(t, stored); k != key {
		t.Errorf("stored key %q, want %q", k, key)
	}

	// Set on purpose.
	chosen := "a-key-of-my-own-choosing"
	got, err := r.UpdateTrigger(ctx, "f", "url", TriggerInput{Config: json.RawMessage(`{"authType":"KEY","key":"` + chosen + `"}`)}, testTypes())
	if err != nil || urlKey(t, got) != chosen {
		t.Fatalf("set key: %+v, %v", got, err)
	}
	// Rotated on purpose.
	rotated, err := r.RotateTriggerKey(ctx, "f", "url")
	if err != nil {
		t.Fatal(err)
	}
	if k := urlKey(t, rotated); k == chosen || len(k) != 43 {
		t.Errorf("rotated key %q, want a new generated one", k)
	}
	// NONE drops the key; KEY again gets a new one, not the old.
	got, err = r.UpdateTrigger(ctx, "f", "url", TriggerInput{Config: json.RawMessage(`{"authType":"NONE"}`)}, testTypes())
	if err != nil || urlKey(t, got) != "" {
		t.Fatalf("to NONE: %s, %v", got.Config, err)
	}
	got, err = r.UpdateTrigger(ctx, "f", "url", TriggerInput{Config: keyCfg}, testTypes())
	if k := urlKey(t, got); err != nil || k == "" || k == urlKey(t, rotated) {
		t.Errorf("back to KEY: key %q, %v; want a new one", k, err)
	}
}

func TestRotateTriggerKeyRefusals(t *testing.T) {
	r := newTriggerRegistry(t)
	ctx := t.Context()
	if _, err := r.AddTrigger(ctx, "f", TriggerInput{Name: "pub", Type: ptr("http"), Config: json.RawMessage(`{"authType":"NONE"}`)}, testTypes()); err != nil {
		t.Fatal(err)
	}
	if _, err := r.AddTrigger(ctx, "f", TriggerInput{Name: "q", Type: ptr("fake")}, testTypes()); err != nil {
		t.Fatal(err)
	}
	before, _ := r.Get(ctx, "f")
	for _, tc := range []struct {
		fn, trigger string
		want        error
		msg         string
	}{
		{"f", "pub", nimbus.ErrInvalid, "authType NONE: it has no key"},
		{"f", "q", nimbus.ErrInvalid, "of type fake"},
		{"f", "nope", nimbus.ErrNotFound, "no trigger named nope"},
		{"nope", "pub", nimbus.ErrNotFound, "nope"},
	} {
		_, err := r.RotateTriggerKey(ctx, tc.fn, tc.trigger)
		if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("RotateTriggerKey(%s, %s) = %v, want %v mentioning %q", tc.fn, tc.trigger, err, tc.want, tc.msg)
		}
	}
	after, _ := r.Get(ctx, "f")
	for i := range after.Triggers {
		if a, b := after.Triggers[i], before.Triggers[i]; string(a.Config) != string(b.Config) || !a.LastModified.Equal(b.LastModified) {
			t.Errorf("a refused rotation changed trigger %s: %+v, was %+v", a.Name, a, b)
		}
	}
}

// TestTriggerQualifier: a trigger invokes a version or an alias that
// exists; a function URL an alias only, one per alias, and it goes away
// with its alias while other triggers of the alias stay.
func TestTriggerQualifier(t *testing.T) {
	r := openTestRegistry(t, Config{KV: mem.NewKV(), Versions: mem.NewKV(), Blobs: mem.NewBlobs(), Code: readyCode{},
		Runtimes: []string{"python3.11"}, Limits: codepkg.DefaultLimits()})
	ctx := t.Context()
	rt, h := "python3.11", "app.handler"
	if _, err := r.Create(ctx, FunctionInput{Name: "f", Runtime: &rt, Handler: &h}, testZip(t)); err != nil {
		t.Fatal(err)
	}
	waitSettled(t, r, "f")
	if _, err := r.Publish(ctx, "f", PublishInput{}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.CreateAlias(ctx, "f", "live", AliasInput{FunctionVersion: ptr("1")}); err != nil {
		t.Fatal(err)
	}
	url := json.RawMessage(`{"authType":"NONE"}`)
	tests := []struct {
		name, typ, qualifier string
		want                 error
	}{
		{"alias", "fake", "live", nil},
		{"version", "fake", "1", nil},
		{"$LATEST", "fake", "$LATEST", nil},
		{"missing version", "fake", "9", nimbus.ErrNotFound},
		{"missing alias", "fake", "gone", nimbus.ErrNotFound},
		{"bad characters", "fake", "a.b", nimbus.ErrValidation},
		{"url of an alias", "http", "live", nil},
		{"url of a version", "http", "1", nimbus.ErrValidation},
		{"url of a missing alias", "http", "gone", nimbus.ErrNotFound},
		{"second url of an alias", "http", "live", nimbus.ErrConflict},
		{"url of the function", "http", "", nil},
	}
	for i, tt := range tests {
		in := TriggerInput{Name: fmt.Sprintf("t%d", i), Type: ptr(tt.typ), Qualifier: ptr(tt.qualifier)}
		if tt.typ == "http" {
			in.Config = url
		}
		got, err := r.AddTrigger(ctx, "f", in, testTypes())
		if !errors.Is(err, tt.want) {
			t.Errorf("%s: got %v, want %v", tt.name, err, tt.want)
		}
		if err == nil && tt.qualifier == "$LATEST" && got.Qualifier != "" {
			t.Errorf("%s: stored qualifier %q, want \"\"", tt.name, got.Qualifier)
		}
	}
	if _, err := r.UpdateTrigger(ctx, "f", "t0", TriggerInput{Qualifier: ptr("9")}, testTypes()); !errors.Is(err, nimbus.ErrNotFound) {
		t.Errorf("update to a missing version: got %v, want ErrNotFound", err)
	}
	if err := r.DeleteAlias(ctx, "f", "live"); err != nil {
		t.Fatal(err)
	}
	fn, err := r.Get(ctx, "f")
	if err != nil {
		t.Fatal(err)
	}
	var left []string
	for _, tr := range fn.Triggers {
		left = append(left, tr.Name+"@"+tr.Qualifier)
	}
	if want := []string{"t0@live", "t1@1", "t2@", "t10@"}; !slices.Equal(left, want) {
		t.Errorf("triggers after DeleteAlias: got %v, want %v (the alias's URL deleted, its other triggers kept)", left, want)
	}
}
