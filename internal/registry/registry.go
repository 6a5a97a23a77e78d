// Package registry manages functions: it validates their configuration,
// stores code packages and metadata, and moves functions through Lambda's
// states (Pending -> Active, or Failed). The API, the CLI's manifest and the
// engine all go through it, so every path shares one set of rules.
package registry

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc64"
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/codepkg"
	"github.com/nimbus-serverless/nimbus/internal/seal"
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
	KV    store.KV    // the functions bucket
	Blobs store.Blobs // code packages
	// Versions is the bucket of published versions' snapshots
	// (versions.go); nil: the registry publishes none.
	Versions store.KV
	Layers   store.KV // layer versions (layers.go); nil: the registry keeps none
	Code     Preparer // the node's code cache
	// Images is the node's image store (images.go); nil refuses image
	// functions.
	Images ImageStore
	// Key is the node key that seals functions' secrets in the store
	// (seal.go); required.
	Key      *seal.Key
	Runtimes []string // runtime IDs this node offers
	Limits   codepkg.Limits
	Logger   *slog.Logger
	Now      func() time.Time // defaults to time.Now
}

// Registry is the function catalogue. Open starts it (with a load of every
// function and a watch of the bucket) and Close stops it.
type Registry struct {
	cfg Config
	log *slog.Logger

	cache    *fnCache
	versions versionCache // published versions read (versions.go)
	layers   layerCache   // layer versions read (layers.go)
	// resync: the current run of the watch (its cancel) and whether Resync
	// asked for the next at once (watch.go).
	resyncMu     sync.Mutex
	followCancel context.CancelFunc
	resyncNow    bool
	// warming are the images this node is pulling in the background
	// (warmImage), by resolved reference.
	warming sync.Map

	mu        sync.Mutex
	listeners []func(name string)
	// uploading counts, per digest, the creates and code updates of this
	// node between storing their package and writing their function: the
	// package is not garbage yet.
	codeMu    sync.Mutex
	uploading map[string]int // under codeMu
	// layerHolds counts, per layer version key, the creates, configuration
	// updates and publishes of this node that may write it into a record:
	// it is not collected meanwhile (holdLayers).
	layerHolds map[string]int // under codeMu
	closed     bool
	// opened is set once Open has loaded every function: before, a
	// function sealed under another node key fails the load (watch.go).
	opened atomic.Bool
	wg     sync.WaitGroup // the watch and background preparations
	ctx    context.Context
	cancel context.CancelFunc
}

// Open returns a Registry holding every function in memory: it loads them
// and watches the bucket for changes until Close.
func Open(ctx context.Context, cfg Config) (*Registry, error) {
	if cfg.Key == nil {
		return nil, errors.New("registry: Config.Key (the node key) is required")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	bg, cancel := context.WithCancel(context.Background())
	r := &Registry{cfg: cfg, log: cfg.Logger, ctx: bg, cancel: cancel, cache: newFnCache(),
		uploading: make(map[string]int), layerHolds: make(map[string]int)}
	loaded := make(chan error, 1)
	var once sync.Once
	report := func(err error) { once.Do(func() { loaded <- err }) }
	r.wg.Go(func() { r.watch(bg, report) })
	var err error
	select {
	case err = <-loaded:
	case <-ctx.Done():
		err = ctx.Err()
	}
	if err != nil {
		_ = r.Close(context.Background())
		return nil, fmt.Errorf("load functions: %w", err)
	}
	r.opened.Store(true)
	return r, nil
}

// Close stops the watch and the background preparations and waits until
// they have ended, or returns ctx's error when ctx ends first (they go on
// stopping in the background).
func (r *Registry) Close(ctx context.Context) error {
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
	r.cancel()
	done := make(chan struct{})
	go func() {
		r.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("close registry: %w", ctx.Err())
	}
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
	if oe := (*OpenError)(nil); errors.As(err, &oe) {
		r.log.Error("open function's secrets", nimbus.LogFunction, name, nimbus.LogErr, err)
		err = nil // shown Failed, with the reason
	}
	if err == nil && r.cache.fill(name, fn, rev, epoch) {
		r.changed(name) // a load under way would not have seen it change
	}
	return fn, err
}

func notFound(name string) error {
	return nimbus.Errorf(nimbus.ErrNotFound, "Function not found: %s", name)
}

// get reads a function from the store. A function whose secrets do not
// open comes with an *OpenError, as decode returns it.
func (r *Registry) get(ctx context.Context, name string) (*nimbus.Function, uint64, error) {
	e, err := r.cfg.KV.Get(ctx, name)
	if errors.Is(err, nimbus.ErrNotFound) {
		return nil, 0, notFound(name)
	}
	if err != nil {
		return nil, 0, fmt.Errorf("get function: %w", err)
	}
	fn, _, err := r.decode(name, e.Value)
	return fn, e.Revision, err
}

// List returns every function, sorted by name. The functions are shared:
// callers must not modify them.
func (r *Registry) List(ctx context.Context) ([]*nimbus.Function, error) {
	var out []*nimbus.Function
	err := r.Walk(ctx, func(fn *nimbus.Function) bool {
		out = append(out, fn)
		return true
	})
	return out, err
}

// Page returns up to limit functions whose names sort after after (all
// when it is empty), in name order, and whether more follow: what one page
// of ListFunctions needs, at the cost of the page. The functions are
// shared: callers must not modify them.
func (r *Registry) Page(ctx context.Context, after string, limit int) ([]*nimbus.Function, bool, error) {
	if fns, more, ok := r.cache.page(after, limit); ok {
		return fns, more, nil
	}
	return r.pageFromStore(ctx, after, limit)
}

// walkPage is how many functions Walk takes from memory at a time.
const walkPage = 256

// Walk calls yield with every function in name order until it returns
// false. It holds no lock while yield runs (yield may call the registry);
// a function written meanwhile may be seen as it was or as it is.
func (r *Registry) Walk(ctx context.Context, yield func(*nimbus.Function) bool) error {
	after := ""
	for {
		fns, more, err := r.Page(ctx, after, walkPage)
		if err != nil {
			return err
		}
		for _, fn := range fns {
			if !yield(fn) {
				return nil
			}
		}
		if !more || len(fns) == 0 {
			return nil
		}
		after = fns[len(fns)-1].Name
	}
}

// pageFromStore is Page while the cache is not complete (the watch is
// starting again): it reads the store's keys and each function of the page.
func (r *Registry) pageFromStore(ctx context.Context, after string, limit int) ([]*nimbus.Function, bool, error) {
	keys, err := r.cfg.KV.Keys(ctx)
	if err != nil {
		return nil, false, fmt.Errorf("list functions: %w", err)
	}
	sort.Strings(keys)
	i := sort.SearchStrings(keys, after)
	if i < len(keys) && keys[i] == after {
		i++
	}
	out := make([]*nimbus.Function, 0, min(limit, len(keys)-i))
	for ; i < len(keys); i++ {
		if len(out) == limit {
			return out, true, nil
		}
		fn, err := r.Get(ctx, keys[i])
		if errors.Is(err, nimbus.ErrNotFound) {
			continue // deleted meanwhile
		}
		if err != nil {
			return nil, false, err
		}
		out = append(out, fn)
	}
	return out, false, nil
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
	if err := in.applyImage(fn); err != nil {
		return nil, err
	}
	if len(zip) == 0 {
		return nil, nimbus.Invalidf("Code.ZipFile is required: Nimbus accepts zip packages uploaded in the request")
	}
	if _, err := r.Get(ctx, fn.Name); err == nil {
		return nil, exists(fn.Name) // before storing a package for nothing
	}
	defer r.holdLayers(fn.Layers)() // not collected before the record names them
	if err := r.checkNewCode(ctx, fn, nil, zip); err != nil {
		return nil, err
	}
	release, err := r.putCode(ctx, fn, zip)
	if err != nil {
		return nil, err
	}
	fn, rev, err := r.createRecord(ctx, fn)
	release()
	if err != nil {
		r.dropUnusedCode(ctx, fn.CodeSHA256)
		return nil, err
	}
	r.cache.wrote(fn.Name, fn, rev)
	r.changed(fn.Name)
	r.prepare(fn.Name, fn.CodeSHA256, zip)
	return fn, nil
}

// createRecord writes a new function's record, Pending. It returns fn
// (also on an error) and its revision.
func (r *Registry) createRecord(ctx context.Context, fn *nimbus.Function) (*nimbus.Function, uint64, error) {
	now := r.cfg.Now().UTC()
	fn.LastModified = now
	fn.RevisionID = uuid.NewString()
	fn.State, fn.StateReason, fn.StateReasonCode = nimbus.StatePending, "The function is being created.", "Creating"
	fn.LastUpdateStatus = nimbus.UpdateInProgress
	b, err := r.encode(fn)
	if err != nil {
		return fn, 0, err
	}
	rev, err := r.cfg.KV.Create(ctx, fn.Name, b)
	if errors.Is(err, nimbus.ErrConflict) {
		return fn, 0, exists(fn.Name)
	}
	if err != nil {
		return fn, 0, fmt.Errorf("store function: %w", err)
	}
	return fn, rev, nil
}

func exists(name string) error {
	return nimbus.Errorf(nimbus.ErrConflict, "Function already exist: %s", name)
}

// dropUnusedCode deletes a stored package that no function uses (after a
// create that did not happen, or a delete). A failure is logged: the
// collection (CollectCode) deletes it later.
func (r *Registry) dropUnusedCode(ctx context.Context, digest string) {
	if _, err := r.dropIfUnused(ctx, digest); err != nil {
		r.log.Warn("delete code blob", "digest", digest, nimbus.LogErr, err)
	}
}

// putCode validates a zip package and stores it in the blob store. Until
// release is called, the package is not deleted as unused.
func (r *Registry) putCode(ctx context.Context, fn *nimbus.Function, zip []byte) (release func(), err error) {
	if err := codepkg.Validate(zip, r.cfg.Limits); err != nil {
		return nil, err
	}
	sum := sha256.Sum256(zip)
	release = r.holdCode(hex.EncodeToString(sum[:]))
	digest, size, err := r.cfg.Blobs.Put(ctx, bytes.NewReader(zip))
	if err != nil {
		release()
		return nil, fmt.Errorf("store code: %w", err)
	}
	fn.CodeSHA256, fn.CodeSize = digest, size
	fn.CodeCRC64 = crc64.Checksum(zip, crcTable())
	return release, nil
}

// crcTable is CRC-64/ECMA's table (Function Compute's codeChecksum).
var crcTable = sync.OnceValue(func() *crc64.Table { return crc64.MakeTable(crc64.ECMA) })

// Resume finishes the preparations a previous run left Pending or
// InProgress (it was stopped before they ended), and warms the images of
// image functions and of their published versions on this node.
func (r *Registry) Resume(ctx context.Context) error {
	return r.Walk(ctx, func(fn *nimbus.Function) bool {
		switch {
		case fn.IsImage() && fn.Image != nil:
			// Pending ones settle; the others are warmed on this node.
			pending := fn.State == nimbus.StatePending || fn.LastUpdateStatus == nimbus.UpdateInProgress
			if pending || fn.State != nimbus.StateFailed {
				r.prepareImage(fn.Name, fn.Image.Resolved, pending)
			}
			// Its published versions (and so what its aliases point
			// at) may run other images, invokable whatever $LATEST's state.
			r.warmVersions(fn)
		case fn.State == nimbus.StatePending || fn.LastUpdateStatus == nimbus.UpdateInProgress:
			r.prepare(fn.Name, fn.CodeSHA256, nil)
		}
		return true
	})
}

// prepare unpacks the code (zip, or when nil the stored package) in the
// background and records the outcome; after Close it does nothing (the
// next start resumes it).
func (r *Registry) prepare(name, digest string, zip []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return
	}
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
			if fn.IsImage() {
				fn.StateReasonCode, fn.StateReason = imageFailure(prepErr)
			}
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

// staleRevision is Lambda's error for a RevisionId that is not the
// function's or alias's.
func staleRevision() error {
	return nimbus.Errorf(nimbus.ErrPreconditionFailed,
		"The Revision Id provided does not match the latest Revision Id. Call the GetFunction/GetAlias API to retrieve the latest Revision Id")
}

// modify applies change to the current function in a compare-and-swap loop.
// A non-empty revisionID must match the function's RevisionID. The write
// gives the function a new RevisionID, unless change returns
// errKeepRevision (its change is written, and the RevisionID kept).
func (r *Registry) modify(ctx context.Context, name, revisionID string, change func(*nimbus.Function) error) (*nimbus.Function, error) {
	for {
		fn, rev, err := r.get(ctx, name)
		if oe := (*OpenError)(nil); errors.As(err, &oe) {
			return nil, nimbus.Errorf(nimbus.ErrConflict, "%v. It cannot be changed until they open: delete it and create it again", oe)
		}
		if err != nil {
			return nil, err
		}
		if revisionID != "" && revisionID != fn.RevisionID {
			return nil, staleRevision()
		}
		err = change(fn)
		keep := errors.Is(err, errKeepRevision)
		if err != nil && !keep {
			return nil, err
		}
		if !keep {
			fn.RevisionID = uuid.NewString()
		}
		b, err := r.encode(fn)
		if err != nil {
			return nil, err
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
	if cur, err := r.Get(ctx, name); err != nil {
		return nil, err
	} else if cur.IsImage() {
		return nil, nimbus.Invalidf("Please provide ImageUri: function %s is of PackageType Image", name)
	} else if err := r.checkNewCode(ctx, cur, cur.Layers, zip); err != nil {
		return nil, err
	}
	var code nimbus.Function
	release, err := r.putCode(ctx, &code, zip)
	if err != nil {
		return nil, err
	}
	fn, err := r.modify(ctx, name, revisionID, func(fn *nimbus.Function) error {
		fn.CodeSHA256, fn.CodeSize, fn.CodeCRC64 = code.CodeSHA256, code.CodeSize, code.CodeCRC64
		fn.LastModified = r.cfg.Now().UTC()
		fn.LastUpdateStatus = nimbus.UpdateInProgress
		return nil
	})
	release()
	if err != nil {
		r.dropUnusedCode(ctx, code.CodeSHA256)
		return nil, err
	}
	r.prepare(name, code.CodeSHA256, zip)
	return fn, nil
}

// UpdateConfig changes the fields set in in. A non-empty revisionID must
// match. Errors: nimbus.ErrNotFound, nimbus.ErrValidation, nimbus.ErrInvalid,
// nimbus.ErrPreconditionFailed.
func (r *Registry) UpdateConfig(ctx context.Context, name string, in FunctionInput, revisionID string) (*nimbus.Function, error) {
	if in.Layers != nil {
		defer r.holdLayers(*in.Layers)() // not collected before the record names them
	}
	return r.modify(ctx, name, revisionID, func(fn *nimbus.Function) error {
		in := in // a retry starts again from the request
		had := fn.Layers
		if fn.IsImage() && in.Runtime != nil && *in.Runtime == "" {
			fn.Runtime, in.Runtime = "", nil // Lambda's image contract
		}
		if err := in.apply(fn, r.cfg.Runtimes); err != nil {
			return err
		}
		if err := in.applyImage(fn); err != nil {
			return err
		}
		if in.Layers != nil || in.Runtime != nil {
			if err := r.checkLayers(ctx, fn, had, -1); err != nil {
				return err
			}
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
	if r.cfg.Versions != nil {
		r.deleteVersions(ctx, fn)
	}
	return nil
}

// CodeInUse returns the code digests that some function uses.
func (r *Registry) CodeInUse(ctx context.Context) (map[string]bool, error) {
	if inUse, ok := r.cache.codeInUse(); ok {
		return inUse, nil
	}
	inUse := make(map[string]bool)
	err := r.Walk(ctx, func(fn *nimbus.Function) bool {
		for _, d := range codeOf(fn) {
			inUse[d] = true
		}
		return true
	})
	return inUse, err
}
