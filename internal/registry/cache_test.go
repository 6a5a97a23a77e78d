package registry

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/codepkg"
	"github.com/nimbus-serverless/nimbus/internal/store"
	"github.com/nimbus-serverless/nimbus/internal/store/mem"
)

// countingKV counts the reads that reach the store.
type countingKV struct {
	store.KV
	gets atomic.Int64
}

func (c *countingKV) Get(ctx context.Context, key string) (store.Entry, error) {
	c.gets.Add(1)
	return c.KV.Get(ctx, key)
}

type readyCode struct{}

func (readyCode) Prepare(context.Context, string, []byte) (string, error) { return "/code", nil }
func (readyCode) Ensure(context.Context, string) (string, error)          { return "/code", nil }

func newTestRegistry(t *testing.T, kv store.KV, blobs store.Blobs) *Registry {
	t.Helper()
	return openTestRegistry(t, Config{KV: kv, Blobs: blobs, Code: readyCode{}, Runtimes: []string{"python3.11"}, Limits: codepkg.DefaultLimits()})
}

// openTestRegistry opens a registry and closes it when the test ends.
func openTestRegistry(t *testing.T, cfg Config) *Registry {
	t.Helper()
	if cfg.Key == nil {
		cfg.Key = testKey
	}
	r, err := Open(t.Context(), cfg)
	if err != nil {
		t.Fatalf("open registry: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := r.Close(ctx); err != nil {
			t.Errorf("close registry: %v", err)
		}
	})
	return r
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached in 5s")
		}
		time.Sleep(time.Millisecond)
	}
}

func TestCacheAcrossNodes(t *testing.T) {
	shared := mem.NewKV()
	blobs := mem.NewBlobs()
	kvA, kvB := &countingKV{KV: shared}, &countingKV{KV: shared}
	a, b := newTestRegistry(t, kvA, blobs), newTestRegistry(t, kvB, blobs)
	var changedOnB atomic.Int64
	b.OnChange(func(string) { changedOnB.Add(1) })

	rt, h := "python3.11", "app.handler"
	zip := testZip(t)
	if _, err := a.Create(t.Context(), FunctionInput{Name: "f", Runtime: &rt, Handler: &h}, zip); err != nil {
		t.Fatal(err)
	}
	// A reads its own write at once, without the store.
	before := kvA.gets.Load()
	if _, err := a.Get(t.Context(), "f"); err != nil {
		t.Fatalf("A: Get after its own create: %v", err)
	}
	if kvA.gets.Load() != before {
		t.Error("A read the store for a function it had just written")
	}
	// B sees it (and hears of it) through the watch.
	waitFor(t, func() bool { fn, err := b.Get(t.Context(), "f"); return err == nil && fn.Name == "f" })
	waitFor(t, func() bool { return changedOnB.Load() > 0 })

	// An update on A reaches B's cache.
	mem512 := 512
	if _, err := a.UpdateConfig(t.Context(), "f", FunctionInput{MemoryMB: &mem512}, ""); err != nil {
		t.Fatal(err)
	}
	if fn, _ := a.Get(t.Context(), "f"); fn.MemoryMB != 512 {
		t.Errorf("A after its update: memory %d", fn.MemoryMB)
	}
	waitFor(t, func() bool { fn, err := b.Get(t.Context(), "f"); return err == nil && fn.MemoryMB == 512 })
	hits := kvB.gets.Load()
	for range 100 {
		if _, err := b.Get(t.Context(), "f"); err != nil {
			t.Fatal(err)
		}
	}
	if kvB.gets.Load() != hits {
		t.Errorf("100 warm reads on B reached the store %d times", kvB.gets.Load()-hits)
	}

	// A delete on B: B forgets at once, A through the watch.
	if err := b.Delete(t.Context(), "f"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Get(t.Context(), "f"); !errors.Is(err, nimbus.ErrNotFound) {
		t.Errorf("B after its delete: %v, want ErrNotFound", err)
	}
	waitFor(t, func() bool { _, err := a.Get(t.Context(), "f"); return errors.Is(err, nimbus.ErrNotFound) })
}

func testZip(t *testing.T) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	w, _ := zw.Create("app.py")
	_, _ = w.Write([]byte("def handler(e, c):\n    return e\n"))
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestCreateConflictKeepsNoCode: a duplicate create stores no package, and a
// deleted function's package goes with it.
func TestCreateConflictKeepsNoCode(t *testing.T) {
	blobs := mem.NewBlobs()
	r := newTestRegistry(t, mem.NewKV(), blobs)
	rt, h := "python3.11", "app.handler"
	first := testZip(t)
	fn, err := r.Create(t.Context(), FunctionInput{Name: "f", Runtime: &rt, Handler: &h}, first)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	w, _ := zw.Create("other.py")
	_, _ = w.Write([]byte("x = 2\n"))
	_ = zw.Close()
	_, err = r.Create(t.Context(), FunctionInput{Name: "f", Runtime: &rt, Handler: &h}, buf.Bytes())
	if !errors.Is(err, nimbus.ErrConflict) {
		t.Fatalf("duplicate create: %v, want ErrConflict", err)
	}
	sum := sha256.Sum256(buf.Bytes())
	if _, err := blobs.Get(t.Context(), hex.EncodeToString(sum[:])); !errors.Is(err, nimbus.ErrNotFound) {
		t.Errorf("the duplicate's package was stored: %v", err)
	}
	if err := r.Delete(t.Context(), "f"); err != nil {
		t.Fatal(err)
	}
	if _, err := blobs.Get(t.Context(), fn.CodeSHA256); !errors.Is(err, nimbus.ErrNotFound) {
		t.Errorf("a deleted function's package is still stored: %v", err)
	}
}
