package registry

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/codepkg"
	"github.com/nimbus-serverless/nimbus/internal/lazyre"
)

// Layers: a layer version is a zip package published under a layer name
// and numbered 1, 2, ... per name, which functions add to their code under
// /opt (Lambda's layers). Each version is a record of the layers bucket
// (Config.Layers), key <name>.<number>, beside a counter record, key
// <name>, holding the last number given (numbers are not given again). Its
// package is a blob of the code store, kept while its record exists.
//
// Deleting a layer version hides it (GetLayerVersion, the lists and new
// function configurations no longer see it) but keeps its record and
// package, so that the functions and versions that use it go on running
// as in Lambda. Once no function and no published version names it, the
// collection (collectLayers, part of CollectCode) deletes its record, and
// the code collection then its package unless something else has the same
// digest. Layer records hold no secrets and are not sealed.
//
// What keeps the collection from deleting a version a function is about to
// name: a deleted version is never added to a function (checkLayers), so
// only a create or configuration update that checked it before the delete,
// or a publish copying $LATEST's layers, can still write it into a record.
// On this node they hold the version (holdLayers) from before their check
// until their record is written; on other nodes they end long before
// CodeMinAge, and the collection leaves a version alone until CodeMinAge
// after its delete (DeletedAt).

// MaxLayers is how many layers a function may use.
const MaxLayers = 5

// LayerVersion is a published layer version.
type LayerVersion struct {
	Name                    string    `json:"name"`
	Version                 int       `json:"version"`
	Description             string    `json:"description,omitempty"`
	CompatibleRuntimes      []string  `json:"compatibleRuntimes,omitempty"`
	CompatibleArchitectures []string  `json:"compatibleArchitectures,omitempty"`
	LicenseInfo             string    `json:"licenseInfo,omitempty"`
	CodeSHA256              string    `json:"codeSha256"` // hex digest of the zip
	CodeSize                int64     `json:"codeSize"`
	UnzippedSize            int64     `json:"unzippedSize"`
	Created                 time.Time `json:"created"`
	// Deleted: DeleteLayerVersion hid it, at DeletedAt; its package stays
	// for the functions that use it until none does (collectLayers).
	Deleted   bool      `json:"deleted,omitempty"`
	DeletedAt time.Time `json:"deletedAt,omitzero"`
	// Policy is its resource policy's statements (Add/
	// RemoveLayerVersionPermission) and PolicyRevision the policy's
	// revision ("" while it has none).
	Policy         []LayerStatement `json:"policy,omitempty"`
	PolicyRevision string           `json:"policyRevision,omitempty"`
}

// LayerStatement is a statement of a layer version's policy: Principal (an
// account id or "*", with OrganizationID) may do Action.
type LayerStatement struct {
	Sid            string `json:"sid"`
	Action         string `json:"action"`
	Principal      string `json:"principal"`
	OrganizationID string `json:"organizationId,omitempty"`
}

// LayerInput is what PublishLayerVersion takes besides the zip.
type LayerInput struct {
	Name                    string
	Description             string
	CompatibleRuntimes      []string
	CompatibleArchitectures []string
	LicenseInfo             string
}

var (
	layerNameRE = lazyre.New(`^[a-zA-Z0-9_-]{1,140}$`)
	// layerArnRE is a layer version's ARN: name and number.
	layerArnRE = lazyre.New(`^arn:[a-zA-Z0-9-]+:lambda:([a-zA-Z0-9-]+):(\d{12}):layer:([a-zA-Z0-9_-]+):([0-9]+)$`)
	// layerNameArnRE is a layer's ARN, without a number.
	layerNameArnRE = lazyre.New(`^arn:[a-zA-Z0-9-]+:lambda:[a-zA-Z0-9-]+:\d{12}:layer:([a-zA-Z0-9_-]+)$`)
	runtimeIDRE    = lazyre.New(`^[a-z0-9.]{1,32}$`)
	accountRE      = lazyre.New(`^\d{12}$`)
	sidRE          = lazyre.New(`^[a-zA-Z0-9_-]{1,100}$`)
)

// ParseLayerName returns the layer name of s, a name or a layer's ARN.
// Errors: nimbus.ErrValidation.
func ParseLayerName(s string) (string, error) {
	if m := layerNameArnRE().FindStringSubmatch(s); m != nil {
		s = m[1]
	}
	if len(s) > 140 || !layerNameRE().MatchString(s) {
		return "", validationf("layerName", s,
			`Member must satisfy regular expression pattern: (arn:[a-zA-Z0-9-]+:lambda:[a-zA-Z0-9-]+:\d{12}:layer:[a-zA-Z0-9-_]+)|[a-zA-Z0-9-_]+`)
	}
	return s, nil
}

// ParseLayerArn returns the name and number of a layer version's ARN, and
// its region and account. Errors: nimbus.ErrValidation.
func ParseLayerArn(arn string) (name string, version int, region, account string, err error) {
	m := layerArnRE().FindStringSubmatch(arn)
	if m == nil || len(arn) > 140 {
		return "", 0, "", "", validationf("layerVersionArn", arn,
			`Member must satisfy regular expression pattern: arn:[a-zA-Z0-9-]+:lambda:[a-zA-Z0-9-]+:\d{12}:layer:[a-zA-Z0-9-_]+:[0-9]+`)
	}
	n, err := strconv.Atoi(m[4])
	if err != nil || n < 1 {
		return "", 0, "", "", nimbus.Invalidf("Layer version %s does not exist.", arn)
	}
	return m[3], n, m[1], m[2], nil
}

func layerKey(name string, n int) string { return name + "." + strconv.Itoa(n) }

// parseLayerKey returns the name and number of a layer version's key; ok
// is false for a layer's counter.
func parseLayerKey(key string) (name string, n int, ok bool) {
	name, num, found := strings.Cut(key, ".")
	n, err := strconv.Atoi(num)
	return name, n, found && err == nil
}

// layerKeys returns the keys of the layer version ARNs that parse.
func layerKeys(arns []string) []string {
	keys := make([]string, 0, len(arns))
	for _, arn := range arns {
		if name, n, _, _, err := ParseLayerArn(arn); err == nil {
			keys = append(keys, layerKey(name, n))
		}
	}
	return keys
}

func layerNotFound() error {
	return nimbus.Errorf(nimbus.ErrNotFound, "The resource you requested does not exist.")
}

// layerCache holds the layer versions a node has read, by key: what a
// function needs of them (their package and sizes) never changes.
type layerCache struct {
	mu sync.Mutex
	m  map[string]*LayerVersion
}

func (c *layerCache) get(key string) *LayerVersion {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.m[key]
}

func (c *layerCache) put(key string, v *LayerVersion) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = make(map[string]*LayerVersion)
	}
	c.m[key] = v
}

func (c *layerCache) drop(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.m, key)
}

func (r *Registry) layersOn() error {
	if r.cfg.Layers == nil {
		return nimbus.Invalidf("this node keeps no layers")
	}
	return nil
}

// PublishLayer validates and stores zip as the next version of a layer.
// Errors: nimbus.ErrValidation, nimbus.ErrInvalid.
func (r *Registry) PublishLayer(ctx context.Context, in LayerInput, zip []byte) (*LayerVersion, error) {
	if err := r.layersOn(); err != nil {
		return nil, err
	}
	v, err := newLayerVersion(in)
	if err != nil {
		return nil, err
	}
	if len(zip) == 0 {
		return nil, nimbus.Invalidf("Content.ZipFile is required: Nimbus accepts zip packages uploaded in the request")
	}
	if v.UnzippedSize, err = codepkg.Measure(zip, r.cfg.Limits); err != nil {
		return nil, err
	}
	digest, _ := codepkg.Digest(zip)
	release := r.holdCode(digest) // not collected before its record is written
	defer release()
	if v.CodeSHA256, v.CodeSize, err = r.cfg.Blobs.Put(ctx, bytes.NewReader(zip)); err != nil {
		return nil, fmt.Errorf("store layer: %w", err)
	}
	if v.Version, err = r.nextLayerVersion(ctx, v.Name); err != nil {
		return nil, err
	}
	v.Created = r.cfg.Now().UTC()
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	if _, err := r.cfg.Layers.Create(ctx, layerKey(v.Name, v.Version), b); err != nil {
		return nil, fmt.Errorf("store layer: %w", err)
	}
	r.layers.put(layerKey(v.Name, v.Version), v)
	return v, nil
}

// newLayerVersion checks in as Lambda does.
func newLayerVersion(in LayerInput) (*LayerVersion, error) {
	name, err := ParseLayerName(in.Name)
	if err != nil {
		return nil, err
	}
	if utf8.RuneCountInString(in.Description) > 256 {
		return nil, validationf("description", "...", "Member must have length less than or equal to 256")
	}
	if utf8.RuneCountInString(in.LicenseInfo) > 512 {
		return nil, validationf("licenseInfo", "...", "Member must have length less than or equal to 512")
	}
	if len(in.CompatibleRuntimes) > 15 {
		return nil, validationf("compatibleRuntimes", in.CompatibleRuntimes, "Member must have length less than or equal to 15")
	}
	for _, rt := range in.CompatibleRuntimes {
		if !runtimeIDRE().MatchString(rt) {
			return nil, validationf("compatibleRuntimes", rt, "Member must satisfy enum value set of Lambda's runtimes")
		}
	}
	if len(in.CompatibleArchitectures) > 2 {
		return nil, validationf("compatibleArchitectures", in.CompatibleArchitectures, "Member must have length less than or equal to 2")
	}
	for _, a := range in.CompatibleArchitectures {
		if a != "x86_64" && a != "arm64" {
			return nil, validationf("compatibleArchitectures", a, "Member must satisfy enum value set: [x86_64, arm64]")
		}
	}
	return &LayerVersion{Name: name, Description: in.Description, LicenseInfo: in.LicenseInfo,
		CompatibleRuntimes: in.CompatibleRuntimes, CompatibleArchitectures: in.CompatibleArchitectures}, nil
}

// layerCounter is the record of a layer's last version number.
type layerCounter struct {
	Last int `json:"last"`
}

// nextLayerVersion takes the next number of layer name.
func (r *Registry) nextLayerVersion(ctx context.Context, name string) (int, error) {
	for {
		e, err := r.cfg.Layers.Get(ctx, name)
		if errors.Is(err, nimbus.ErrNotFound) {
			b, _ := json.Marshal(layerCounter{Last: 1})
			if _, err := r.cfg.Layers.Create(ctx, name, b); errors.Is(err, nimbus.ErrConflict) {
				continue
			} else if err != nil {
				return 0, fmt.Errorf("store layer: %w", err)
			}
			return 1, nil
		}
		if err != nil {
			return 0, fmt.Errorf("get layer: %w", err)
		}
		var c layerCounter
		if err := json.Unmarshal(e.Value, &c); err != nil {
			return 0, fmt.Errorf("decode layer %s: %w", name, err)
		}
		c.Last++
		b, _ := json.Marshal(c)
		if _, err := r.cfg.Layers.Update(ctx, name, b, e.Revision); errors.Is(err, nimbus.ErrPreconditionFailed) {
			continue
		} else if err != nil {
			return 0, fmt.Errorf("store layer: %w", err)
		}
		return c.Last, nil
	}
}

// readLayer reads a layer version's record, deleted or not, and its
// revision. Errors: nimbus.ErrNotFound.
func (r *Registry) readLayer(ctx context.Context, name string, n int) (*LayerVersion, uint64, error) {
	if err := r.layersOn(); err != nil {
		return nil, 0, err
	}
	e, err := r.cfg.Layers.Get(ctx, layerKey(name, n))
	if errors.Is(err, nimbus.ErrNotFound) {
		return nil, 0, layerNotFound()
	}
	if err != nil {
		return nil, 0, fmt.Errorf("get layer: %w", err)
	}
	var v LayerVersion
	if err := json.Unmarshal(e.Value, &v); err != nil {
		return nil, 0, fmt.Errorf("decode layer %s: %w", e.Key, err)
	}
	return &v, e.Revision, nil
}

// Layer returns a layer version that is not deleted. Errors:
// nimbus.ErrNotFound.
func (r *Registry) Layer(ctx context.Context, name string, n int) (*LayerVersion, error) {
	v, _, err := r.readLayer(ctx, name, n)
	if err == nil && v.Deleted {
		return nil, layerNotFound()
	}
	return v, err
}

// LayerVersions returns the versions of every layer that are not deleted,
// by layer name, newest first.
func (r *Registry) LayerVersions(ctx context.Context) (map[string][]*LayerVersion, error) {
	if err := r.layersOn(); err != nil {
		return nil, err
	}
	keys, err := r.cfg.Layers.Keys(ctx)
	if err != nil {
		return nil, fmt.Errorf("list layers: %w", err)
	}
	out := make(map[string][]*LayerVersion)
	for _, k := range keys {
		name, n, ok := parseLayerKey(k)
		if !ok {
			continue // a counter
		}
		v, err := r.Layer(ctx, name, n)
		if errors.Is(err, nimbus.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out[name] = append(out[name], v)
	}
	for _, vs := range out {
		sort.Slice(vs, func(i, j int) bool { return vs[i].Version > vs[j].Version })
	}
	return out, nil
}

// DeleteLayer deletes a layer version: it is hidden, its package kept for
// the functions that use it until none does. Deleting one that does not
// exist is not an error, as in Lambda.
func (r *Registry) DeleteLayer(ctx context.Context, name string, n int) error {
	err := r.modifyLayer(ctx, name, n, "", func(v *LayerVersion) error {
		if v.Deleted {
			return errSkip
		}
		v.Deleted, v.DeletedAt = true, r.cfg.Now().UTC()
		return nil
	})
	if errors.Is(err, errSkip) {
		return nil
	}
	return err
}

// modifyLayer applies change to a layer version that is not deleted in a
// compare-and-swap loop; a non-empty policyRevision must match its
// PolicyRevision. A version that does not exist is skipped.
func (r *Registry) modifyLayer(ctx context.Context, name string, n int, policyRevision string, change func(*LayerVersion) error) error {
	for {
		v, rev, err := r.readLayer(ctx, name, n)
		if errors.Is(err, nimbus.ErrNotFound) {
			return errSkip
		}
		if err != nil {
			return err
		}
		if policyRevision != "" && policyRevision != v.PolicyRevision {
			return nimbus.Errorf(nimbus.ErrPreconditionFailed,
				"The Revision Id provided does not match the latest Revision Id. Call the GetLayerVersionPolicy API to retrieve the latest Revision Id")
		}
		if err := change(v); err != nil {
			return err
		}
		b, err := json.Marshal(v)
		if err != nil {
			return err
		}
		if _, err := r.cfg.Layers.Update(ctx, layerKey(name, n), b, rev); errors.Is(err, nimbus.ErrPreconditionFailed) {
			continue
		} else if err != nil {
			return fmt.Errorf("store layer: %w", err)
		}
		return nil
	}
}

// AddLayerPermission adds a statement to a layer version's policy and
// returns the policy's new revision. Errors: nimbus.ErrNotFound,
// nimbus.ErrConflict (the Sid is taken), nimbus.ErrPreconditionFailed,
// nimbus.ErrInvalid.
func (r *Registry) AddLayerPermission(ctx context.Context, name string, n int, st LayerStatement, revision string) (string, error) {
	if st.Action != "lambda:GetLayerVersion" {
		return "", nimbus.Invalidf("Action %q is not allowed: a layer version's policy allows only lambda:GetLayerVersion", st.Action)
	}
	if st.Principal != "*" && !accountRE().MatchString(st.Principal) {
		return "", nimbus.Invalidf("The principal %q is invalid: use an account id or *", st.Principal)
	}
	if st.OrganizationID != "" && st.Principal != "*" {
		return "", nimbus.Invalidf("OrganizationId requires the principal *")
	}
	if !sidRE().MatchString(st.Sid) {
		return "", validationf("statementId", st.Sid, "Member must satisfy regular expression pattern: ([a-zA-Z0-9-_]+)")
	}
	next := uuid.NewString()
	err := r.modifyLayer(ctx, name, n, revision, func(v *LayerVersion) error {
		if v.Deleted {
			return layerNotFound()
		}
		if slices.ContainsFunc(v.Policy, func(s LayerStatement) bool { return s.Sid == st.Sid }) {
			return nimbus.Errorf(nimbus.ErrConflict,
				"The statement id (%s) provided already exists. Please provide a new statement id, or remove the existing statement.", st.Sid)
		}
		v.Policy = append(v.Policy, st)
		v.PolicyRevision = next
		return nil
	})
	if errors.Is(err, errSkip) {
		return "", layerNotFound()
	}
	return next, err
}

// RemoveLayerPermission removes a statement of a layer version's policy.
// Errors: nimbus.ErrNotFound, nimbus.ErrPreconditionFailed.
func (r *Registry) RemoveLayerPermission(ctx context.Context, name string, n int, sid, revision string) error {
	err := r.modifyLayer(ctx, name, n, revision, func(v *LayerVersion) error {
		i := slices.IndexFunc(v.Policy, func(s LayerStatement) bool { return s.Sid == sid })
		if v.Deleted || i < 0 {
			return nimbus.Errorf(nimbus.ErrNotFound, "Statement %s is not found in resource policy.", sid)
		}
		v.Policy = slices.Delete(v.Policy, i, i+1)
		v.PolicyRevision = uuid.NewString()
		if len(v.Policy) == 0 {
			v.PolicyRevision = ""
		}
		return nil
	})
	if errors.Is(err, errSkip) {
		return layerNotFound()
	}
	return err
}

// resolveLayers returns the layer versions of the ARNs, deleted ones
// included. Errors: nimbus.ErrInvalid (one does not exist).
func (r *Registry) resolveLayers(ctx context.Context, arns []string) ([]*LayerVersion, error) {
	out := make([]*LayerVersion, 0, len(arns))
	for _, arn := range arns {
		name, n, _, _, err := ParseLayerArn(arn)
		if err != nil {
			return nil, err
		}
		key := layerKey(name, n)
		v := r.layers.get(key)
		if v == nil {
			if v, _, err = r.readLayer(ctx, name, n); errors.Is(err, nimbus.ErrNotFound) {
				return nil, nimbus.Invalidf("Layer version %s does not exist.", arn)
			} else if err != nil {
				return nil, err
			}
			r.layers.put(key, v)
		}
		out = append(out, v)
	}
	return out, nil
}

// LayerCode returns the package digest and zipped size of each layer
// version ARN, in order. Errors: nimbus.ErrInvalid (one does not exist).
func (r *Registry) LayerCode(ctx context.Context, arns []string) (digests []string, sizes []int64, err error) {
	vs, err := r.resolveLayers(ctx, arns)
	if err != nil {
		return nil, nil, err
	}
	for _, v := range vs {
		digests, sizes = append(digests, v.CodeSHA256), append(sizes, v.CodeSize)
	}
	return digests, sizes, nil
}

// checkLayers checks fn's layers as a create or a configuration update
// sets them (had are those it had before: a deleted version it already
// uses stays allowed) and, with its code's unzipped size (negative:
// unknown, read from the store), the total against the unzipped limit.
func (r *Registry) checkLayers(ctx context.Context, fn *nimbus.Function, had []string, codeUnzipped int64) error {
	if len(fn.Layers) == 0 {
		return nil
	}
	if err := r.layersOn(); err != nil {
		return err
	}
	if len(fn.Layers) > MaxLayers {
		return nimbus.Invalidf("Cannot reference more than %d layers.", MaxLayers)
	}
	vs, err := r.resolveLayers(ctx, fn.Layers)
	if err != nil {
		return err
	}
	seen := map[string]bool{}
	var total int64
	for i, v := range vs {
		arn := fn.Layers[i]
		if !slices.Contains(had, arn) { // not deleted since read (the cache does not know)
			if _, err := r.Layer(ctx, v.Name, v.Version); errors.Is(err, nimbus.ErrNotFound) {
				return nimbus.Invalidf("Layer version %s does not exist.", arn)
			} else if err != nil {
				return err
			}
		}
		if seen[v.Name] {
			return nimbus.Invalidf("Two different versions of the same layer are not allowed: %s", arn)
		}
		seen[v.Name] = true
		if len(v.CompatibleRuntimes) > 0 && !slices.Contains(v.CompatibleRuntimes, fn.Runtime) {
			return nimbus.Invalidf("Layer version %s is not compatible with runtime %s: it lists %s",
				arn, fn.Runtime, strings.Join(v.CompatibleRuntimes, ", "))
		}
		total += v.UnzippedSize
	}
	if codeUnzipped < 0 {
		if codeUnzipped, err = r.codeUnzipped(ctx, fn.CodeSHA256); err != nil {
			return err
		}
	}
	total += codeUnzipped
	if max := r.maxUnzipped(); total > max {
		return nimbus.Invalidf("Function code combined with layers exceeds the maximum allowed size of %d bytes. The actual size is %d bytes.", max, total)
	}
	return nil
}

func (r *Registry) maxUnzipped() int64 {
	if r.cfg.Limits.MaxUnzipped > 0 {
		return r.cfg.Limits.MaxUnzipped
	}
	return codepkg.DefaultMaxUnzipped
}

// codeUnzipped is the unzipped size of the stored package digest.
func (r *Registry) codeUnzipped(ctx context.Context, digest string) (int64, error) {
	rc, err := r.cfg.Blobs.Get(ctx, digest)
	if err != nil {
		return 0, fmt.Errorf("read code: %w", err)
	}
	defer rc.Close()
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(rc); err != nil {
		return 0, fmt.Errorf("read code: %w", err)
	}
	return codepkg.Measure(buf.Bytes(), r.cfg.Limits)
}

// layerCodeInUse returns the package digests of every layer version
// (deleted ones too: functions may use them). ok is false when it could
// not read them all.
func (r *Registry) layerCodeInUse(ctx context.Context) (inUse map[string]bool, ok bool) {
	inUse = make(map[string]bool)
	if r.cfg.Layers == nil {
		return inUse, true
	}
	keys, err := r.cfg.Layers.Keys(ctx)
	if err != nil {
		return nil, false
	}
	for _, k := range keys {
		name, n, found := parseLayerKey(k)
		if !found {
			continue
		}
		v := r.layers.get(k)
		if v == nil {
			var err error
			if v, _, err = r.readLayer(ctx, name, n); errors.Is(err, nimbus.ErrNotFound) {
				continue
			} else if err != nil {
				return nil, false
			}
			r.layers.put(k, v)
		}
		inUse[v.CodeSHA256] = true
	}
	return inUse, true
}

// checkNewCode checks fn's layers and the total size of zip, fn's new
// code, and its layers; had are the layers fn had (nil for a new one).
func (r *Registry) checkNewCode(ctx context.Context, fn *nimbus.Function, had []string, zip []byte) error {
	if len(fn.Layers) == 0 || len(zip) == 0 {
		return nil
	}
	n, err := codepkg.Measure(zip, r.cfg.Limits)
	if err != nil {
		return err
	}
	return r.checkLayers(ctx, fn, had, n)
}

// LayerPreparer is a code cache that also merges layers (*codepkg.Cache).
type LayerPreparer interface {
	Ensure(ctx context.Context, hexDigest string) (dir string, err error)
	EnsureLayers(ctx context.Context, key string, digests []string) (dir string, err error)
}

// CodeWithLayers returns c as the engine takes it: a code cache that also
// prepares functions' layers, which it finds in the registry.
func (r *Registry) CodeWithLayers(c LayerPreparer) *LayeredCode {
	return &LayeredCode{LayerPreparer: c, reg: r}
}

// LayeredCode is a code cache that prepares functions' layers too.
type LayeredCode struct {
	LayerPreparer
	reg *Registry
}

// EnsureLayers returns the directory of the layer versions (their ARNs)
// merged in order. Errors: nimbus.ErrInvalid (one does not exist), those
// of the cache.
func (l *LayeredCode) EnsureLayers(ctx context.Context, arns []string) (string, error) {
	digests, _, err := l.reg.LayerCode(ctx, arns)
	if err != nil {
		return "", err
	}
	return l.LayerPreparer.EnsureLayers(ctx, codepkg.LayersKey(arns), digests)
}
