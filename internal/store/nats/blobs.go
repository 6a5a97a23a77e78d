package nats

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/store"
)

// blobReadTimeout bounds reading a blob when Get's ctx has no deadline
// (JetStream would otherwise allow only its 5 s request timeout, too short
// to stream a large package to a slow client).
const blobReadTimeout = 10 * time.Minute

// checkDigest reports whether d is a lowercase hex SHA-256, with an error
// wrapping nimbus.ErrInvalid.
func checkDigest(d string) error {
	if len(d) != sha256.Size*2 {
		return nimbus.Invalidf("invalid digest %q: want %d lowercase hex digits", d, sha256.Size*2)
	}
	for _, c := range []byte(d) {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return nimbus.Invalidf("invalid digest %q: want %d lowercase hex digits", d, sha256.Size*2)
		}
	}
	return nil
}

// blobs is a store.Blobs on a JetStream object store: the object name is
// the blob's digest.
type blobs struct {
	obs jetstream.ObjectStore
	// small and large are the object store for Puts of up to smallBlob
	// bytes and of more, with the waits for each chunk's acknowledgement
	// below.
	small, large jetstream.ObjectStore
	retrier
	health func() error // nil, or why writes fail now (Store.Healthy)
	// observe is told each write's duration (Config.ObserveWrite).
	observe func(op string, d time.Duration)
}

// blobWriteTimeout bounds a Put or Delete whose context has no deadline:
// a store that cannot write must not hold a deploy for good.
const blobWriteTimeout = 2 * time.Minute

var _ store.Blobs = (*blobs)(nil)

// Put spools r to a temporary file while hashing it, then stores it under
// its digest unless a blob with that digest exists already. Errors: those
// of r and of the store.
func (b *blobs) Put(ctx context.Context, r io.Reader) (string, int64, error) {
	if err := b.health(); err != nil {
		return "", 0, err
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, blobWriteTimeout)
		defer cancel()
	}
	f, err := os.CreateTemp("", "nimbus-blob-*")
	if err != nil {
		return "", 0, fmt.Errorf("blob put: %w", err)
	}
	defer os.Remove(f.Name())
	defer f.Close()

	h := sha256.New()
	size, err := io.Copy(io.MultiWriter(f, h), r)
	if err != nil {
		return "", 0, fmt.Errorf("blob put: read: %w", err)
	}
	digest := hex.EncodeToString(h.Sum(nil))

	err = b.retry(ctx, attemptTimeout, func(ctx context.Context, _ bool) error {
		_, err := b.obs.GetInfo(ctx, digest)
		return err
	})
	if err == nil {
		return digest, size, nil // content-addressed: it is the same blob
	}
	if !errors.Is(err, jetstream.ErrObjectNotFound) {
		return "", 0, storeErr("blob put "+digest, err)
	}
	start := time.Now()
	err = b.retry(ctx, blobWriteTimeout, func(ctx context.Context, _ bool) error {
		return b.putOnce(ctx, digest, f, size)
	})
	if b.observe != nil {
		b.observe("blob_put", time.Since(start))
	}
	if err != nil {
		return "", 0, storeErr("blob put "+digest, err)
	}
	return digest, size, nil
}

// A Put sends a blob's chunks at once and the replicas acknowledge them
// as they store them; a chunk whose acknowledgement does not come within
// its object store's JetStream default timeout fails the attempt, which is
// tried again (retry.go). Blobs of up to smallBlob bytes wait
// smallAckTimeout (JetStream's default), larger ones largeAckTimeout
// (the 50 MB limit at under 2 MB/s).
const (
	smallBlob       = 4 << 20
	smallAckTimeout = 5 * time.Second
	largeAckTimeout = 30 * time.Second
)

// putOnce is one attempt at storing f under digest.
func (b *blobs) putOnce(ctx context.Context, digest string, f *os.File, size int64) error {
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("blob put %s: %w", digest, err)
	}
	if b.patience == 0 { // a single node: no leader to wait for
		_, err := b.obs.Put(ctx, jetstream.ObjectMeta{Name: digest}, f)
		return err
	}
	obs := b.small
	if size > smallBlob {
		obs = b.large
	}
	// The object store bounds the wait for each chunk's acknowledgement by
	// its JetStream's default timeout, but only for a context without a
	// deadline: it gets one that ends with ctx instead.
	pctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	defer context.AfterFunc(ctx, cancel)()
	_, err := obs.Put(pctx, jetstream.ObjectMeta{Name: digest}, f)
	if err != nil && ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

// Get opens a blob for reading. The content streams from the server while
// it is read: reading must end before ctx is done (or within
// blobReadTimeout if ctx has no deadline), and a read returns an error if
// the content does not match its digest. Errors: nimbus.ErrNotFound,
// nimbus.ErrInvalid for a bad digest.
func (b *blobs) Get(ctx context.Context, digest string) (io.ReadCloser, error) {
	if err := checkDigest(digest); err != nil {
		return nil, err
	}
	cancel := context.CancelFunc(func() {})
	if _, ok := ctx.Deadline(); !ok {
		ctx, cancel = context.WithTimeout(ctx, blobReadTimeout)
	}
	// Opening reads the object's description and makes a consumer for its
	// chunks; a request that gets no answer (a leader just died) would
	// hold it until ctx ends: each attempt has attemptTimeout.
	var res jetstream.ObjectResult
	stopGet := context.CancelFunc(func() {})
	err := b.retry(ctx, blobReadTimeout, func(context.Context, bool) (err error) {
		if b.patience == 0 { // a single node: no leader to wait for
			res, err = b.obs.Get(ctx, digest)
			return err
		}
		gctx, stop := context.WithCancel(ctx)
		t := time.AfterFunc(attemptTimeout, stop)
		res, err = b.obs.Get(gctx, digest)
		if !t.Stop() {
			if err == nil {
				res.Close()
			}
			stop()
			return context.DeadlineExceeded // this attempt took too long
		}
		if err != nil {
			stop()
			return err
		}
		stopGet = stop
		return nil
	})
	if err == nil {
		done := cancel
		cancel = func() { stopGet(); done() }
	}
	if err != nil {
		cancel()
		if errors.Is(err, jetstream.ErrObjectNotFound) {
			return nil, fmt.Errorf("blob get %s: %w", digest, nimbus.ErrNotFound)
		}
		return nil, storeErr("blob get "+digest, err)
	}
	return &blobReader{ObjectResult: res, cancel: cancel}, nil
}

// blobReader releases Get's context when closed.
type blobReader struct {
	jetstream.ObjectResult
	cancel context.CancelFunc
}

func (r *blobReader) Close() error {
	err := r.ObjectResult.Close()
	r.cancel()
	return err
}

// Delete removes a blob. Errors: nimbus.ErrNotFound, nimbus.ErrInvalid for
// a bad digest.
func (b *blobs) Delete(ctx context.Context, digest string) error {
	if err := checkDigest(digest); err != nil {
		return err
	}
	if err := b.health(); err != nil {
		return err
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, blobWriteTimeout)
		defer cancel()
	}
	// The object store "deletes" a deleted object again without error;
	// check that it exists first.
	_, err := b.obs.GetInfo(ctx, digest)
	if err == nil {
		err = b.obs.Delete(ctx, digest)
	}
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		return fmt.Errorf("blob delete %s: %w", digest, nimbus.ErrNotFound)
	}
	if err != nil {
		return storeErr("blob delete "+digest, err)
	}
	return nil
}

// List describes every blob (the object store's objects named by a
// digest; anything else in the bucket is skipped).
func (b *blobs) List(ctx context.Context) ([]store.BlobInfo, error) {
	objs, err := b.obs.List(ctx)
	if errors.Is(err, jetstream.ErrNoObjectsFound) {
		return []store.BlobInfo{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("blob list: %w", err)
	}
	out := make([]store.BlobInfo, 0, len(objs))
	for _, o := range objs {
		if o.Deleted || checkDigest(o.Name) != nil {
			continue
		}
		out = append(out, store.BlobInfo{Digest: o.Name, Size: int64(o.Size), Modified: o.ModTime})
	}
	return out, nil
}
