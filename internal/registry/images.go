package registry

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/image"
)

// Image functions (PackageType Image). The image's tag is resolved to a
// digest when the function is created or its code updated
// (FunctionImage.Resolved), and the function runs that digest until the
// next update. The node that wrote the function pulls and unpacks the
// image (State Pending until it is ready, Failed with Lambda's reason
// code otherwise); every other node warms it when it sees the change, and
// a node that starts warms the images of its functions and of their
// published versions (Resume), so that
// no instance start waits for a pull. CodeSHA256 is the image's manifest
// digest (hex), as Lambda shows it; no code package is stored.

// ImageStore is the node's image store (internal/image.Store) as the
// registry uses it.
type ImageStore interface {
	// Resolve returns ref's digest for this node's platform:
	// "host/repo@sha256:<hex>".
	Resolve(ctx context.Context, ref string) (string, error)
	// Ensure pulls and unpacks the resolved image if it is not on this
	// node.
	Ensure(ctx context.Context, resolved string) error
}

// ImageConfigInput is Lambda's ImageConfig as a request sets it: given,
// it replaces the function's whole ImageConfig.
type ImageConfigInput struct {
	EntryPoint       []string
	Command          []string
	WorkingDirectory string
}

// Limits of ImageConfig, as Lambda has them.
const (
	maxImageArgs    = 1500
	maxImageWorkDir = 1000
)

// applyImage applies the image fields of in to image function fn and
// checks what an image function may have.
func (in FunctionInput) applyImage(fn *nimbus.Function) error {
	if !fn.IsImage() {
		switch {
		case in.ImageConfig != nil && (len(in.ImageConfig.EntryPoint) > 0 || len(in.ImageConfig.Command) > 0 || in.ImageConfig.WorkingDirectory != ""):
			return nimbus.Invalidf("ImageConfig is only for functions of PackageType Image")
		case in.ImagePort != nil && *in.ImagePort != 0:
			return nimbus.Invalidf("NimbusImagePort is only for functions of PackageType Image")
		}
		return nil
	}
	if c := in.ImageConfig; c != nil {
		if len(c.EntryPoint) > maxImageArgs || len(c.Command) > maxImageArgs {
			return validationf("imageConfig", "...", fmt.Sprintf("EntryPoint and Command must have at most %d members", maxImageArgs))
		}
		if len(c.WorkingDirectory) > maxImageWorkDir || c.WorkingDirectory != "" && !strings.HasPrefix(c.WorkingDirectory, "/") {
			return nimbus.Invalidf("ImageConfig.WorkingDirectory %q must be an absolute path of at most %d characters", c.WorkingDirectory, maxImageWorkDir)
		}
		for _, s := range append(slices.Clone(c.EntryPoint), append(c.Command, c.WorkingDirectory)...) {
			if strings.IndexByte(s, 0) >= 0 {
				return nimbus.Invalidf("ImageConfig may not hold NUL bytes")
			}
		}
		fn.Image.EntryPoint, fn.Image.Command = slices.Clone(c.EntryPoint), slices.Clone(c.Command)
		fn.Image.WorkingDirectory = c.WorkingDirectory
	}
	if in.ImagePort != nil {
		if p := *in.ImagePort; p < 0 || p > 65535 {
			return nimbus.Invalidf("NimbusImagePort %d must be a port, from 1 to 65535 (0: %d)", p, nimbus.DefaultImagePort)
		}
		fn.Image.Port = *in.ImagePort
	}
	switch {
	case fn.Runtime != "" && fn.Runtime != "http":
		return nimbus.Invalidf("A function of PackageType Image has no Runtime (its entry point speaks the Runtime API), or Runtime http (it serves HTTP on NimbusImagePort, %d by default); not %s", nimbus.DefaultImagePort, fn.Runtime)
	case fn.Handler != "":
		return nimbus.Invalidf("A function of PackageType Image has no Handler: set ImageConfig.Command")
	case len(fn.Layers) > 0:
		return nimbus.Invalidf("Layers are only supported for functions of PackageType Zip")
	case fn.Image.Port != 0 && fn.Runtime != "http":
		return nimbus.Invalidf("NimbusImagePort is only for images served over HTTP (Runtime http)")
	}
	return nil
}

// CreateImage creates image function in.Name running the image at uri (a
// tag or a digest), which it resolves now. The function is Pending until
// the image is on this node. Errors: those of Create; nimbus.ErrInvalid for
// a reference that is not valid or names no image, or one the registry
// refuses this node; nimbus.ErrUnavailable when the registry cannot be
// reached.
func (r *Registry) CreateImage(ctx context.Context, in FunctionInput, uri string) (*nimbus.Function, error) {
	if err := r.imagesOn(); err != nil {
		return nil, err
	}
	if err := ValidateName(in.Name); err != nil {
		return nil, err
	}
	fn := &nimbus.Function{Name: in.Name, MemoryMB: nimbus.DefaultMemoryMB, Timeout: nimbus.DefaultTimeout,
		PackageType: nimbus.PackageImage, Image: &nimbus.FunctionImage{URI: uri}}
	if in.Runtime != nil && *in.Runtime == "" {
		in.Runtime = nil
	}
	if err := in.apply(fn, r.cfg.Runtimes); err != nil {
		return nil, err
	}
	if err := in.applyImage(fn); err != nil {
		return nil, err
	}
	if _, err := r.Get(ctx, fn.Name); err == nil {
		return nil, exists(fn.Name)
	}
	if err := r.resolveImage(ctx, fn); err != nil {
		return nil, err
	}
	fn, rev, err := r.createRecord(ctx, fn)
	if err != nil {
		return nil, err
	}
	r.cache.wrote(fn.Name, fn, rev)
	r.changed(fn.Name)
	r.prepareImage(fn.Name, fn.Image.Resolved, true)
	return fn, nil
}

// UpdateImage points image function name at the image uri, resolved now
// (UpdateFunctionCode's ImageUri): the function runs it once it is on this
// node. A non-empty revisionID must match. Errors: those of UpdateCode and
// CreateImage.
func (r *Registry) UpdateImage(ctx context.Context, name, uri, revisionID string) (*nimbus.Function, error) {
	if err := r.imagesOn(); err != nil {
		return nil, err
	}
	cur, err := r.Get(ctx, name)
	if err != nil {
		return nil, err
	}
	if !cur.IsImage() {
		return nil, nimbus.Invalidf("Please provide ZipFile: function %s is of PackageType Zip", name)
	}
	next := &nimbus.Function{Image: &nimbus.FunctionImage{URI: uri}}
	if err := r.resolveImage(ctx, next); err != nil {
		return nil, err
	}
	fn, err := r.modify(ctx, name, revisionID, func(fn *nimbus.Function) error {
		if !fn.IsImage() {
			return nimbus.Invalidf("Please provide ZipFile: function %s is of PackageType Zip", name)
		}
		im := *fn.Image
		im.URI, im.Resolved = next.Image.URI, next.Image.Resolved
		fn.Image, fn.CodeSHA256, fn.CodeSize = &im, next.CodeSHA256, 0
		fn.LastModified = r.cfg.Now().UTC()
		fn.LastUpdateStatus = nimbus.UpdateInProgress
		return nil
	})
	if err != nil {
		return nil, err
	}
	r.prepareImage(name, fn.Image.Resolved, true)
	return fn, nil
}

// imagesOn refuses image functions on a node without an image store.
func (r *Registry) imagesOn() error {
	if r.cfg.Images == nil {
		return nimbus.Invalidf("PackageType Image is not supported on this node: it has no image store")
	}
	return nil
}

// resolveImage resolves fn.Image.URI into fn.Image.Resolved and sets
// CodeSHA256 to its digest.
func (r *Registry) resolveImage(ctx context.Context, fn *nimbus.Function) error {
	uri := fn.Image.URI
	if uri == "" {
		return nimbus.Invalidf("Code.ImageUri is required for a function of PackageType Image")
	}
	resolved, err := r.cfg.Images.Resolve(ctx, uri)
	switch {
	case errors.Is(err, image.ErrInvalidRef):
		return nimbus.Invalidf("ImageUri %s is not a valid image reference: %v", uri, err)
	case errors.Is(err, image.ErrNotFound):
		return nimbus.Invalidf("Source image %s does not exist. Provide a valid source image. (%v)", uri, err)
	case errors.Is(err, image.ErrAuth):
		return nimbus.Invalidf("Nimbus does not have permission to access the image %s: %v", uri, err)
	case errors.Is(err, image.ErrInvalidImage):
		return nimbus.Invalidf("Source image %s cannot run on this node: %v", uri, err)
	case errors.Is(err, image.ErrUnavailable):
		return nimbus.Errorf(nimbus.ErrUnavailable, "The registry of image %s cannot be reached: %v", uri, err)
	case err != nil:
		return fmt.Errorf("resolve image %s: %w", uri, err)
	}
	_, digest, ok := strings.Cut(resolved, "@sha256:")
	if !ok || len(digest) != 64 {
		return fmt.Errorf("resolve image %s: %q is not a digest reference", uri, resolved)
	}
	fn.Image.Resolved, fn.CodeSHA256, fn.CodeSize = resolved, digest, 0
	return nil
}

// prepareImage pulls and unpacks the resolved image in the background;
// with settle, it then records the outcome in the function (Active, or
// Failed with the reason), as prepare does for a zip package. After Close
// it does nothing.
func (r *Registry) prepareImage(name, resolved string, settle bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed || r.cfg.Images == nil {
		return
	}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		err := r.cfg.Images.Ensure(r.ctx, resolved)
		if r.ctx.Err() != nil {
			return // closing: the next start resumes it
		}
		if err != nil {
			r.log.Error("pull image", nimbus.LogFunction, name, "image", resolved, nimbus.LogErr, err)
		}
		if settle {
			_, digest, _ := strings.Cut(resolved, "@sha256:")
			r.settle(name, digest, err)
		}
	}()
}

// warmImage pulls fn's image on this node in the background if fn is an
// image function that is not Failed: a function another node wrote.
func (r *Registry) warmImage(fn *nimbus.Function) {
	if fn == nil || !fn.IsImage() || fn.Image == nil || fn.Image.Resolved == "" || fn.State == nimbus.StateFailed {
		return
	}
	key := fn.Image.Resolved
	if _, busy := r.warming.LoadOrStore(key, true); busy {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed || r.cfg.Images == nil {
		r.warming.Delete(key)
		return
	}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		defer r.warming.Delete(key)
		if err := r.cfg.Images.Ensure(r.ctx, fn.Image.Resolved); err != nil && r.ctx.Err() == nil {
			r.log.Warn("warm image", nimbus.LogFunction, fn.Name, "image", fn.Image.Resolved, nimbus.LogErr, err)
		}
	}()
}

// warmVersions pulls, in the background and one after the other, the
// images of fn's published versions that $LATEST does not run: the
// versions an alias (or a qualified invoke) may start instances of. A
// version whose snapshot cannot be read is skipped with a warning.
func (r *Registry) warmVersions(fn *nimbus.Function) {
	if !fn.IsImage() {
		return
	}
	seen := map[string]bool{fn.CodeSHA256: true}
	var numbers []int
	for _, v := range fn.Versions {
		if !seen[v.CodeSHA256] {
			seen[v.CodeSHA256] = true
			numbers = append(numbers, v.Number)
		}
	}
	if len(numbers) == 0 {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed || r.cfg.Images == nil {
		return
	}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		for _, n := range numbers {
			v, err := r.Version(r.ctx, fn.Name, n)
			if r.ctx.Err() != nil {
				return
			}
			if err != nil {
				r.log.Warn("warm a version's image", nimbus.LogFunction, fn.Name, "version", n, nimbus.LogErr, err)
				continue
			}
			if v.Image == nil || v.Image.Resolved == "" || v.State == nimbus.StateFailed {
				continue
			}
			if err := r.cfg.Images.Ensure(r.ctx, v.Image.Resolved); err != nil && r.ctx.Err() == nil {
				r.log.Warn("warm a version's image", nimbus.LogFunction, fn.Name, "version", n, "image", v.Image.Resolved, nimbus.LogErr, err)
			}
		}
	}()
}

// imageFailure is the state reason code and reason of an image that could
// not be made ready, as Lambda names them.
func imageFailure(err error) (code, reason string) {
	switch {
	case errors.Is(err, image.ErrAuth):
		code = "ImageAccessDenied"
	case errors.Is(err, image.ErrNotFound):
		code = "ImageDeleted"
	case errors.Is(err, image.ErrInvalidImage), errors.Is(err, image.ErrInvalidRef):
		code = "InvalidImage"
	default:
		code = "InternalError"
	}
	return code, "The image could not be pulled: " + err.Error()
}

// ImageInUse reports whether a function or a published version of one
// runs the image of digest ("sha256:<hex>"), the keep of the image store's
// Collect; true also while the registry cannot tell (its functions are not
// all loaded, or its watch is down).
func (r *Registry) ImageInUse(digest string) bool {
	hex, ok := strings.CutPrefix(digest, "sha256:")
	if !ok {
		return false
	}
	used, known := r.cache.usesCode(hex)
	return used || !known
}
