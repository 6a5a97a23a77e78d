package registry

import (
	"archive/zip"
	"bytes"
	"context"
	"errors"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/codepkg"
	"github.com/nimbus-serverless/nimbus/internal/store"
	"github.com/nimbus-serverless/nimbus/internal/store/mem"
)

// testClock is a clock the test moves.
type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *testClock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// clockBlobs is a blob store that dates blobs by the test's clock, and
// whose next deletes can be made to fail (a full disk).
type clockBlobs struct {
	*mem.Blobs
	clock *testClock
	mu    sync.Mutex
	mod   map[string]time.Time
	fails int // how many more deletes fail
}

func newClockBlobs(clock *testClock) *clockBlobs {
	return &clockBlobs{Blobs: mem.NewBlobs(), clock: clock, mod: make(map[string]time.Time)}
}

func (b *clockBlobs) Put(ctx context.Context, r io.Reader) (string, int64, error) {
	d, n, err := b.Blobs.Put(ctx, r)
	if err == nil {
		b.mu.Lock()
		if _, ok := b.mod[d]; !ok {
			b.mod[d] = b.clock.Now()
		}
		b.mu.Unlock()
	}
	return d, n, err
}

func (b *clockBlobs) Delete(ctx context.Context, digest string) error {
	b.mu.Lock()
	if b.fails > 0 {
		b.fails--
		b.mu.Unlock()
		return errors.New("no space left on device")
	}
	delete(b.mod, digest)
	b.mu.Unlock()
	return b.Blobs.Delete(ctx, digest)
}

func (b *clockBlobs) List(ctx context.Context) ([]store.BlobInfo, error) {
	infos, err := b.Blobs.List(ctx)
	b.mu.Lock()
	defer b.mu.Unlock()
	for i := range infos {
		infos[i].Modified = b.mod[infos[i].Digest]
	}
	return infos, err
}

func (b *clockBlobs) failDeletes(n int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.fails = n
}

func (b *clockBlobs) has(t *testing.T, digest string) bool {
	t.Helper()
	r, err := b.Get(t.Context(), digest)
	if err == nil {
		r.Close()
		return true
	}
	if !errors.Is(err, nimbus.ErrNotFound) {
		t.Fatal(err)
	}
	return false
}

func putBlob(t *testing.T, b store.Blobs, content string) string {
	t.Helper()
	d, _, err := b.Put(t.Context(), bytes.NewReader([]byte(content)))
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func collect(t *testing.T, r *Registry) int {
	t.Helper()
	n, err := r.CollectCode(t.Context())
	if err != nil {
		t.Fatalf("CollectCode: %v", err)
	}
	return n
}

// TestCollectCode: the package of a deleted function whose blob delete
// failed (a full disk) is deleted by the first collection once it is
// CodeMinAge old; a recent package that no function uses yet (a create in
// progress) and a package in use stay.
func TestCollectCode(t *testing.T) {
	clock := &testClock{now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	blobs := newClockBlobs(clock)
	r := openTestRegistry(t, Config{KV: mem.NewKV(), Blobs: blobs, Code: readyCode{}, Runtimes: []string{"python3.11"},
		Limits: codepkg.DefaultLimits(), Now: clock.Now})
	createNamed(t, r, "gone")
	gone, _ := r.Get(t.Context(), "gone")
	blobs.failDeletes(1)
	if err := r.Delete(t.Context(), "gone"); err != nil {
		t.Fatalf("Delete with a failing blob store: %v (the function must go all the same)", err)
	}
	if !blobs.has(t, gone.CodeSHA256) {
		t.Fatal("the failed delete removed the package: the test tests nothing")
	}
	if n := collect(t, r); n != 0 || !blobs.has(t, gone.CodeSHA256) {
		t.Errorf("a collection deleted a package stored moments ago (%d deleted)", n)
	}

	clock.add(CodeMinAge + time.Minute)
	rt, h := "python3.11", "app.handler"
	used, err := r.Create(t.Context(), FunctionInput{Name: "used", Runtime: &rt, Handler: &h}, otherZip(t))
	if err != nil {
		t.Fatal(err)
	}
	clock.add(CodeMinAge + time.Minute) // "used"'s package is old too
	uploading := putBlob(t, blobs, "a package whose function is not written yet")
	if n := collect(t, r); n != 1 {
		t.Errorf("collection deleted %d packages, want 1", n)
	}
	if blobs.has(t, gone.CodeSHA256) {
		t.Error("the package of the deleted function is still stored after a collection")
	}
	if !blobs.has(t, used.CodeSHA256) {
		t.Error("a collection deleted a package in use")
	}
	if !blobs.has(t, uploading) {
		t.Error("a collection deleted a package stored moments ago")
	}
}

// TestCollectCodeSkipsHeld: an old package that a create of this node is
// storing again (same content) is not deleted until the create is done.
func TestCollectCodeSkipsHeld(t *testing.T) {
	clock := &testClock{now: time.Now()}
	blobs := newClockBlobs(clock)
	r := openTestRegistry(t, Config{KV: mem.NewKV(), Blobs: blobs, Code: readyCode{}, Runtimes: []string{"python3.11"},
		Limits: codepkg.DefaultLimits(), Now: clock.Now})
	d := putBlob(t, blobs, "old content")
	clock.add(2 * CodeMinAge)
	release := r.holdCode(d)
	if n := collect(t, r); n != 0 || !blobs.has(t, d) {
		t.Errorf("a collection deleted a package being stored (%d deleted)", n)
	}
	release()
	if n := collect(t, r); n != 1 || blobs.has(t, d) {
		t.Errorf("after the create: %d deleted, want the unused package", n)
	}
}

// TestCollectCodeReportsFailures: a delete that fails again is reported,
// and the others go on.
func TestCollectCodeReportsFailures(t *testing.T) {
	clock := &testClock{now: time.Now()}
	blobs := newClockBlobs(clock)
	r := openTestRegistry(t, Config{KV: mem.NewKV(), Blobs: blobs, Code: readyCode{}, Limits: codepkg.DefaultLimits(), Now: clock.Now})
	putBlob(t, blobs, "one")
	putBlob(t, blobs, "two")
	clock.add(2 * CodeMinAge)
	blobs.failDeletes(1)
	n, err := r.CollectCode(t.Context())
	if n != 1 || err == nil {
		t.Errorf("CollectCode with one failing delete: %d deleted, error %v; want 1 and an error", n, err)
	}
	if n := collect(t, r); n != 1 {
		t.Errorf("the next collection deleted %d, want the one left", n)
	}
}

// TestSharedCodeStays: two functions with one package; deleting one keeps
// the package, deleting both drops it.
func TestSharedCodeStays(t *testing.T) {
	blobs := mem.NewBlobs()
	r := newTestRegistry(t, mem.NewKV(), blobs)
	createNamed(t, r, "a", "b")
	fn, _ := r.Get(t.Context(), "a")
	if err := r.Delete(t.Context(), "a"); err != nil {
		t.Fatal(err)
	}
	if _, err := blobs.Get(t.Context(), fn.CodeSHA256); err != nil {
		t.Fatalf("the package of b went with a: %v", err)
	}
	if err := r.Delete(t.Context(), "b"); err != nil {
		t.Fatal(err)
	}
	if _, err := blobs.Get(t.Context(), fn.CodeSHA256); !errors.Is(err, nimbus.ErrNotFound) {
		t.Errorf("the package of two deleted functions is still stored: %v", err)
	}
}

func otherZip(t *testing.T) []byte {
	t.Helper()
	return zipOf(t, "other.py", "x = 1\n")
}

func zipOf(t *testing.T, name, content string) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	w, err := zw.Create(name)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte(content)); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestCollectReplacedCode: the package a code update replaced, which
// nothing deleted before the collection, goes once it is old enough.
func TestCollectReplacedCode(t *testing.T) {
	clock := &testClock{now: time.Now()}
	blobs := newClockBlobs(clock)
	r := openTestRegistry(t, Config{KV: mem.NewKV(), Blobs: blobs, Code: readyCode{}, Runtimes: []string{"python3.11"},
		Limits: codepkg.DefaultLimits(), Now: clock.Now})
	createNamed(t, r, "f")
	old, _ := r.Get(t.Context(), "f")
	updated, err := r.UpdateCode(t.Context(), "f", otherZip(t), "")
	if err != nil {
		t.Fatal(err)
	}
	if n := collect(t, r); n != 0 || !blobs.has(t, old.CodeSHA256) {
		t.Errorf("a collection deleted a package replaced moments ago (%d deleted)", n)
	}
	clock.add(CodeMinAge + time.Second)
	if n := collect(t, r); n != 1 || blobs.has(t, old.CodeSHA256) || !blobs.has(t, updated.CodeSHA256) {
		t.Errorf("collection: %d deleted; want the replaced package gone and the current one kept", n)
	}
}
