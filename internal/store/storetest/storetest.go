// Package storetest holds conformance suites for the store interfaces: every
// implementation of store.KV and store.Blobs runs them from its own tests,
// so all backends behave alike.
package storetest

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/store"
)

// TestKV runs the store.KV conformance suite. open must return a new, empty
// bucket on each call; the suite calls it once per subtest.
func TestKV(t *testing.T, open func(t *testing.T) store.KV) {
	t.Helper()
	tests := []struct {
		name string
		fn   func(t *testing.T, kv store.KV)
	}{
		{"GetMissing", testGetMissing},
		{"CreateGet", testCreateGet},
		{"CreateExisting", testCreateExisting},
		{"Values", testValues},
		{"Update", testUpdate},
		{"UpdateStale", testUpdateStale},
		{"Put", testPut},
		{"Delete", testDelete},
		{"CreateAfterDelete", testCreateAfterDelete},
		{"Keys", testKeys},
		{"KeysEmpty", testKeysEmpty},
		{"GoodKeys", testGoodKeys},
		{"BadKeys", testBadKeys},
		{"ConcurrentCreate", testConcurrentCreate},
		{"ConcurrentCreateAfterDelete", testConcurrentCreateAfterDelete},
		{"ConcurrentUpdate", testConcurrentUpdate},
		{"Watch", testWatch},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.fn(t, open(t)) })
	}
}

func mustCreate(t *testing.T, kv store.KV, key, value string) uint64 {
	t.Helper()
	rev, err := kv.Create(t.Context(), key, []byte(value))
	if err != nil {
		t.Fatalf("Create(%q): %v", key, err)
	}
	if rev == 0 {
		t.Fatalf("Create(%q) revision = 0, want > 0", key)
	}
	return rev
}

// wantValue checks that key holds value at revision rev (any revision if
// rev is 0).
func wantValue(t *testing.T, kv store.KV, key, value string, rev uint64) {
	t.Helper()
	e, err := kv.Get(t.Context(), key)
	if err != nil {
		t.Fatalf("Get(%q): %v", key, err)
	}
	if e.Key != key || string(e.Value) != value {
		t.Errorf("Get(%q) = %q: %q, want %q: %q", key, e.Key, e.Value, key, value)
	}
	if rev != 0 && e.Revision != rev {
		t.Errorf("Get(%q) revision = %d, want %d", key, e.Revision, rev)
	}
}

func wantNotFound(t *testing.T, kv store.KV, key string) {
	t.Helper()
	if e, err := kv.Get(t.Context(), key); !errors.Is(err, nimbus.ErrNotFound) {
		t.Errorf("Get(%q) = %+v, %v; want ErrNotFound", key, e, err)
	}
}

func testGetMissing(t *testing.T, kv store.KV) {
	wantNotFound(t, kv, "missing")
}

func testCreateGet(t *testing.T, kv store.KV) {
	rev := mustCreate(t, kv, "a", "one")
	wantValue(t, kv, "a", "one", rev)
	rev2 := mustCreate(t, kv, "b", "two")
	if rev2 == rev {
		t.Errorf("Create(b) revision = %d, same as Create(a)", rev2)
	}
}

func testCreateExisting(t *testing.T, kv store.KV) {
	rev := mustCreate(t, kv, "a", "one")
	if _, err := kv.Create(t.Context(), "a", []byte("two")); !errors.Is(err, nimbus.ErrConflict) {
		t.Errorf("second Create: got %v, want ErrConflict", err)
	}
	wantValue(t, kv, "a", "one", rev)
}

func testValues(t *testing.T, kv store.KV) {
	big := make([]byte, 100<<10)
	if _, err := rand.Read(big); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		key   string
		value []byte
	}{
		{"empty", nil},
		{"binary", []byte{0, 1, 2, 0xff, '\n', 0}},
		{"json", []byte(`{"name":"fn","memoryMB":128}`)},
		{"big", big},
	}
	for _, tt := range tests {
		rev, err := kv.Create(t.Context(), tt.key, tt.value)
		if err != nil {
			t.Fatalf("Create(%q): %v", tt.key, err)
		}
		e, err := kv.Get(t.Context(), tt.key)
		if err != nil {
			t.Fatalf("Get(%q): %v", tt.key, err)
		}
		if !bytes.Equal(e.Value, tt.value) || e.Revision != rev {
			t.Errorf("Get(%q) = %d bytes at %d, want %d bytes at %d", tt.key, len(e.Value), e.Revision, len(tt.value), rev)
		}
	}
}

func testUpdate(t *testing.T, kv store.KV) {
	rev := mustCreate(t, kv, "a", "one")
	rev2, err := kv.Update(t.Context(), "a", []byte("two"), rev)
	if err != nil {
		t.Fatalf("Update: %v", err)
	}
	if rev2 <= rev {
		t.Errorf("Update revision = %d, want > %d", rev2, rev)
	}
	wantValue(t, kv, "a", "two", rev2)
}

func testUpdateStale(t *testing.T, kv store.KV) {
	ctx := t.Context()
	rev := mustCreate(t, kv, "a", "one")
	rev2, err := kv.Update(ctx, "a", []byte("two"), rev)
	if err != nil {
		t.Fatalf("Update: %v", err)
	}
	deleted := mustCreate(t, kv, "deleted", "x")
	if err := kv.Delete(ctx, "deleted"); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	tests := []struct {
		name string
		key  string
		rev  uint64
	}{
		{"stale", "a", rev},
		{"future", "a", rev2 + 100},
		{"zero", "a", 0},
		{"other key's revision", "a", deleted},
		{"missing key", "missing", rev},
		{"missing key zero", "missing", 0},
		{"deleted key", "deleted", deleted},
	}
	for _, tt := range tests {
		if _, err := kv.Update(ctx, tt.key, []byte("three"), tt.rev); !errors.Is(err, nimbus.ErrPreconditionFailed) {
			t.Errorf("%s: Update(%q, rev %d): got %v, want ErrPreconditionFailed", tt.name, tt.key, tt.rev, err)
		}
	}
	wantValue(t, kv, "a", "two", rev2)
	wantNotFound(t, kv, "missing")
	wantNotFound(t, kv, "deleted")
}

func testPut(t *testing.T, kv store.KV) {
	ctx := t.Context()
	rev, err := kv.Put(ctx, "a", []byte("one"))
	if err != nil {
		t.Fatalf("Put new key: %v", err)
	}
	wantValue(t, kv, "a", "one", rev)
	rev2, err := kv.Put(ctx, "a", []byte("two"))
	if err != nil {
		t.Fatalf("Put existing key: %v", err)
	}
	if rev2 <= rev {
		t.Errorf("Put revision = %d, want > %d", rev2, rev)
	}
	wantValue(t, kv, "a", "two", rev2)
	// Put moves the revision: the old one is stale now.
	if _, err := kv.Update(ctx, "a", []byte("three"), rev); !errors.Is(err, nimbus.ErrPreconditionFailed) {
		t.Errorf("Update with pre-Put revision: got %v, want ErrPreconditionFailed", err)
	}
}

func testDelete(t *testing.T, kv store.KV) {
	ctx := t.Context()
	mustCreate(t, kv, "a", "one")
	mustCreate(t, kv, "b", "two")
	if err := kv.Delete(ctx, "a"); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	wantNotFound(t, kv, "a")
	wantValue(t, kv, "b", "two", 0)
	if err := kv.Delete(ctx, "a"); !errors.Is(err, nimbus.ErrNotFound) {
		t.Errorf("second Delete: got %v, want ErrNotFound", err)
	}
	if err := kv.Delete(ctx, "missing"); !errors.Is(err, nimbus.ErrNotFound) {
		t.Errorf("Delete(missing): got %v, want ErrNotFound", err)
	}
	// Put brings a deleted key back.
	rev, err := kv.Put(ctx, "a", []byte("again"))
	if err != nil {
		t.Fatalf("Put after Delete: %v", err)
	}
	wantValue(t, kv, "a", "again", rev)
}

func testCreateAfterDelete(t *testing.T, kv store.KV) {
	ctx := t.Context()
	old := mustCreate(t, kv, "a", "one")
	if err := kv.Delete(ctx, "a"); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	rev := mustCreate(t, kv, "a", "two")
	if rev <= old {
		t.Errorf("Create after Delete revision = %d, want > %d", rev, old)
	}
	wantValue(t, kv, "a", "two", rev)
	if _, err := kv.Create(ctx, "a", []byte("three")); !errors.Is(err, nimbus.ErrConflict) {
		t.Errorf("Create of re-created key: got %v, want ErrConflict", err)
	}
	if _, err := kv.Update(ctx, "a", []byte("three"), rev); err != nil {
		t.Errorf("Update of re-created key: %v", err)
	}
}

func testKeys(t *testing.T, kv store.KV) {
	ctx := t.Context()
	for _, k := range []string{"zeta", "alpha", "mid.dle", "Beta", "gone", "0"} {
		mustCreate(t, kv, k, "v")
	}
	if _, err := kv.Put(ctx, "alpha", []byte("v2")); err != nil {
		t.Fatalf("Put: %v", err)
	}
	if err := kv.Delete(ctx, "gone"); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	got, err := kv.Keys(ctx)
	if err != nil {
		t.Fatalf("Keys: %v", err)
	}
	want := []string{"0", "Beta", "alpha", "mid.dle", "zeta"}
	if !slices.Equal(got, want) {
		t.Errorf("Keys() = %q, want %q", got, want)
	}
}

func testKeysEmpty(t *testing.T, kv store.KV) {
	got, err := kv.Keys(t.Context())
	if err != nil || len(got) != 0 {
		t.Errorf("Keys() of empty bucket = %q, %v; want [], nil", got, err)
	}
	mustCreate(t, kv, "a", "v")
	if err := kv.Delete(t.Context(), "a"); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	got, err = kv.Keys(t.Context())
	if err != nil || len(got) != 0 {
		t.Errorf("Keys() with only a deleted key = %q, %v; want [], nil", got, err)
	}
}

func testGoodKeys(t *testing.T, kv store.KV) {
	for _, key := range []string{"a", "A-Z_0=9", "fn.v1.instance", "_leading-underscore", "=", strings.Repeat("k", 200)} {
		rev := mustCreate(t, kv, key, key)
		wantValue(t, kv, key, key, rev)
	}
}

func testBadKeys(t *testing.T, kv store.KV) {
	ctx := t.Context()
	keys := []string{"", ".a", "a.", "a..b", ".", "a b", "a*", "a>", "*", ">", "a/b", "ä", "a\x00b", "a\nb", "a:b"}
	for _, key := range keys {
		var errs [5]error
		_, errs[0] = kv.Create(ctx, key, []byte("v"))
		_, errs[1] = kv.Get(ctx, key)
		_, errs[2] = kv.Update(ctx, key, []byte("v"), 1)
		_, errs[3] = kv.Put(ctx, key, []byte("v"))
		errs[4] = kv.Delete(ctx, key)
		for i, op := range []string{"Create", "Get", "Update", "Put", "Delete"} {
			if !errors.Is(errs[i], nimbus.ErrInvalid) {
				t.Errorf("%s(%q): got %v, want ErrInvalid", op, key, errs[i])
			}
		}
	}
	got, err := kv.Keys(ctx)
	if err != nil || len(got) != 0 {
		t.Errorf("Keys() after bad writes = %q, %v; want [], nil", got, err)
	}
}

// race runs fn(i) for i in [0, n) at once and returns the errors.
func testWatch(t *testing.T, kv store.KV) {
	ctx, cancel := context.WithCancel(t.Context())
	mustCreate(t, kv, "before", "x") // not seen: the watch starts later
	ch, err := kv.Watch(ctx)
	if err != nil {
		t.Fatalf("Watch: %v", err)
	}
	r1 := mustCreate(t, kv, "a", "1")
	if _, err := kv.Update(t.Context(), "a", []byte("2"), r1); err != nil {
		t.Fatal(err)
	}
	if err := kv.Delete(t.Context(), "a"); err != nil {
		t.Fatal(err)
	}
	rb, err := kv.Put(t.Context(), "b", []byte("3"))
	if err != nil {
		t.Fatal(err)
	}
	// Intermediate changes of a may be superseded; the latest of each key
	// (a deleted, b = 3) must arrive, in increasing revisions, and nothing
	// from before the watch.
	var last uint64
	var aDeleted, bSeen bool
	timeout := time.After(5 * time.Second)
	for !aDeleted || !bSeen {
		select {
		case got := <-ch:
			if got.Revision <= last {
				t.Errorf("change %+v: revision %d after %d", got, got.Revision, last)
			}
			last = got.Revision
			switch {
			case got.Key == "before":
				t.Errorf("the watch reported %+v, written before it started", got)
			case got.Key == "a" && got.Deleted:
				aDeleted = true
			case got.Key == "a" && aDeleted:
				t.Errorf("a change of a after its deletion: %+v", got)
			case got.Key == "a" && string(got.Value) != "1" && string(got.Value) != "2":
				t.Errorf("change of a = %+v", got)
			case got.Key == "b":
				if got.Deleted || string(got.Value) != "3" || got.Revision != rb {
					t.Errorf("change of b = %+v, want value 3 at revision %d", got, rb)
				}
				bSeen = true
			}
		case <-timeout:
			t.Fatalf("latest changes not all delivered: a deleted %v, b %v", aDeleted, bSeen)
		}
	}
	cancel()
	for range ch { // the channel closes once ctx ends
	}
}

func race(n int, fn func(i int) error) []error {
	errs := make([]error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			errs[i] = fn(i)
		})
	}
	close(start)
	wg.Wait()
	return errs
}

// oneWinner checks that exactly one of errs is nil and the others wrap
// loser, and returns the winner's index.
func oneWinner(t *testing.T, errs []error, loser error) int {
	t.Helper()
	winner := -1
	for i, err := range errs {
		switch {
		case err == nil && winner >= 0:
			t.Errorf("writers %d and %d both won", winner, i)
		case err == nil:
			winner = i
		case !errors.Is(err, loser):
			t.Errorf("writer %d: got %v, want %v", i, err, loser)
		}
	}
	if winner < 0 {
		t.Fatalf("no writer won")
	}
	return winner
}

const racers = 8

func testConcurrentCreate(t *testing.T, kv store.KV) {
	errs := race(racers, func(i int) error {
		_, err := kv.Create(t.Context(), "k", fmt.Appendf(nil, "writer %d", i))
		return err
	})
	w := oneWinner(t, errs, nimbus.ErrConflict)
	wantValue(t, kv, "k", fmt.Sprintf("writer %d", w), 0)
}

func testConcurrentCreateAfterDelete(t *testing.T, kv store.KV) {
	mustCreate(t, kv, "k", "old")
	if err := kv.Delete(t.Context(), "k"); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	errs := race(racers, func(i int) error {
		_, err := kv.Create(t.Context(), "k", fmt.Appendf(nil, "writer %d", i))
		return err
	})
	w := oneWinner(t, errs, nimbus.ErrConflict)
	wantValue(t, kv, "k", fmt.Sprintf("writer %d", w), 0)
}

func testConcurrentUpdate(t *testing.T, kv store.KV) {
	rev := mustCreate(t, kv, "k", "old")
	errs := race(racers, func(i int) error {
		_, err := kv.Update(t.Context(), "k", fmt.Appendf(nil, "writer %d", i), rev)
		return err
	})
	w := oneWinner(t, errs, nimbus.ErrPreconditionFailed)
	wantValue(t, kv, "k", fmt.Sprintf("writer %d", w), 0)
}

// TestBlobs runs the store.Blobs conformance suite. open may return the same
// store on each call: the subtests use distinct random content.
func TestBlobs(t *testing.T, open func(t *testing.T) store.Blobs) {
	t.Helper()
	tests := []struct {
		name string
		fn   func(t *testing.T, b store.Blobs)
	}{
		{"PutGet", testBlobPutGet},
		{"Empty", testBlobEmpty},
		{"Large", testBlobLarge},
		{"PutTwice", testBlobPutTwice},
		{"Delete", testBlobDelete},
		{"Missing", testBlobMissing},
		{"BadDigest", testBlobBadDigest},
		{"ReaderError", testBlobReaderError},
		{"List", testBlobList},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.fn(t, open(t)) })
	}
}

func randomBytes(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func digestOf(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// putBlob stores content and checks the digest and size Put returns.
func putBlob(t *testing.T, b store.Blobs, content []byte) string {
	t.Helper()
	digest, size, err := b.Put(t.Context(), bytes.NewReader(content))
	if err != nil {
		t.Fatalf("Put: %v", err)
	}
	if want := digestOf(content); digest != want {
		t.Errorf("Put digest = %s, want %s", digest, want)
	}
	if size != int64(len(content)) {
		t.Errorf("Put size = %d, want %d", size, len(content))
	}
	return digest
}

// wantBlob checks that digest reads back as content.
func wantBlob(t *testing.T, b store.Blobs, digest string, content []byte) {
	t.Helper()
	r, err := b.Get(t.Context(), digest)
	if err != nil {
		t.Fatalf("Get(%s): %v", digest, err)
	}
	defer r.Close()
	got, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("Get(%s): read: %v", digest, err)
	}
	if !bytes.Equal(got, content) {
		t.Errorf("Get(%s) = %d bytes (sha256 %s), want %d bytes", digest, len(got), digestOf(got), len(content))
	}
	if err := r.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
}

func testBlobPutGet(t *testing.T, b store.Blobs) {
	content := randomBytes(t, 1000)
	wantBlob(t, b, putBlob(t, b, content), content)
}

func testBlobEmpty(t *testing.T, b store.Blobs) {
	wantBlob(t, b, putBlob(t, b, nil), nil)
}

func testBlobLarge(t *testing.T, b store.Blobs) {
	content := randomBytes(t, 5<<20)
	wantBlob(t, b, putBlob(t, b, content), content)
}

func testBlobPutTwice(t *testing.T, b store.Blobs) {
	content := randomBytes(t, 300<<10)
	d1 := putBlob(t, b, content)
	d2 := putBlob(t, b, content)
	if d1 != d2 {
		t.Errorf("second Put digest = %s, want %s", d2, d1)
	}
	wantBlob(t, b, d1, content)
}

func testBlobDelete(t *testing.T, b store.Blobs) {
	ctx := t.Context()
	content, other := randomBytes(t, 200<<10), randomBytes(t, 100)
	digest := putBlob(t, b, content)
	otherDigest := putBlob(t, b, other)
	if err := b.Delete(ctx, digest); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if r, err := b.Get(ctx, digest); !errors.Is(err, nimbus.ErrNotFound) {
		if err == nil {
			r.Close()
		}
		t.Errorf("Get after Delete: got %v, want ErrNotFound", err)
	}
	if err := b.Delete(ctx, digest); !errors.Is(err, nimbus.ErrNotFound) {
		t.Errorf("second Delete: got %v, want ErrNotFound", err)
	}
	wantBlob(t, b, otherDigest, other)
	// Putting it again brings it back.
	putBlob(t, b, content)
	wantBlob(t, b, digest, content)
}

func testBlobMissing(t *testing.T, b store.Blobs) {
	digest := digestOf(randomBytes(t, 32))
	if r, err := b.Get(t.Context(), digest); !errors.Is(err, nimbus.ErrNotFound) {
		if err == nil {
			r.Close()
		}
		t.Errorf("Get(missing): got %v, want ErrNotFound", err)
	}
	if err := b.Delete(t.Context(), digest); !errors.Is(err, nimbus.ErrNotFound) {
		t.Errorf("Delete(missing): got %v, want ErrNotFound", err)
	}
}

func testBlobBadDigest(t *testing.T, b store.Blobs) {
	good := digestOf([]byte("x"))
	bad := []string{
		"",
		"abc",
		good[:63],
		good + "0",
		strings.ToUpper(good),
		"g" + good[1:],
		"../" + good[3:],
		good[:62] + " 0",
	}
	for _, d := range bad {
		if r, err := b.Get(t.Context(), d); !errors.Is(err, nimbus.ErrInvalid) {
			if err == nil {
				r.Close()
			}
			t.Errorf("Get(%q): got %v, want ErrInvalid", d, err)
		}
		if err := b.Delete(t.Context(), d); !errors.Is(err, nimbus.ErrInvalid) {
			t.Errorf("Delete(%q): got %v, want ErrInvalid", d, err)
		}
	}
}

// failingReader returns some bytes, then err.
type failingReader struct {
	n   int
	err error
}

func (r *failingReader) Read(p []byte) (int, error) {
	if r.n == 0 {
		return 0, r.err
	}
	n := min(len(p), r.n)
	clear(p[:n])
	r.n -= n
	return n, nil
}

func testBlobReaderError(t *testing.T, b store.Blobs) {
	errBoom := errors.New("boom")
	_, _, err := b.Put(t.Context(), &failingReader{n: 64 << 10, err: errBoom})
	if !errors.Is(err, errBoom) {
		t.Fatalf("Put with failing reader: got %v, want %v", err, errBoom)
	}
	// The bytes read before the failure must not be stored as a blob.
	partial := digestOf(make([]byte, 64<<10))
	if r, err := b.Get(t.Context(), partial); !errors.Is(err, nimbus.ErrNotFound) {
		if err == nil {
			r.Close()
		}
		t.Errorf("Get(partial content): got %v, want ErrNotFound", err)
	}

	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, _, err := b.Put(ctx, bytes.NewReader(randomBytes(t, 100))); err == nil {
		t.Errorf("Put with cancelled context: got nil error")
	}
}

// listed returns List's description of digest (ok false if it is not
// listed), checking that List lists it at most once.
func listed(t *testing.T, b store.Blobs, digest string) (info store.BlobInfo, ok bool) {
	t.Helper()
	infos, err := b.List(t.Context())
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	for _, i := range infos {
		if i.Digest != digest {
			continue
		}
		if ok {
			t.Errorf("List lists %s twice", digest)
		}
		info, ok = i, true
	}
	return info, ok
}

func testBlobList(t *testing.T, b store.Blobs) {
	before := time.Now()
	content, other := randomBytes(t, 3000), randomBytes(t, 10)
	digest, otherDigest := putBlob(t, b, content), putBlob(t, b, other)
	after := time.Now()
	info, ok := listed(t, b, digest)
	if !ok {
		t.Fatalf("List does not list a stored blob")
	}
	if info.Size != int64(len(content)) {
		t.Errorf("List: size %d, want %d", info.Size, len(content))
	}
	// The store's clock may be another machine's: allow some skew.
	if info.Modified.Before(before.Add(-time.Minute)) || info.Modified.After(after.Add(time.Minute)) {
		t.Errorf("List: modified %s, want about %s", info.Modified, before)
	}
	putBlob(t, b, content)
	if again, _ := listed(t, b, digest); !again.Modified.Equal(info.Modified) {
		t.Errorf("List after a second Put: modified %s, want %s as before", again.Modified, info.Modified)
	}
	if err := b.Delete(t.Context(), digest); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if _, ok := listed(t, b, digest); ok {
		t.Errorf("List lists a deleted blob")
	}
	if _, ok := listed(t, b, otherDigest); !ok {
		t.Errorf("List does not list a blob after another was deleted")
	}
}
