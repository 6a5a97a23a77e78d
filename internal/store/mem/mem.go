// Package mem is an in-memory store.Store for tests and fuzzing: the same
// semantics as internal/store/nats, checked by the same conformance suite,
// with nothing persisted.
package mem

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"sort"
	"sync"
	"time"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/lazyre"
	"github.com/nimbus-serverless/nimbus/internal/store"
)

// Store holds buckets in memory.
type Store struct {
	mu    sync.Mutex
	kvs   map[string]*KV
	blobs *Blobs
}

var _ store.Store = (*Store)(nil)

// New returns an empty Store.
func New() *Store { return &Store{kvs: make(map[string]*KV), blobs: NewBlobs()} }

// KV returns the named bucket, creating it if needed.
func (s *Store) KV(_ context.Context, bucket string) (store.KV, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	kv := s.kvs[bucket]
	if kv == nil {
		kv = NewKV()
		s.kvs[bucket] = kv
	}
	return kv, nil
}

// Blobs returns the blob store.
func (s *Store) Blobs() store.Blobs { return s.blobs }

// Close does nothing.
func (s *Store) Close(context.Context) error { return nil }

// KV is an in-memory bucket.
type KV struct {
	mu       sync.Mutex
	seq      uint64
	data     map[string]store.Entry
	watchers map[*watcher]struct{}
}

// watcher feeds one Watch channel in order, without blocking writers.
type watcher struct {
	mu    sync.Mutex
	queue []store.Entry
	wake  chan struct{}
}

func (w *watcher) push(e store.Entry) {
	w.mu.Lock()
	w.queue = append(w.queue, e)
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

func (w *watcher) run(ctx context.Context, out chan<- store.Entry) {
	defer close(out)
	for {
		w.mu.Lock()
		q := w.queue
		w.queue = nil
		w.mu.Unlock()
		for _, e := range q {
			select {
			case out <- e:
			case <-ctx.Done():
				return
			}
		}
		select {
		case <-w.wake:
		case <-ctx.Done():
			return
		}
	}
}

// Watch implements store.KV.
func (kv *KV) Watch(ctx context.Context) (<-chan store.Entry, error) {
	w := &watcher{wake: make(chan struct{}, 1)}
	kv.mu.Lock()
	kv.watchers[w] = struct{}{}
	kv.mu.Unlock()
	out := make(chan store.Entry)
	go func() {
		w.run(ctx, out)
		kv.mu.Lock()
		delete(kv.watchers, w)
		kv.mu.Unlock()
	}()
	return out, nil
}

func (kv *KV) notifyLocked(e store.Entry) {
	for w := range kv.watchers {
		w.push(e)
	}
}

var _ store.KV = (*KV)(nil)

// NewKV returns an empty bucket.
func NewKV() *KV {
	return &KV{data: make(map[string]store.Entry), watchers: make(map[*watcher]struct{})}
}

// Get implements store.KV.
func (kv *KV) Get(_ context.Context, key string) (store.Entry, error) {
	if err := store.CheckKey(key); err != nil {
		return store.Entry{}, err
	}
	kv.mu.Lock()
	defer kv.mu.Unlock()
	e, ok := kv.data[key]
	if !ok {
		return store.Entry{}, nimbus.ErrNotFound
	}
	e.Value = bytes.Clone(e.Value)
	return e, nil
}

func (kv *KV) putLocked(key string, value []byte) uint64 {
	kv.seq++
	e := store.Entry{Key: key, Value: bytes.Clone(value), Revision: kv.seq}
	kv.data[key] = e
	kv.notifyLocked(e)
	return kv.seq
}

// Create implements store.KV.
func (kv *KV) Create(_ context.Context, key string, value []byte) (uint64, error) {
	if err := store.CheckKey(key); err != nil {
		return 0, err
	}
	kv.mu.Lock()
	defer kv.mu.Unlock()
	if _, ok := kv.data[key]; ok {
		return 0, nimbus.ErrConflict
	}
	return kv.putLocked(key, value), nil
}

// Update implements store.KV.
func (kv *KV) Update(_ context.Context, key string, value []byte, rev uint64) (uint64, error) {
	if err := store.CheckKey(key); err != nil {
		return 0, err
	}
	kv.mu.Lock()
	defer kv.mu.Unlock()
	if e, ok := kv.data[key]; !ok || e.Revision != rev {
		return 0, nimbus.ErrPreconditionFailed
	}
	return kv.putLocked(key, value), nil
}

// Put implements store.KV.
func (kv *KV) Put(_ context.Context, key string, value []byte) (uint64, error) {
	if err := store.CheckKey(key); err != nil {
		return 0, err
	}
	kv.mu.Lock()
	defer kv.mu.Unlock()
	return kv.putLocked(key, value), nil
}

// Delete implements store.KV.
func (kv *KV) Delete(_ context.Context, key string) error {
	if err := store.CheckKey(key); err != nil {
		return err
	}
	kv.mu.Lock()
	defer kv.mu.Unlock()
	if _, ok := kv.data[key]; !ok {
		return nimbus.ErrNotFound
	}
	delete(kv.data, key)
	kv.seq++
	kv.notifyLocked(store.Entry{Key: key, Revision: kv.seq, Deleted: true})
	return nil
}

// Keys implements store.KV.
func (kv *KV) Keys(context.Context) ([]string, error) {
	kv.mu.Lock()
	defer kv.mu.Unlock()
	keys := make([]string, 0, len(kv.data))
	for k := range kv.data {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys, nil
}

// Blobs is an in-memory content-addressed blob store.
type Blobs struct {
	mu   sync.Mutex
	data map[string][]byte
	mod  map[string]time.Time // when each blob was first stored
}

var _ store.Blobs = (*Blobs)(nil)

// NewBlobs returns an empty blob store.
func NewBlobs() *Blobs {
	return &Blobs{data: make(map[string][]byte), mod: make(map[string]time.Time)}
}

var digestRE = lazyre.New(`^[0-9a-f]{64}$`)

// Put implements store.Blobs.
func (b *Blobs) Put(ctx context.Context, r io.Reader) (string, int64, error) {
	if err := ctx.Err(); err != nil {
		return "", 0, err
	}
	data, err := io.ReadAll(r)
	if err != nil {
		return "", 0, err
	}
	sum := sha256.Sum256(data)
	d := hex.EncodeToString(sum[:])
	b.mu.Lock()
	if _, ok := b.data[d]; !ok {
		b.data[d], b.mod[d] = data, time.Now()
	}
	b.mu.Unlock()
	return d, int64(len(data)), nil
}

// Get implements store.Blobs.
func (b *Blobs) Get(_ context.Context, digest string) (io.ReadCloser, error) {
	if !digestRE().MatchString(digest) {
		return nil, nimbus.Errorf(nimbus.ErrInvalid, "invalid digest %q", digest)
	}
	b.mu.Lock()
	data, ok := b.data[digest]
	b.mu.Unlock()
	if !ok {
		return nil, nimbus.ErrNotFound
	}
	return io.NopCloser(bytes.NewReader(data)), nil
}

// Delete implements store.Blobs.
func (b *Blobs) Delete(_ context.Context, digest string) error {
	if !digestRE().MatchString(digest) {
		return nimbus.Errorf(nimbus.ErrInvalid, "invalid digest %q", digest)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.data[digest]; !ok {
		return nimbus.ErrNotFound
	}
	delete(b.data, digest)
	delete(b.mod, digest)
	return nil
}

// List implements store.Blobs.
func (b *Blobs) List(context.Context) ([]store.BlobInfo, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]store.BlobInfo, 0, len(b.data))
	for d, data := range b.data {
		out = append(out, store.BlobInfo{Digest: d, Size: int64(len(data)), Modified: b.mod[d]})
	}
	return out, nil
}
