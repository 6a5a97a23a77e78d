package registry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/nimbus-serverless/nimbus"
)

// CodeMinAge is how long a stored code package is left alone before
// CollectCode may delete it: a create or a code update stores its package
// before the function that uses it, and takes far less than this between
// the two. A deleted layer version is likewise left alone for CodeMinAge
// after its delete (collectLayers).
const CodeMinAge = 10 * time.Minute

// Code opens a stored code package. Errors: nimbus.ErrNotFound.
func (r *Registry) Code(ctx context.Context, digest string) (io.ReadCloser, error) {
	return r.cfg.Blobs.Get(ctx, digest)
}

// holdCode marks digest as being stored for a create or a code update of
// this node, so that it is not deleted as unused before the function that
// uses it is written; release undoes it.
func (r *Registry) holdCode(digest string) (release func()) {
	return r.hold(r.uploading, digest)
}

// holdLayers marks the layer versions arns as being written into a
// function's record (a create, a configuration update, a publish) by this
// node, so that they are not collected before it is written; release
// undoes it.
func (r *Registry) holdLayers(arns []string) (release func()) {
	return r.hold(r.layerHolds, layerKeys(arns)...)
}

// hold counts keys in held, a map under codeMu, until release.
func (r *Registry) hold(held map[string]int, keys ...string) (release func()) {
	r.codeMu.Lock()
	for _, k := range keys {
		held[k]++
	}
	r.codeMu.Unlock()
	return func() {
		r.codeMu.Lock()
		defer r.codeMu.Unlock()
		for _, k := range keys {
			if held[k]--; held[k] <= 0 {
				delete(held, k)
			}
		}
	}
}

// dropIfUnused deletes the stored package digest if no function uses it
// and no create or code update of this node is storing it. It does nothing
// while the registry's view of the functions is incomplete (the watch is
// starting again): the next collection sees to it.
func (r *Registry) dropIfUnused(ctx context.Context, digest string) (deleted bool, err error) {
	// Under codeMu, a create of the same package waits for the delete,
	// then stores the package again.
	r.codeMu.Lock()
	defer r.codeMu.Unlock()
	if r.uploading[digest] > 0 {
		return false, nil
	}
	if used, ok := r.cache.usesCode(digest); used || !ok {
		return false, nil
	}
	if layers, ok := r.layerCodeInUse(ctx); !ok || layers[digest] {
		return false, nil // a layer's package
	}
	err = r.cfg.Blobs.Delete(ctx, digest)
	if errors.Is(err, nimbus.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	r.log.Info("deleted unused code package", "digest", digest)
	return true, nil
}

// CollectCode deletes the stored code packages that no function uses and
// that were stored more than CodeMinAge ago: those whose delete failed (a
// full disk, a store time-out), those of creates that stopped half way, and
// those of deleted layer versions that nothing uses any more, whose records
// it deletes first (collectLayers). It returns how many packages it
// deleted; it goes on past a failed delete and returns the errors joined.
func (r *Registry) CollectCode(ctx context.Context) (int, error) {
	var errs []error
	if err := r.collectLayers(ctx); err != nil {
		errs = append(errs, err)
	}
	blobs, err := r.cfg.Blobs.List(ctx)
	if err != nil {
		return 0, fmt.Errorf("collect code: %w", errors.Join(append(errs, err)...))
	}
	cutoff := r.cfg.Now().Add(-CodeMinAge)
	n := 0
	for _, b := range blobs {
		if b.Modified.After(cutoff) {
			continue
		}
		deleted, err := r.dropIfUnused(ctx, b.Digest)
		if err != nil {
			errs = append(errs, err)
		}
		if deleted {
			n++
		}
	}
	if err := errors.Join(errs...); err != nil {
		return n, fmt.Errorf("collect code: %w", err)
	}
	return n, nil
}
