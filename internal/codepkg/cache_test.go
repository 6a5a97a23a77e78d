package codepkg

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/store"
	"go.uber.org/goleak"
)

// fakeBlobs is an in-memory store.Blobs.
type fakeBlobs struct {
	mu    sync.Mutex
	blobs map[string][]byte
	gets  atomic.Int32
	// gate, when set, holds every Get until it is closed.
	gate chan struct{}
}

var _ store.Blobs = (*fakeBlobs)(nil)

func newFakeBlobs() *fakeBlobs { return &fakeBlobs{blobs: make(map[string][]byte)} }

func (f *fakeBlobs) Put(_ context.Context, r io.Reader) (string, int64, error) {
	b, err := io.ReadAll(r)
	if err != nil {
		return "", 0, err
	}
	d, _ := Digest(b)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.blobs[d] = b
	return d, int64(len(b)), nil
}

func (f *fakeBlobs) Get(ctx context.Context, digest string) (io.ReadCloser, error) {
	f.gets.Add(1)
	if f.gate != nil {
		select {
		case <-f.gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	b, ok := f.blobs[digest]
	if !ok {
		return nil, fmt.Errorf("blob %s: %w", digest, nimbus.ErrNotFound)
	}
	return io.NopCloser(bytes.NewReader(b)), nil
}

func (f *fakeBlobs) Delete(_ context.Context, digest string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.blobs[digest]; !ok {
		return nimbus.ErrNotFound
	}
	delete(f.blobs, digest)
	return nil
}

func (f *fakeBlobs) List(context.Context) ([]store.BlobInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]store.BlobInfo, 0, len(f.blobs))
	for d, b := range f.blobs {
		out = append(out, store.BlobInfo{Digest: d, Size: int64(len(b))})
	}
	return out, nil
}

// logCounter is a slog.Handler that counts records by message.
type logCounter struct {
	mu   sync.Mutex
	msgs map[string]int
}

func (h *logCounter) Enabled(context.Context, slog.Level) bool { return true }
func (h *logCounter) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *logCounter) WithGroup(string) slog.Handler            { return h }
func (h *logCounter) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.msgs[r.Message]++
	return nil
}

func (h *logCounter) count(msg string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.msgs[msg]
}

func newTestCache(t *testing.T, blobs store.Blobs) (*Cache, *logCounter, string) {
	t.Helper()
	root := filepath.Join(t.TempDir(), "cache")
	makeRemovable(t, root)
	logs := &logCounter{msgs: make(map[string]int)}
	c, err := NewCache(root, blobs, Limits{}, slog.New(logs))
	if err != nil {
		t.Fatalf("NewCache: %v", err)
	}
	return c, logs, root
}

// pkg returns a small package whose content depends on s, and its digest.
func pkg(t *testing.T, s string) ([]byte, string) {
	t.Helper()
	z := buildZip(t, file("index.js", s), exe("bootstrap", "#!/bin/sh\n"))
	d, _ := Digest(z)
	return z, d
}

func TestNewCache(t *testing.T) {
	root := filepath.Join(t.TempDir(), "cache")
	makeRemovable(t, root)
	if err := os.MkdirAll(filepath.Join(root, ".tmp-abc-123", "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(root, ".tmp-abc-123"), 0o555); err != nil {
		t.Fatal(err)
	}
	keep := strings.Repeat("a", 64)
	if err := os.Mkdir(filepath.Join(root, keep), 0o555); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(root, 0o777); err != nil {
		t.Fatal(err)
	}
	logs := &logCounter{msgs: make(map[string]int)}
	if _, err := NewCache(root, newFakeBlobs(), Limits{}, slog.New(logs)); err != nil {
		t.Fatalf("NewCache: %v", err)
	}
	fi, err := os.Stat(root)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := fi.Mode(), fs.ModeDir|0o711; got != want {
		t.Errorf("root mode: got %v, want %v", got, want)
	}
	ents, err := os.ReadDir(root)
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != 1 || ents[0].Name() != keep {
		t.Errorf("root: got %v, want only %s", ents, keep)
	}
	if got := logs.count("removing leftover code directory"); got != 1 {
		t.Errorf("leftover logs: got %d, want 1", got)
	}
}

func TestCachePrepare(t *testing.T) {
	c, logs, root := newTestCache(t, newFakeBlobs())
	z, d := pkg(t, "one")
	dir, err := c.Prepare(t.Context(), d, z)
	if err != nil {
		t.Fatalf("Prepare: %v", err)
	}
	if want := filepath.Join(root, d); dir != want {
		t.Errorf("dir: got %s, want %s", dir, want)
	}
	if got, err := os.ReadFile(filepath.Join(dir, "index.js")); err != nil || string(got) != "one" {
		t.Errorf("index.js: got %q (%v), want one", got, err)
	}
	if _, err := c.Prepare(t.Context(), d, z); err != nil {
		t.Fatalf("second Prepare: %v", err)
	}
	if got := logs.count("code unpacked"); got != 1 {
		t.Errorf("unpacks: got %d, want 1", got)
	}
}

func TestCachePrepareRejects(t *testing.T) {
	z, d := pkg(t, "one")
	bad := buildZip(t, file("../evil", "x"))
	badDigest, _ := Digest(bad)
	tests := []struct {
		name   string
		digest string
		zip    []byte
	}{
		{"digest mismatch", d, buildZip(t, file("other", "x"))},
		{"path in digest", "../" + d[3:], z},
		{"uppercase digest", strings.ToUpper(d), z},
		{"short digest", d[:10], z},
		{"empty digest", "", z},
		{"bad package", badDigest, bad},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, _, root := newTestCache(t, newFakeBlobs())
			dir, err := c.Prepare(t.Context(), tc.digest, tc.zip)
			if !errors.Is(err, nimbus.ErrInvalid) {
				t.Fatalf("Prepare: got %q, %v, want ErrInvalid", dir, err)
			}
			if got := listTree(t, root); len(got) != 0 {
				t.Errorf("cache: got %q, want nothing", got)
			}
			if got := listTree(t, filepath.Dir(root)); !slices.Equal(got, []string{"cache"}) {
				t.Errorf("cache parent: got %q, want [cache]", got)
			}
		})
	}
}

func TestCachePrepareConcurrent(t *testing.T) {
	defer goleak.VerifyNone(t)
	c, logs, _ := newTestCache(t, newFakeBlobs())
	z, d := pkg(t, "one")
	const n = 16
	dirs := make([]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { dirs[i], errs[i] = c.Prepare(t.Context(), d, z) })
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil || dirs[i] != dirs[0] {
			t.Errorf("Prepare %d: got %q, %v, want %q, nil", i, dirs[i], errs[i], dirs[0])
		}
	}
	if got := logs.count("code unpacked"); got != 1 {
		t.Errorf("unpacks: got %d, want 1", got)
	}
}

func TestCacheEnsure(t *testing.T) {
	defer goleak.VerifyNone(t)
	blobs := newFakeBlobs()
	c, logs, root := newTestCache(t, blobs)
	z, d := pkg(t, "stored")
	if _, _, err := blobs.Put(t.Context(), bytes.NewReader(z)); err != nil {
		t.Fatal(err)
	}
	const n = 8
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() { _, errs[i] = c.Ensure(t.Context(), d) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("Ensure %d: %v", i, err)
		}
	}
	if got := blobs.gets.Load(); got != 1 {
		t.Errorf("blob gets: got %d, want 1", got)
	}
	if got := logs.count("code unpacked"); got != 1 {
		t.Errorf("unpacks: got %d, want 1", got)
	}
	got, err := os.ReadFile(filepath.Join(root, d, "index.js"))
	if err != nil || string(got) != "stored" {
		t.Errorf("index.js: got %q (%v), want stored", got, err)
	}
	// Present now: no fetch.
	if _, err := c.Ensure(t.Context(), d); err != nil {
		t.Fatal(err)
	}
	if got := blobs.gets.Load(); got != 1 {
		t.Errorf("blob gets after a hit: got %d, want 1", got)
	}
}

func TestCacheEnsureErrors(t *testing.T) {
	z, d := pkg(t, "x")
	_, other := pkg(t, "y")
	bad := buildZip(t, link("l", "/etc"), file("f", ""))
	badDigest, _ := Digest(bad)
	tests := []struct {
		name    string
		digest  string
		blobs   map[string][]byte
		want    error // a sentinel, or nil for a platform error
		wantMsg string
	}{
		{"missing", d, nil, nimbus.ErrNotFound, "not found"},
		{"corrupt blob", d, map[string][]byte{d: buildZip(t, file("other", ""))}, nil, "stored blob is corrupt"},
		{"bad package", badDigest, map[string][]byte{badDigest: bad}, nimbus.ErrInvalid, "absolute target"},
		{"bad digest", "../../etc", map[string][]byte{other: z}, nimbus.ErrInvalid, "64 lowercase hex"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			blobs := newFakeBlobs()
			maps.Copy(blobs.blobs, tc.blobs)
			c, _, root := newTestCache(t, blobs)
			dir, err := c.Ensure(t.Context(), tc.digest)
			switch {
			case err == nil:
				t.Fatalf("Ensure: got %q, want an error", dir)
			case tc.want != nil && !errors.Is(err, tc.want):
				t.Errorf("Ensure: got %v, want %v", err, tc.want)
			case tc.want == nil && (errors.Is(err, nimbus.ErrInvalid) || errors.Is(err, nimbus.ErrNotFound)):
				t.Errorf("Ensure: got %v, want a platform error", err)
			}
			if !strings.Contains(err.Error(), tc.wantMsg) {
				t.Errorf("Ensure: got %q, want it to contain %q", err, tc.wantMsg)
			}
			if got := listTree(t, root); len(got) != 0 {
				t.Errorf("cache: got %q, want nothing", got)
			}
		})
	}
}

// TestCacheEnsureCancel checks that a waiter leaves when its context ends,
// while the shared fetch goes on for the others.
func TestCacheEnsureCancel(t *testing.T) {
	defer goleak.VerifyNone(t)
	blobs := newFakeBlobs()
	blobs.gate = make(chan struct{})
	c, _, _ := newTestCache(t, blobs)
	z, d := pkg(t, "slow")
	if _, _, err := blobs.Put(t.Context(), bytes.NewReader(z)); err != nil {
		t.Fatal(err)
	}
	patient := make(chan error, 1)
	go func() {
		_, err := c.Ensure(t.Context(), d)
		patient <- err
	}()
	ctx, cancel := context.WithCancel(t.Context())
	impatient := make(chan error, 1)
	go func() {
		_, err := c.Ensure(ctx, d)
		impatient <- err
	}()
	cancel()
	if err := <-impatient; !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled Ensure: got %v, want context.Canceled", err)
	}
	close(blobs.gate)
	if err := <-patient; err != nil {
		t.Errorf("patient Ensure: got %v, want nil", err)
	}
	if _, err := c.Ensure(ctx, d); err != nil {
		t.Errorf("Ensure of a present digest with a done context: got %v, want nil", err)
	}
}

func TestCachePrune(t *testing.T) {
	c, _, root := newTestCache(t, newFakeBlobs())
	var digests []string
	for _, s := range []string{"a", "b", "c"} {
		z, d := pkg(t, s)
		if _, err := c.Prepare(t.Context(), d, z); err != nil {
			t.Fatal(err)
		}
		digests = append(digests, d)
	}
	if err := os.Mkdir(filepath.Join(root, "not-a-digest"), 0o755); err != nil {
		t.Fatal(err)
	}
	n, err := c.Prune(map[string]bool{digests[1]: true})
	if err != nil {
		t.Fatalf("Prune: %v", err)
	}
	if n != 2 {
		t.Errorf("Prune: got %d removed, want 2", n)
	}
	want := []string{digests[1], "not-a-digest"}
	slices.Sort(want)
	ents, err := os.ReadDir(root)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range ents {
		got = append(got, e.Name())
	}
	if !slices.Equal(got, want) {
		t.Errorf("after Prune: got %q, want %q", got, want)
	}
	// A pruned digest comes back on demand.
	z, d := pkg(t, "a")
	if _, err := c.Prepare(t.Context(), d, z); err != nil {
		t.Fatalf("Prepare after Prune: %v", err)
	}
	if n, err := c.Prune(nil); err != nil || n != 2 {
		t.Errorf("Prune all: got %d, %v, want 2, nil", n, err)
	}
}

// TestCachePruneSkipsBusy checks that Prune leaves alone a digest being
// fetched while it runs.
func TestCachePruneSkipsBusy(t *testing.T) {
	defer goleak.VerifyNone(t)
	blobs := newFakeBlobs()
	blobs.gate = make(chan struct{})
	c, _, root := newTestCache(t, blobs)
	z, d := pkg(t, "busy")
	if _, _, err := blobs.Put(t.Context(), bytes.NewReader(z)); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := c.Ensure(t.Context(), d)
		done <- err
	}()
	for blobs.gets.Load() == 0 { // the fetch has started once Get is called
		runtime.Gosched()
	}
	// Stand in for the directory appearing just before Prune looks.
	if err := os.Mkdir(filepath.Join(root, d), 0o755); err != nil {
		t.Fatal(err)
	}
	if n, err := c.Prune(nil); err != nil || n != 0 {
		t.Errorf("Prune: got %d, %v, want 0, nil", n, err)
	}
	close(blobs.gate)
	if err := <-done; err != nil {
		t.Errorf("Ensure: %v", err)
	}
	if _, err := os.Stat(filepath.Join(root, d)); err != nil {
		t.Errorf("busy digest: %v", err)
	}
}
