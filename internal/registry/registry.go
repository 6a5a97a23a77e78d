// Package registry manages functions: it validates their configuration,
// stores code packages and metadata, and moves functions through Lambda's
// states (Pending -> Active, or Failed). The API, the CLI's manifest and the
// engine all go through it, so every path shares one set of rules.
package registry

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/codepkg"
	"github.com/nimbus-serverless/nimbus/internal/store"
)

// Preparer makes a code package ready to run on this node.
type Preparer interface {
	// Prepare unpacks zip, whose digest is hexDigest.
	Prepare(ctx context.Context, hexDigest string, zip []byte) (dir string, err error)
	// Ensure unpacks a stored package if this node lacks it.
	Ensure(ctx context.Context, hexDigest string) (dir string, err error)
}

// Config wires a Registry.
type Config struct {
	KV       store.KV    // the functions bucket
	Blobs    store.Blobs // code packages
	Code     Preparer    // the node's code cache
	Runtimes []string    // runtime IDs this node offers
	Limits   codepkg.Limits
	Logger   *slog.Logger
	Now      func() time.Time // defaults to time.Now
}

// Registry is the function catalogue.
type Registry struct {
	cfg Config
	log *slog.Logger

	cache *fnCache

	mu        sync.Mutex
	listeners []func(name string)
	wg        sync.WaitGroup // background preparations
	ctx       context.Context
	cancel    context.CancelFunc
}

// New returns a Registry.
func New(cfg Config) *Registry {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &Registry{cfg: cfg, log: cfg.Logger, ctx: ctx, cancel: cancel, cache: newFnCache()}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		r.watch(ctx)
	}()
	return r
}

// Close waits for background preparations to end.
func (r *Registry) Close() {
	r.cancel()
	r.wg.Wait()
}

// Runtimes lists the runtime IDs this node offers.
func (r *Registry) Runtimes() []string { return r.cfg.Runtimes }

// OnChange registers fn to be called after any function is written or
// deleted on this node.
func (r *Registry) OnChange(fn func(name string)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.listeners = append(r.listeners, fn)
}

func (r *Registry) changed(name string) {
	r.mu.Lock()
	ls := append([]func(string){}, r.listeners...)
	r.mu.Unlock()
	for _, l := range ls {
		l(name)
	}
}

// Get returns a function, from memory when it can. The result is shared:
// callers must not modify it. Errors: nimbus.ErrNotFound.
func (r *Registry) Get(ctx context.Context, name string) (*nimbus.Function, error) {
	fn, found, epoch := r.cache.get(name)
	if found {
		if fn == nil {
			return nil, notFound(name)
		}
		return fn, nil
	}
	fn, rev, err := r.get(ctx, name)
	if err == nil {
		r.cache.fill(name, fn, rev, epoch)
	}
	return fn, err
}

func notFound(name string) error {
	return nimbus.Errorf(nimbus.ErrNotFound, "Function not found: %s", name)
}

// get reads a function from the store.
func (r *Registry) get(ctx context.Context, name string) (*nimbus.Function, uint64, error) {
	e, err := r.cfg.KV.Get(ctx, name)
	if errors.Is(err, nimbus.ErrNotFound) {
		return nil, 0, notFound(name)
	}
	if err != nil {
		return nil, 0, fmt.Errorf("get function: %w", err)
	}
	var fn nimbus.Function
	if err := json.Unmarshal(e.Value, &fn); err != nil {
		return nil, 0, fmt.Errorf("decode function %s: %w", name, err)
	}
	return &fn, e.Revision, nil
}

// List returns every function, sorted by name.
func (r *Registry) List(ctx context.Context) ([]*nimbus.Function, error) {
	keys, err := r.cfg.KV.Keys(ctx)
	if err != nil {
		return nil, fmt.Errorf("list functions: %w", err)
	}
	sort.Strings(keys)
	out := make([]*nimbus.Function, 0, len(keys))
	for _, k := range keys {
		fn, err := r.Get(ctx, k)
		if errors.Is(err, nimbus.ErrNotFound) {
			continue // deleted meanwhile
		}
		if err != nil {
			return nil, err
		}
		out = append(out, fn)
	}
	return out, nil
}

// Create validates the input, stores the code and the function, and starts
// preparing the code on this node. The returned function is Pending; it
// becomes Active (or Failed) once its code is ready. Errors:
// nimbus.ErrValidation, nimbus.ErrInvalid, nimbus.ErrConflict (exists).
func (r *Registry) Create(ctx context.Context, in FunctionInput, zip []byte) (*nimbus.Function, error) {
	fn := &nimbus.Function{Name: in.Name, MemoryMB: nimbus.DefaultMemoryMB, Timeout: nimbus.DefaultTimeout}
	if err := ValidateName(in.Name); err != nil {
		return nil, err
	}
	if in.Runtime == nil {
		return nil, nimbus.Invalidf("Runtime is required for a function of PackageType Zip")
	}
	if err := in.apply(fn, r.cfg.Runtimes); err != nil {
		return nil, err
	}
	if len(zip) == 0 {
		return nil, nimbus.Invalidf("Code.ZipFile is required: Nimbus accepts zip packages uploaded in the request")
	}
	if _, err := r.Get(ctx, fn.Name); err == nil {
		return nil, exists(fn.Name) // before storing a package for nothing
	}
	if err := r.putCode(ctx, fn, zip); err != nil {
		return nil, err
	}
	now := r.cfg.Now().UTC()
	fn.LastModified = now
	fn.RevisionID = uuid.NewString()
	fn.State, fn.StateReason, fn.StateReasonCode = nimbus.StatePending, "The function is being created.", "Creating"
	fn.LastUpdateStatus = nimbus.UpdateInProgress
	b, err := json.Marshal(fn)
	if err != nil {
		return nil, fmt.Errorf("encode function: %w", err)
	}
	rev, err := r.cfg.KV.Create(ctx, fn.Name, b)
	if err != nil {
		r.dropUnusedCode(ctx, fn.CodeSHA256)
		if errors.Is(err, nimbus.ErrConflict) {
			return nil, exists(fn.Name)
		}
		return nil, fmt.Errorf("store function: %w", err)
	}
	r.cache.wrote(fn.Name, fn, rev)
	r.changed(fn.Name)
	r.prepare(fn.Name, fn.CodeSHA256, zip)
	return fn, nil
}

func exists(name string) error {
	return nimbus.Errorf(nimbus.ErrConflict, "Function already exist: %s", name)
}

// dropUnusedCode deletes a stored package that no function uses (after a
// create that did not happen, or a delete).
func (r *Registry) dropUnusedCode(ctx context.Context, digest string) {
	inUse, err := r.CodeInUse(ctx)
	if err != nil {
		r.log.Warn("list code in use", nimbus.LogErr, err)
		return
	}
	if inUse[digest] {
		return
	}
	if err := r.cfg.Blobs.Delete(ctx, digest); err != nil && !errors.Is(err, nimbus.ErrNotFound) {
		r.log.Warn("delete code blob", "digest", digest, nimbus.LogErr, err)
	}
}

// putCode validates a zip package and stores it in the blob store.
func (r *Registry) putCode(ctx context.Context, fn *nimbus.Function, zip []byte) error {
	if err := codepkg.Validate(zip, r.cfg.Limits); err != nil {
		return err
	}
	digest, size, err := r.cfg.Blobs.Put(ctx, bytes.NewReader(zip))
	if err != nil {
		return fmt.Errorf("store code: %w", err)
	}
	fn.CodeSHA256, fn.CodeSize = digest, size
	return nil
}

// Resume finishes the preparations a previous run left Pending or
// InProgress (it was stopped before they ended).
func (r *Registry) Resume(ctx context.Context) error {
	fns, err := r.List(ctx)
	if err != nil {
		return err
	}
	for _, fn := range fns {
		if fn.State == nimbus.StatePending || fn.LastUpdateStatus == nimbus.UpdateInProgress {
			r.prepare(fn.Name, fn.CodeSHA256, nil)
		}
	}
	return nil
}

// prepare unpacks the code (zip, or when nil the stored package) in the
// background and records the outcome.
func (r *Registry) prepare(name, digest string, zip []byte) {
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		var err error
		if zip != nil {
			_, err = r.cfg.Code.Prepare(r.ctx, digest, zip)
		} else {
			_, err = r.cfg.Code.Ensure(r.ctx, digest)
		}
		if r.ctx.Err() != nil {
			return // closing: the next start prepares it on demand
		}
		if err != nil {
			r.log.Error("prepare code", nimbus.LogFunction, name, "digest", digest, nimbus.LogErr, err)
		}
		r.settle(name, digest, err)
	}()
}

// settle moves a function whose code digest is still digest out of
// Pending/InProgress.
func (r *Registry) settle(name, digest string, prepErr error) {
	_, err := r.modify(r.ctx, name, "", func(fn *nimbus.Function) error {
		if fn.CodeSHA256 != digest {
			return errSkip
		}
		if prepErr != nil {
			fn.State, fn.StateReasonCode = nimbus.StateFailed, "InvalidZipFileException"
			fn.StateReason = "The code package could not be prepared: " + prepErr.Error()
			fn.LastUpdateStatus = nimbus.UpdateFailed
			return nil
		}
		if fn.State == nimbus.StateActive && fn.LastUpdateStatus == nimbus.UpdateSuccessful {
			return errSkip
		}
		fn.State, fn.StateReason, fn.StateReasonCode = nimbus.StateActive, "", ""
		fn.LastUpdateStatus = nimbus.UpdateSuccessful
		return nil
	})
	if err != nil && !errors.Is(err, errSkip) && !errors.Is(err, nimbus.ErrNotFound) && r.ctx.Err() == nil {
		r.log.Error("record function state", nimbus.LogFunction, name, nimbus.LogErr, err)
	}
}

var errSkip = errors.New("no change")

// modify applies change to the current function in a compare-and-swap loop.
// A non-empty revisionID must match the function's RevisionID.
func (r *Registry) modify(ctx context.Context, name, revisionID string, change func(*nimbus.Function) error) (*nimbus.Function, error) {
	for {
		fn, rev, err := r.get(ctx, name)
		if err != nil {
			return nil, err
		}
		if revisionID != "" && revisionID != fn.RevisionID {
			return nil, nimbus.Errorf(nimbus.ErrPreconditionFailed,
				"The Revision Id provided does not match the latest Revision Id. Call the GetFunction/GetAlias API to retrieve the latest Revision Id")
		}
		if err := change(fn); err != nil {
			return nil, err
		}
		fn.RevisionID = uuid.NewString()
		b, err := json.Marshal(fn)
		if err != nil {
			return nil, fmt.Errorf("encode function: %w", err)
		}
		newRev, err := r.cfg.KV.Update(ctx, name, b, rev)
		if errors.Is(err, nimbus.ErrPreconditionFailed) {
			continue // written meanwhile: read again
		}
		if err != nil {
			return nil, fmt.Errorf("store function: %w", err)
		}
		r.cache.wrote(name, fn, newRev)
		r.changed(name)
		return fn, nil
	}
}

// UpdateCode replaces a function's code. A non-empty revisionID must match.
// Errors: nimbus.ErrNotFound, nimbus.ErrInvalid, nimbus.ErrPreconditionFailed.
func (r *Registry) UpdateCode(ctx context.Context, name string, zip []byte, revisionID string) (*nimbus.Function, error) {
	if len(zip) == 0 {
		return nil, nimbus.Invalidf("ZipFile is required")
	}
	if _, err := r.Get(ctx, name); err != nil {
		return nil, err
	}
	var code nimbus.Function
	if err := r.putCode(ctx, &code, zip); err != nil {
		return nil, err
	}
	fn, err := r.modify(ctx, name, revisionID, func(fn *nimbus.Function) error {
		fn.CodeSHA256, fn.CodeSize = code.CodeSHA256, code.CodeSize
		fn.LastModified = r.cfg.Now().UTC()
		fn.LastUpdateStatus = nimbus.UpdateInProgress
		return nil
	})
	if err != nil {
		return nil, err
	}
	r.prepare(name, code.CodeSHA256, zip)
	return fn, nil
}

// UpdateConfig changes the fields set in in. A non-empty revisionID must
// match. Errors: nimbus.ErrNotFound, nimbus.ErrValidation, nimbus.ErrInvalid,
// nimbus.ErrPreconditionFailed.
func (r *Registry) UpdateConfig(ctx context.Context, name string, in FunctionInput, revisionID string) (*nimbus.Function, error) {
	return r.modify(ctx, name, revisionID, func(fn *nimbus.Function) error {
		if err := in.apply(fn, r.cfg.Runtimes); err != nil {
			return err
		}
		fn.LastModified = r.cfg.Now().UTC()
		return nil
	})
}

// SetConcurrency sets (or with nil clears) the reserved concurrency and the
// provisioned (warm) instance count; a negative provisioned leaves it as is.
// Errors: nimbus.ErrNotFound, nimbus.ErrValidation.
func (r *Registry) SetConcurrency(ctx context.Context, name string, reserved *int, setReserved bool, provisioned int) (*nimbus.Function, error) {
	if reserved != nil && *reserved < 0 {
		return nil, validationf("reservedConcurrentExecutions", *reserved, "Member must have value greater than or equal to 0")
	}
	return r.modify(ctx, name, "", func(fn *nimbus.Function) error {
		if setReserved {
			fn.ReservedConcurrency = reserved
		}
		if provisioned >= 0 {
			fn.ProvisionedConcurrency = provisioned
		}
		return nil
	})
}

// Delete removes a function, and its code blob when no other function uses
// it. Errors: nimbus.ErrNotFound.
func (r *Registry) Delete(ctx context.Context, name string) error {
	fn, err := r.Get(ctx, name)
	if err != nil {
		return err
	}
	if err := r.cfg.KV.Delete(ctx, name); err != nil {
		if errors.Is(err, nimbus.ErrNotFound) {
			return notFound(name)
		}
		return fmt.Errorf("delete function: %w", err)
	}
	r.cache.deletedLocally(name)
	r.changed(name)
	r.dropUnusedCode(ctx, fn.CodeSHA256)
	return nil
}

// CodeInUse returns the code digests that some function uses.
func (r *Registry) CodeInUse(ctx context.Context) (map[string]bool, error) {
	fns, err := r.List(ctx)
	if err != nil {
		return nil, err
	}
	inUse := make(map[string]bool, len(fns))
	for _, fn := range fns {
		inUse[fn.CodeSHA256] = true
	}
	return inUse, nil
}

// Code opens a stored code package. Errors: nimbus.ErrNotFound.
func (r *Registry) Code(ctx context.Context, digest string) (io.ReadCloser, error) {
	return r.cfg.Blobs.Get(ctx, digest)
}
