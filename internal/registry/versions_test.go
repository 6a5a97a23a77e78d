package registry

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/codepkg"
	"github.com/nimbus-serverless/nimbus/internal/store/mem"
)

// waitSettled waits until function name is Active with its update done.
func waitSettled(t *testing.T, r *Registry, name string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		fn, err := r.Get(t.Context(), name)
		if err == nil && fn.State == nimbus.StateActive && fn.LastUpdateStatus != nimbus.UpdateInProgress {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("function %s not settled: %+v %v", name, fn, err)
		}
	}
}

// openPublished opens a registry on cfg with function f, its version 1
// and alias live -> 1.
func openPublished(t *testing.T, cfg Config) *Registry {
	t.Helper()
	r := openTestRegistry(t, cfg)
	rt, h := "python3.11", "app.handler"
	if _, err := r.Create(t.Context(), FunctionInput{Name: "f", Runtime: &rt, Handler: &h}, testZip(t)); err != nil {
		t.Fatal(err)
	}
	waitSettled(t, r, "f")
	if _, err := r.Publish(t.Context(), "f", PublishInput{}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.CreateAlias(t.Context(), "f", "live", AliasInput{FunctionVersion: new("1")}); err != nil {
		t.Fatal(err)
	}
	return r
}

// TestPublishConcurrently: two registries on one store (two nodes)
// publishing at once, each after a change of its own, never give two
// versions one number, and every version's snapshot is the configuration
// it was published from.
func TestPublishConcurrently(t *testing.T) {
	kv, versions, blobs := mem.NewKV(), mem.NewKV(), mem.NewBlobs()
	cfg := Config{KV: kv, Versions: versions, Blobs: blobs, Code: readyCode{}, Runtimes: []string{"python3.11"}, Limits: codepkg.DefaultLimits()}
	a, b := openTestRegistry(t, cfg), openTestRegistry(t, cfg)
	rt, h := "python3.11", "app.handler"
	if _, err := a.Create(t.Context(), FunctionInput{Name: "f", Runtime: &rt, Handler: &h}, testZip(t)); err != nil {
		t.Fatal(err)
	}
	waitSettled(t, a, "f")
	var wg sync.WaitGroup
	published := make(chan *nimbus.Function, 40)
	for i := range 20 {
		r := []*Registry{a, b}[i%2]
		wg.Go(func() {
			desc := fmt.Sprintf("change %d", i)
			if _, err := r.UpdateConfig(context.Background(), "f", FunctionInput{Description: &desc}, ""); err != nil {
				t.Errorf("update: %v", err)
				return
			}
			v, err := r.Publish(context.Background(), "f", PublishInput{})
			if err != nil {
				t.Errorf("publish: %v", err)
				return
			}
			published <- v
		})
	}
	wg.Wait()
	close(published)
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		fa, _ := a.Get(t.Context(), "f")
		fb, _ := b.Get(t.Context(), "f")
		if len(fa.Versions) == len(fb.Versions) || time.Now().After(deadline) {
			break
		}
	}
	fn, err := a.Get(t.Context(), "f")
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int]bool{}
	for _, ref := range fn.Versions {
		if seen[ref.Number] {
			t.Fatalf("version %d listed twice: %+v", ref.Number, fn.Versions)
		}
		seen[ref.Number] = true
		v, err := b.Version(t.Context(), "f", ref.Number)
		if err != nil {
			t.Fatalf("version %d: %v", ref.Number, err)
		}
		if v.Version != strconv.Itoa(ref.Number) || v.CodeSHA256 != ref.CodeSHA256 || len(v.Versions) != 0 || len(v.Aliases) != 0 {
			t.Errorf("version %d's snapshot: %+v", ref.Number, v)
		}
	}
	for v := range published {
		n, _ := strconv.Atoi(v.Version)
		if !seen[n] {
			t.Errorf("Publish returned version %s, which the function does not list", v.Version)
		}
		got, err := a.Version(t.Context(), "f", n)
		if err != nil || got.Description != v.Description {
			t.Errorf("version %d read back %q, published %q (%v)", n, got.Description, v.Description, err)
		}
	}
	if len(seen) == 0 || fn.LastVersion < len(seen) {
		t.Errorf("LastVersion %d, %d versions", fn.LastVersion, len(seen))
	}
}
