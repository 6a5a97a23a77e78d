package registry

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/store"
	"github.com/nimbus-serverless/nimbus/internal/store/mem"
)

// listingKV counts Keys calls besides Gets.
type listingKV struct {
	countingKV
	keys atomic.Int64
}

func (l *listingKV) Keys(ctx context.Context) ([]string, error) {
	l.keys.Add(1)
	return l.KV.Keys(ctx)
}

func createNamed(t *testing.T, r *Registry, names ...string) {
	t.Helper()
	rt, h := "python3.11", "app.handler"
	for _, name := range names {
		if _, err := r.Create(t.Context(), FunctionInput{Name: name, Runtime: &rt, Handler: &h}, testZip(t)); err != nil {
			t.Fatal(err)
		}
	}
}

// pageNames is Page's names and more flag.
func pageNames(t *testing.T, r *Registry, after string, limit int) ([]string, bool) {
	t.Helper()
	fns, more, err := r.Page(t.Context(), after, limit)
	if err != nil {
		t.Fatalf("Page(%q, %d): %v", after, limit, err)
	}
	names := make([]string, len(fns))
	for i, fn := range fns {
		names[i] = fn.Name
	}
	return names, more
}

func TestPage(t *testing.T) {
	kv := &listingKV{countingKV: countingKV{KV: mem.NewKV()}}
	r := newTestRegistry(t, kv, mem.NewBlobs())
	names := []string{"a", "b", "B", "c-1", "c_2", "d", "e9"}
	shuffled := slices.Clone(names)
	rand.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	createNamed(t, r, shuffled...)
	slices.Sort(names) // B, a, b, c-1, c_2, d, e9
	// The creates' preparations write the functions Active (reading the
	// store): let them end before counting what the pages read.
	waitFor(t, func() bool {
		for _, name := range names {
			if fn, err := r.Get(t.Context(), name); err != nil || fn.State != nimbus.StateActive {
				return false
			}
		}
		return true
	})
	gets, keys := kv.gets.Load(), kv.keys.Load()
	tests := []struct {
		after string
		limit int
		want  []string
		more  bool
	}{
		{"", 3, names[:3], true},
		{"b", 3, names[3:6], true},
		{"d", 3, names[6:], false},
		{"c-0", 2, names[3:5], true}, // a marker that names no function
		{"e9", 3, []string{}, false},
		{"zzz", 3, []string{}, false},
		{"", 7, names, false},
		{"", 10000, names, false},
		{"c_2", 1, []string{"d"}, true},
	}
	for _, tt := range tests {
		got, more := pageNames(t, r, tt.after, tt.limit)
		if !slices.Equal(got, tt.want) || more != tt.more {
			t.Errorf("Page(%q, %d) = %v, more %t; want %v, more %t", tt.after, tt.limit, got, more, tt.want, tt.more)
		}
	}
	if kv.gets.Load() != gets || kv.keys.Load() != keys {
		t.Errorf("pages read the store: %d gets, %d key listings", kv.gets.Load()-gets, kv.keys.Load()-keys)
	}
	// A delete and a create show at once on this node.
	if err := r.Delete(t.Context(), "c-1"); err != nil {
		t.Fatal(err)
	}
	createNamed(t, r, "c-0")
	if got, _ := pageNames(t, r, "b", 3); !slices.Equal(got, []string{"c-0", "c_2", "d"}) {
		t.Errorf("after a delete and a create: %v", got)
	}
}

// TestOpenLoads: a registry opened on a bucket lists what is there at once,
// and hears of other nodes' creates and deletes through the watch.
func TestOpenLoads(t *testing.T) {
	shared, blobs := mem.NewKV(), mem.NewBlobs()
	a := newTestRegistry(t, shared, blobs)
	var names []string
	for i := range 300 {
		names = append(names, fmt.Sprintf("f%03d", i))
	}
	createNamed(t, a, names...)
	b := newTestRegistry(t, shared, blobs)
	got, err := b.List(t.Context())
	if err != nil || len(got) != len(names) {
		t.Fatalf("List on a new registry: %d functions (%v), want %d", len(got), err, len(names))
	}
	inUse, err := b.CodeInUse(t.Context())
	if err != nil || len(inUse) != 1 || !inUse[got[0].CodeSHA256] {
		t.Errorf("CodeInUse = %v (%v), want the one package", inUse, err)
	}
	createNamed(t, a, "g")
	if err := a.Delete(t.Context(), "f000"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool {
		got, _ := pageNames(t, b, "", 1)
		last, _ := pageNames(t, b, "f299", 5)
		return slices.Equal(got, []string{"f001"}) && slices.Equal(last, []string{"g"})
	})
}

// cuttableKV is a KV whose watch the test can end, and whose next watch
// waits for the test.
type cuttableKV struct {
	store.KV
	mu   sync.Mutex
	cut  context.CancelFunc
	gate chan struct{} // a Watch waits until it is closed
}

func (c *cuttableKV) Watch(ctx context.Context) (<-chan store.Entry, error) {
	c.mu.Lock()
	gate := c.gate
	c.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	c.mu.Lock()
	c.cut = cancel
	c.mu.Unlock()
	return c.KV.Watch(ctx)
}

// cutWatch ends the current watch; the next one waits for the returned
// function to be called.
func (c *cuttableKV) cutWatch() (resume func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	gate := make(chan struct{})
	c.gate = gate
	c.cut()
	return func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		c.gate = nil
		close(gate)
	}
}

// TestWatchRestartReloads: changes made while a node's watch was down
// (another node's deletes, updates and creates) are in its listing and
// reach its listeners once the watch is back; meanwhile the listing reads
// the store.
func TestWatchRestartReloads(t *testing.T) {
	shared, blobs := mem.NewKV(), mem.NewBlobs()
	a := newTestRegistry(t, shared, blobs)
	createNamed(t, a, "f1", "f2")
	kv := &cuttableKV{KV: shared}
	b := newTestRegistry(t, kv, blobs)
	heard := hearing(b)
	resume := kv.cutWatch()
	waitFor(t, func() bool { return !b.cache.complete() })
	changeAway(t, a)
	if got, _ := pageNames(t, b, "", 10); !slices.Equal(got, []string{"f2", "f3"}) {
		t.Errorf("listing while the watch is down: %v, want [f2 f3]", got)
	}
	resume()
	waitFor(t, b.cache.complete)
	checkChanged(t, b, "after the watch is back")
	if got := heard(); !got["f1"] || !got["f2"] || !got["f3"] {
		t.Errorf("listeners did not hear of f1, f2 and f3, changed while the watch was down (heard %v)", got)
	}
}

// changeAway makes, on a, the changes another node misses while away:
// f1 deleted, f2's memory set to 512, f3 created.
func changeAway(t *testing.T, a *Registry) {
	t.Helper()
	if err := a.Delete(t.Context(), "f1"); err != nil {
		t.Fatal(err)
	}
	mem512 := 512
	if _, err := a.UpdateConfig(t.Context(), "f2", FunctionInput{MemoryMB: &mem512}, ""); err != nil {
		t.Fatal(err)
	}
	createNamed(t, a, "f3")
}

// checkChanged checks that b shows changeAway's changes.
func checkChanged(t *testing.T, b *Registry, when string) {
	t.Helper()
	if got, _ := pageNames(t, b, "", 10); !slices.Equal(got, []string{"f2", "f3"}) {
		t.Errorf("listing %s: %v, want [f2 f3]", when, got)
	}
	if fn, err := b.Get(t.Context(), "f2"); err != nil || fn.MemoryMB != 512 {
		t.Errorf("f2 %s: %+v, %v; want memory 512", when, fn, err)
	}
	if _, err := b.Get(t.Context(), "f1"); !errors.Is(err, nimbus.ErrNotFound) {
		t.Errorf("f1 %s: %v, want ErrNotFound", when, err)
	}
}

// hearing records the names b's listeners are told of; heard returns them.
func hearing(b *Registry) (heard func() map[string]bool) {
	var mu sync.Mutex
	names := map[string]bool{}
	b.OnChange(func(name string) {
		mu.Lock()
		names[name] = true
		mu.Unlock()
	})
	return func() map[string]bool {
		mu.Lock()
		defer mu.Unlock()
		return maps.Clone(names)
	}
}

// failingKeysKV fails every key listing.
type failingKeysKV struct{ store.KV }

func (failingKeysKV) Keys(context.Context) ([]string, error) {
	return nil, errors.New("store unavailable")
}

// TestOpenFailsWithoutLoad: a registry that cannot load the functions does
// not open (it would list nothing), and leaves no goroutine behind.
func TestOpenFailsWithoutLoad(t *testing.T) {
	_, err := Open(t.Context(), Config{KV: failingKeysKV{mem.NewKV()}, Blobs: mem.NewBlobs(), Code: readyCode{}, Key: testKey})
	if err == nil || !strings.Contains(err.Error(), "load functions") || !strings.Contains(err.Error(), "store unavailable") {
		t.Fatalf("Open with a failing store: %v, want the load's error", err)
	}
}

// behindKV is a member's own copy of the bucket, behind while frozen is
// set: its reads answer as the bucket was when it was frozen; its watch
// brings only the changes made after it began, as any watch.
type behindKV struct {
	store.KV
	mu     sync.Mutex
	frozen map[string]store.Entry
}

func (b *behindKV) freeze(t *testing.T) {
	t.Helper()
	names, err := b.KV.Keys(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	frozen := map[string]store.Entry{}
	for _, n := range names {
		if frozen[n], err = b.KV.Get(t.Context(), n); err != nil {
			t.Fatal(err)
		}
	}
	b.mu.Lock()
	b.frozen = frozen
	b.mu.Unlock()
}

func (b *behindKV) catchUp() {
	b.mu.Lock()
	b.frozen = nil
	b.mu.Unlock()
}

func (b *behindKV) Keys(ctx context.Context) ([]string, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.frozen == nil {
		return b.KV.Keys(ctx)
	}
	names := make([]string, 0, len(b.frozen))
	for n := range b.frozen {
		names = append(names, n)
	}
	slices.Sort(names)
	return names, nil
}

func (b *behindKV) Get(ctx context.Context, key string) (store.Entry, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.frozen == nil {
		return b.KV.Get(ctx, key)
	}
	if e, ok := b.frozen[key]; ok {
		return e, nil
	}
	return store.Entry{}, fmt.Errorf("kv get %q: %w", key, nimbus.ErrNotFound)
}

// TestResyncAfterCatchUp: a member that started on a copy of the bucket
// still behind (it restarted while another node deleted, updated and
// created functions) serves what it read until Resync, called once its
// copy has caught up, reads every function again; its listeners hear of
// the changes.
func TestResyncAfterCatchUp(t *testing.T) {
	shared, blobs := mem.NewKV(), mem.NewBlobs()
	a := newTestRegistry(t, shared, blobs)
	createNamed(t, a, "f1", "f2")
	kv := &behindKV{KV: shared}
	kv.freeze(t) // what the member's copy holds when it restarts
	changeAway(t, a)
	settled := func(name string) bool { // no write of A's left to come
		fn, err := a.Get(t.Context(), name)
		return err == nil && fn.State == nimbus.StateActive && fn.LastUpdateStatus == nimbus.UpdateSuccessful
	}
	waitFor(t, func() bool { return settled("f2") && settled("f3") })

	b := newTestRegistry(t, kv, blobs)
	heard := hearing(b)
	if got, _ := pageNames(t, b, "", 10); !slices.Equal(got, []string{"f1", "f2"}) {
		t.Fatalf("listing on a copy behind: %v, want the copy's [f1 f2]: the test shows nothing", got)
	}
	kv.catchUp()
	b.Resync()
	checkChanged(t, b, "as soon as Resync returned") // the store's, as the cache reloads
	waitFor(t, b.cache.complete)
	checkChanged(t, b, "after the reload")
	waitFor(t, func() bool {
		got := heard()
		return got["f1"] && got["f2"] && got["f3"]
	})
}
