package registry

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/codepkg"
	"github.com/nimbus-serverless/nimbus/internal/seal"
	"github.com/nimbus-serverless/nimbus/internal/store"
	"github.com/nimbus-serverless/nimbus/internal/store/mem"
	natsstore "github.com/nimbus-serverless/nimbus/internal/store/nats"
	"github.com/nimbus-serverless/nimbus/internal/testenv"
)

// testKey is the node key of the package's tests.
var testKey = mustKey()

func mustKey() *seal.Key {
	k, err := seal.Parse(seal.Generate())
	if err != nil {
		panic(err)
	}
	return k
}

// The secrets the tests store, each unique to the run.
var (
	envSecret     = fmt.Sprintf("env-secret-%d-%d", os.Getpid(), time.Now().UnixNano())
	triggerSecret = fmt.Sprintf("trigger-secret-%d-%d", os.Getpid(), time.Now().UnixNano())
	destSecret    = fmt.Sprintf("dest-secret-%d-%d", os.Getpid(), time.Now().UnixNano())
)

// secretStores are the stores the sealing tests run on: in memory, and
// an embedded JetStream whose files the test can read (dir).
func secretStores(t *testing.T) map[string]func(t *testing.T) (kv store.KV, blobs store.Blobs, dir string) {
	return map[string]func(t *testing.T) (store.KV, store.Blobs, string){
		"mem": func(t *testing.T) (store.KV, store.Blobs, string) {
			st := mem.New()
			kv, _ := st.KV(t.Context(), "functions")
			return kv, st.Blobs(), ""
		},
		"nats": func(t *testing.T) (store.KV, store.Blobs, string) {
			dir := t.TempDir()
			st, err := natsstore.Open(t.Context(), natsstore.Config{DataDir: dir})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = st.Close(context.Background()) })
			kv, err := st.KV(t.Context(), "functions")
			if err != nil {
				t.Fatal(err)
			}
			return kv, st.Blobs(), dir
		},
	}
}

// createWithSecrets creates function name with an environment variable,
// a trigger config and a destination secret holding the run's secrets.
func createWithSecrets(t *testing.T, r *Registry, name string) {
	t.Helper()
	ctx := t.Context()
	rt, h := "python3.11", "app.handler"
	env := map[string]string{"DB_PASSWORD": envSecret, "PLAIN": "visible-value"}
	if _, err := r.Create(ctx, FunctionInput{Name: name, Runtime: &rt, Handler: &h, Environment: &env}, testZip(t)); err != nil {
		t.Fatal(err)
	}
	cfg := json.RawMessage(`{"url":"amqp://user:` + triggerSecret + `@127.0.0.1:1/"}`)
	if _, err := r.AddTrigger(ctx, name, TriggerInput{Name: "t1", Type: ptr("fake"), Config: cfg}, testTypes()); err != nil {
		t.Fatal(err)
	}
	secret := destSecret
	if _, err := r.SetEventInvokeConfig(ctx, name, "", func(*nimbus.EventInvokeConfig) (*nimbus.EventInvokeConfig, error) {
		return &nimbus.EventInvokeConfig{DestinationSecret: secret}, nil
	}); err != nil {
		t.Fatal(err)
	}
}

// checkClear fails unless fn holds the run's secrets in clear.
func checkClear(t *testing.T, fn *nimbus.Function) {
	t.Helper()
	if got := fn.Environment["DB_PASSWORD"]; got != envSecret {
		t.Errorf("environment DB_PASSWORD = %q, want the secret", got)
	}
	if len(fn.Triggers) != 1 || !strings.Contains(string(fn.Triggers[0].Config), triggerSecret) {
		t.Errorf("triggers = %+v, want t1 with its secret in its config", fn.Triggers)
	}
	if fn.EventInvoke == nil || fn.EventInvoke.DestinationSecret != destSecret {
		t.Errorf("event invoke config = %+v, want the destination secret", fn.EventInvoke)
	}
}

func TestSecretsSealedAtRest(t *testing.T) {
	for name, open := range secretStores(t) {
		t.Run(name, func(t *testing.T) {
			kv, blobs, dir := open(t)
			r := newTestRegistry(t, kv, blobs)
			createWithSecrets(t, r, "f")
			fn, err := r.Get(t.Context(), "f")
			if err != nil {
				t.Fatal(err)
			}
			checkClear(t, fn)

			e, err := kv.Get(t.Context(), "f")
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range []string{envSecret, triggerSecret, destSecret, "DB_PASSWORD"} {
				if bytes.Contains(e.Value, []byte(s)) {
					t.Errorf("stored record holds %q in clear: %s", s, e.Value)
				}
			}
			if !bytes.Contains(e.Value, []byte(`"environment":"`+seal.Prefix)) {
				t.Errorf("stored environment is not sealed: %s", e.Value)
			}

			// Another node with the same key reads them (load and watch).
			other := newTestRegistry(t, kv, blobs)
			fn2, err := other.Get(t.Context(), "f")
			if err != nil {
				t.Fatal(err)
			}
			checkClear(t, fn2)
			env := map[string]string{"DB_PASSWORD": envSecret + "-2"}
			if _, err := r.UpdateConfig(t.Context(), "f", FunctionInput{Environment: &env}, ""); err != nil {
				t.Fatal(err)
			}
			waitFor(t, func() bool {
				fn, err := other.Get(t.Context(), "f")
				return err == nil && fn.Environment["DB_PASSWORD"] == envSecret+"-2"
			})

			if dir != "" {
				testenv.CheckFilesLack(t, dir, envSecret, triggerSecret, destSecret)
			}
		})
	}
}

func TestSealedValueBoundToFunction(t *testing.T) {
	kv := mem.NewKV()
	r := newTestRegistry(t, kv, mem.NewBlobs())
	createWithSecrets(t, r, "a")
	rt, h := "python3.11", "app.handler"
	if _, err := r.Create(t.Context(), FunctionInput{Name: "b", Runtime: &rt, Handler: &h}, testZip(t)); err != nil {
		t.Fatal(err)
	}
	// Copy a's sealed environment into b's record.
	ea, _ := kv.Get(t.Context(), "a")
	eb, _ := kv.Get(t.Context(), "b")
	var sa, sb map[string]json.RawMessage
	_ = json.Unmarshal(ea.Value, &sa)
	_ = json.Unmarshal(eb.Value, &sb)
	sb["environment"] = sa["environment"]
	b, _ := json.Marshal(sb)
	if _, err := kv.Put(t.Context(), "b", b); err != nil {
		t.Fatal(err)
	}
	var fn *nimbus.Function
	waitFor(t, func() bool {
		fn, _ = r.Get(t.Context(), "b")
		return fn != nil && fn.State == nimbus.StateFailed
	})
	if fn.Environment != nil || !strings.Contains(fn.StateReason, "environment") {
		t.Fatalf("copied environment: %+v", fn)
	}
	if a, _ := r.Get(t.Context(), "a"); a.State == nimbus.StateFailed {
		t.Fatalf("a failed too: %s", a.StateReason)
	}
}

func TestWrongNodeKey(t *testing.T) {
	kv, blobs := mem.NewKV(), mem.NewBlobs()
	r := newTestRegistry(t, kv, blobs)
	createWithSecrets(t, r, "f")
	_, err := Open(t.Context(), Config{KV: kv, Blobs: blobs, Code: readyCode{}, Runtimes: []string{"python3.11"},
		Limits: codepkg.DefaultLimits(), Key: mustKey()})
	if err == nil || !errors.Is(err, seal.ErrWrongKey) || !strings.Contains(err.Error(), "node key") ||
		!strings.Contains(err.Error(), "function f") {
		t.Fatalf("Open with another key: %v, want an error naming the node key and the function", err)
	}
	if _, err := Open(t.Context(), Config{KV: kv, Blobs: blobs, Code: readyCode{}}); err == nil {
		t.Fatal("Open without a key succeeded")
	}
}

func TestDamagedSealedValue(t *testing.T) {
	kv, blobs := mem.NewKV(), mem.NewBlobs()
	r := newTestRegistry(t, kv, blobs)
	createWithSecrets(t, r, "f")
	createWithSecrets(t, r, "ok")
	e, _ := kv.Get(t.Context(), "f")
	i := bytes.Index(e.Value, []byte(`"environment":"`+seal.Prefix))
	if i < 0 {
		t.Fatal("found no sealed environment to damage")
	}
	damaged := bytes.Clone(e.Value)
	j := i + len(`"environment":"`+seal.Prefix) + 30 // in the ciphertext, past the key id and nonce
	damaged[j] = map[bool]byte{true: 'B', false: 'A'}[damaged[j] == 'A']
	if _, err := kv.Put(t.Context(), "f", damaged); err != nil {
		t.Fatal(err)
	}

	var logs testenv.Buffer
	r2 := openTestRegistry(t, Config{KV: kv, Blobs: blobs, Code: readyCode{}, Runtimes: []string{"python3.11"},
		Limits: codepkg.DefaultLimits(), Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	fn, err := r2.Get(t.Context(), "f")
	if err != nil {
		t.Fatal(err)
	}
	if fn.State != nimbus.StateFailed || !strings.Contains(fn.StateReason, "does not open") || fn.Environment != nil {
		t.Fatalf("damaged function: state %s (%s), env %v", fn.State, fn.StateReason, fn.Environment)
	}
	if !strings.Contains(logs.String(), "function=f") {
		t.Errorf("the damaged function is not logged: %s", logs.String())
	}
	for _, s := range []string{envSecret, triggerSecret, destSecret} {
		if strings.Contains(logs.String(), s) {
			t.Errorf("log holds secret %q", s)
		}
	}
	if _, err := r2.UpdateConfig(t.Context(), "f", FunctionInput{}, ""); !errors.Is(err, nimbus.ErrConflict) {
		t.Fatalf("update of a damaged function: %v, want ErrConflict", err)
	}
	ok, err := r2.Get(t.Context(), "ok")
	if err != nil {
		t.Fatal(err)
	}
	checkClear(t, ok)
	if err := r2.Delete(t.Context(), "f"); err != nil {
		t.Fatalf("delete a damaged function: %v", err)
	}
}

func TestClearRecordsSealedAtLoad(t *testing.T) {
	kv, blobs := mem.NewKV(), mem.NewBlobs()
	// A record as a node before sealing wrote it.
	old := nimbus.Function{Name: "f", Runtime: "python3.11", Handler: "app.handler", MemoryMB: 128, Timeout: 3,
		Environment: map[string]string{"DB_PASSWORD": envSecret}, RevisionID: "rev-1",
		State: nimbus.StateActive, LastUpdateStatus: nimbus.UpdateSuccessful,
		EventInvoke: &nimbus.EventInvokeConfig{DestinationSecret: destSecret},
		Triggers: []nimbus.Trigger{{ID: "id1", Name: "t1", Type: "fake", Enabled: true,
			Config: json.RawMessage(`{"url":"amqp://user:` + triggerSecret + `@127.0.0.1:1/"}`)}}}
	b, _ := json.Marshal(old)
	if _, err := kv.Create(t.Context(), "f", b); err != nil {
		t.Fatal(err)
	}
	r := newTestRegistry(t, kv, blobs)
	fn, err := r.Get(t.Context(), "f")
	if err != nil {
		t.Fatal(err)
	}
	checkClear(t, fn)
	if fn.RevisionID != "rev-1" || fn.State != nimbus.StateActive {
		t.Fatalf("resealing changed the function: %+v", fn)
	}
	e, _ := kv.Get(t.Context(), "f")
	for _, s := range []string{envSecret, triggerSecret, destSecret} {
		if bytes.Contains(e.Value, []byte(s)) {
			t.Errorf("record still holds %q after the load: %s", s, e.Value)
		}
	}
}
