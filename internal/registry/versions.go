package registry

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"reflect"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/nimbus-serverless/nimbus"
)

// Versions: a published version is an immutable snapshot of a function's
// code and configuration, numbered 1, 2, ... per function. The function's
// record lists its versions (Function.Versions, with the code each keeps)
// and its aliases; each version's snapshot is a record of its own in the
// versions bucket (Config.Versions), key <function>.<number>, written
// before the function's record names it and sealed as a function is.
// Snapshots never change, so every node caches the ones it reads.

// versionCache holds the snapshots a node has read, by key, and the
// layers of those the layer collection read (versionLayers).
type versionCache struct {
	mu     sync.Mutex
	m      map[string]*nimbus.Function
	layers map[string][]string
}

func versionKey(name string, n int) string { return name + "." + strconv.Itoa(n) }

// snapshot is fn as version n: its code and configuration, without what
// belongs to the function as a whole (triggers, asynchronous settings,
// concurrency, versions, aliases, tags, its policy, recursion and runtime
// settings).
func snapshot(fn *nimbus.Function, n int) *nimbus.Function {
	v := *fn
	v.Version = strconv.Itoa(n)
	v.Environment = maps.Clone(fn.Environment)
	v.Triggers, v.EventInvoke, v.Versions, v.Aliases, v.LastVersion = nil, nil, nil, nil, 0
	v.Tags, v.Policy, v.RecursiveLoop, v.UpdateRuntimeOn = nil, nil, "", "" // the function's, not a version's
	v.ProvisionedVersions, v.EventInvokeQualified, v.PolicyQualified = nil, nil, nil
	v.ReservedConcurrency, v.ProvisionedConcurrency = nil, 0
	if fn.Logging != nil {
		l := *fn.Logging
		v.Logging = &l
	}
	return &v
}

// sameConfig reports whether two snapshots have the same code and
// configuration (what publishing compares).
func sameConfig(a, b *nimbus.Function) bool {
	x, y := *a, *b
	for _, f := range []*nimbus.Function{&x, &y} {
		f.Version, f.RevisionID, f.LastModified, f.Description = "", "", time.Time{}, ""
		f.State, f.StateReason, f.StateReasonCode, f.LastUpdateStatus = "", "", "", ""
	}
	return reflect.DeepEqual(x, y)
}

// PublishInput is what PublishVersion takes: optional preconditions (the
// code's hex SHA-256, the function's RevisionID) and the version's
// description (empty: the function's).
type PublishInput struct {
	CodeSHA256, RevisionID, Description string
}

// Publish publishes fn's current code and configuration as a version, or
// returns the latest version when nothing changed since it. Errors:
// nimbus.ErrNotFound, nimbus.ErrPreconditionFailed (a precondition does
// not hold), nimbus.ErrConflict (an update in progress), nimbus.ErrInvalid.
func (r *Registry) Publish(ctx context.Context, name string, in PublishInput) (*nimbus.Function, error) {
	if r.cfg.Versions == nil {
		return nil, nimbus.Invalidf("this node keeps no versions")
	}
	for {
		fn, rev, err := r.get(ctx, name)
		if err != nil {
			return nil, err
		}
		if in.RevisionID != "" && in.RevisionID != fn.RevisionID {
			return nil, staleRevision()
		}
		if in.CodeSHA256 != "" && in.CodeSHA256 != fn.CodeSHA256 {
			return nil, nimbus.Errorf(nimbus.ErrPreconditionFailed,
				"CodeSHA256 (%s) is different from current CodeSHA256 in $LATEST (%s). Please try again with the current CodeSHA256.", in.CodeSHA256, fn.CodeSHA256)
		}
		if fn.State != nimbus.StateActive || fn.LastUpdateStatus == nimbus.UpdateInProgress {
			return nil, nimbus.Errorf(nimbus.ErrConflict,
				"The operation cannot be performed at this time. An update is in progress for resource: %s", name)
		}
		n := fn.LastVersion + 1
		v := snapshot(fn, n)
		if in.Description != "" {
			v.Description = in.Description
		}
		if k := len(fn.Versions); k > 0 {
			last, err := r.Version(ctx, name, fn.Versions[k-1].Number)
			if err != nil {
				return nil, err
			}
			if sameConfig(last, v) {
				return last, nil // nothing changed since
			}
		}
		// The number first: reserved in the function's record (by a
		// compare-and-swap on the record read), it is this publish's
		// alone; then the snapshot; then the record lists it. A publish
		// that stops half way leaves a number unused, never two versions
		// under one number.
		reserved := *fn
		reserved.LastVersion = n
		rb, err := r.encode(&reserved)
		if err != nil {
			return nil, err
		}
		// Its layers are held from before the reservation: a collection
		// that deleted one before the hold saw no function name it, so
		// the record changed since it was read and the reservation fails.
		release := r.holdLayers(v.Layers)
		newRev, err := r.cfg.KV.Update(ctx, name, rb, rev)
		if err != nil {
			release()
			if errors.Is(err, nimbus.ErrPreconditionFailed) {
				continue // changed meanwhile: publish what it is now
			}
			return nil, fmt.Errorf("store function: %w", err)
		}
		r.cache.wrote(name, &reserved, newRev)
		defer release()
		return r.storeVersion(ctx, name, v)
	}
}

// storeVersion stores snapshot v (its number reserved) and lists it in
// its function's record.
func (r *Registry) storeVersion(ctx context.Context, name string, v *nimbus.Function) (*nimbus.Function, error) {
	release := r.holdCode(v.CodeSHA256) // the code stays while no record names it
	defer release()
	n, _ := strconv.Atoi(v.Version)
	v.RevisionID, v.LastModified = uuid.NewString(), r.cfg.Now().UTC()
	b, err := r.encode(v)
	if err != nil {
		return nil, err
	}
	if _, err := r.cfg.Versions.Put(ctx, versionKey(name, n), b); err != nil {
		return nil, fmt.Errorf("store version: %w", err)
	}
	r.versions.put(versionKey(name, n), v)
	_, err = r.modify(ctx, name, "", func(fn *nimbus.Function) error {
		fn.Versions = append(slices.Clone(fn.Versions), nimbus.VersionRef{Number: n, CodeSHA256: v.CodeSHA256})
		return errKeepRevision // publishing leaves $LATEST as it is
	})
	if err != nil {
		return nil, err
	}
	return v, nil
}

// Version returns published version n of function name. Errors:
// nimbus.ErrNotFound.
func (r *Registry) Version(ctx context.Context, name string, n int) (*nimbus.Function, error) {
	fn, err := r.Get(ctx, name)
	if err != nil {
		return nil, err
	}
	if !slices.ContainsFunc(fn.Versions, func(v nimbus.VersionRef) bool { return v.Number == n }) {
		return nil, versionNotFound(name, strconv.Itoa(n))
	}
	key := versionKey(name, n)
	if v := r.versions.get(key); v != nil {
		return v, nil
	}
	e, err := r.cfg.Versions.Get(ctx, key)
	if err != nil {
		if errors.Is(err, nimbus.ErrNotFound) {
			return nil, versionNotFound(name, strconv.Itoa(n))
		}
		return nil, fmt.Errorf("load version: %w", err)
	}
	v, _, err := r.decode(name, e.Value)
	if err != nil {
		return nil, err
	}
	r.versions.put(key, v)
	return v, nil
}

func versionNotFound(name, q string) error {
	return nimbus.Errorf(nimbus.ErrNotFound, "Function not found: %s:%s", name, q)
}

// Resolve returns what an invocation of name with qualifier runs: the
// function ("" or $LATEST), a published version (a number), or the
// version an alias routes this request to (by its weights). Errors:
// nimbus.ErrNotFound.
func (r *Registry) Resolve(ctx context.Context, name, qualifier string) (*nimbus.Function, error) {
	fn, err := r.Get(ctx, name)
	if err != nil || qualifier == "" || qualifier == nimbus.Latest {
		return fn, err
	}
	if n, err := strconv.Atoi(qualifier); err == nil {
		return r.Version(ctx, name, n)
	}
	a := findAlias(fn, qualifier)
	if a == nil {
		return nil, versionNotFound(name, qualifier)
	}
	target := a.FunctionVersion
	roll := rand.Float64()
	for v, w := range a.Weights { // at most one
		if roll < w {
			target = v
		}
	}
	if target == nimbus.Latest {
		return fn, nil
	}
	n, _ := strconv.Atoi(target)
	return r.Version(ctx, name, n)
}

// AliasVersion is the version alias q of fn points at, or q itself when
// fn has no such alias (a version's number, $LATEST).
func AliasVersion(fn *nimbus.Function, q string) string {
	if a := findAlias(fn, q); a != nil {
		return a.FunctionVersion
	}
	return q
}

// HasQualifier reports whether fn has qualifier q: "" or $LATEST, a
// published version's number (as Nimbus writes it: "1", not "01") or an
// alias's name.
func HasQualifier(fn *nimbus.Function, q string) bool {
	if n, err := strconv.Atoi(q); err == nil {
		return strconv.Itoa(n) == q && hasVersion(fn, q)
	}
	return q == "" || q == nimbus.Latest || findAlias(fn, q) != nil
}

func findAlias(fn *nimbus.Function, name string) *nimbus.Alias {
	for i := range fn.Aliases {
		if fn.Aliases[i].Name == name {
			return &fn.Aliases[i]
		}
	}
	return nil
}

// DeleteVersion deletes published version n: not one an alias routes to.
// Errors: nimbus.ErrNotFound, nimbus.ErrConflict.
func (r *Registry) DeleteVersion(ctx context.Context, name string, n int) error {
	q := strconv.Itoa(n)
	var code string
	_, err := r.modify(ctx, name, "", func(fn *nimbus.Function) error {
		i := slices.IndexFunc(fn.Versions, func(v nimbus.VersionRef) bool { return v.Number == n })
		if i < 0 {
			return versionNotFound(name, q)
		}
		for _, a := range fn.Aliases {
			if a.FunctionVersion == q || a.Weights[q] > 0 {
				return nimbus.Errorf(nimbus.ErrConflict, "Unable to delete version because the following aliases reference it: [%s]", a.Name)
			}
		}
		code = fn.Versions[i].CodeSHA256
		fn.Versions = slices.Delete(slices.Clone(fn.Versions), i, i+1)
		dropQualifier(fn, q)
		return nil
	})
	if err != nil {
		return err
	}
	r.versions.drop(versionKey(name, n))
	if err := r.cfg.Versions.Delete(ctx, versionKey(name, n)); err != nil && !errors.Is(err, nimbus.ErrNotFound) {
		r.log.Warn("delete version record", nimbus.LogFunction, name, "version", n, nimbus.LogErr, err)
	}
	r.dropUnusedCode(ctx, code)
	return nil
}

// deleteVersions removes the version records of a deleted function.
func (r *Registry) deleteVersions(ctx context.Context, fn *nimbus.Function) {
	for _, v := range fn.Versions {
		key := versionKey(fn.Name, v.Number)
		r.versions.drop(key)
		if err := r.cfg.Versions.Delete(ctx, key); err != nil && !errors.Is(err, nimbus.ErrNotFound) {
			r.log.Warn("delete version record", nimbus.LogFunction, fn.Name, "version", v.Number, nimbus.LogErr, err)
		}
		r.dropUnusedCode(ctx, v.CodeSHA256)
	}
}

func (c *versionCache) get(key string) *nimbus.Function {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.m[key]
}

func (c *versionCache) put(key string, v *nimbus.Function) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[string]*nimbus.Function{}
	}
	c.m[key] = v
}

// layersOf returns the layers of snapshot key, if it was read.
func (c *versionCache) layersOf(key string) (arns []string, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if v := c.m[key]; v != nil {
		return v.Layers, true
	}
	arns, ok = c.layers[key]
	return arns, ok
}

func (c *versionCache) putLayers(key string, arns []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.layers == nil {
		c.layers = map[string][]string{}
	}
	c.layers[key] = arns
}

func (c *versionCache) drop(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.m, key)
	delete(c.layers, key)
}

// dropQualifier removes what fn keeps for its qualifier q, a version or
// alias being deleted: its provisioned concurrency, event invoke config
// and policy.
func dropQualifier(fn *nimbus.Function, q string) {
	fn.ProvisionedVersions = withoutKey(fn.ProvisionedVersions, q)
	fn.EventInvokeQualified = withoutKey(fn.EventInvokeQualified, q)
	fn.PolicyQualified = withoutKey(fn.PolicyQualified, q)
}

// withKey is a copy of m with k set to v.
func withKey[V any](m map[string]V, k string, v V) map[string]V {
	out := maps.Clone(m)
	if out == nil {
		out = map[string]V{}
	}
	out[k] = v
	return out
}

// withoutKey is m without k (a copy; nil when empty).
func withoutKey[V any](m map[string]V, k string) map[string]V {
	if _, ok := m[k]; !ok {
		return m
	}
	out := maps.Clone(m)
	delete(out, k)
	if len(out) == 0 {
		return nil
	}
	return out
}

// SetProvisioned keeps n warm instances of the version qualifier names (a
// version's number or an alias: the version it points at), or with n 0
// no longer. Errors: nimbus.ErrNotFound (no such version or alias).
func (r *Registry) SetProvisioned(ctx context.Context, name, qualifier string, n int) (*nimbus.Function, error) {
	return r.modify(ctx, name, "", func(fn *nimbus.Function) error {
		if !hasVersion(fn, qualifier) && findAlias(fn, qualifier) == nil {
			return versionNotFound(name, qualifier)
		}
		if n == 0 {
			if _, ok := fn.ProvisionedVersions[qualifier]; !ok {
				return versionNotFound(name, qualifier)
			}
			fn.ProvisionedVersions = withoutKey(fn.ProvisionedVersions, qualifier)
			return nil
		}
		fn.ProvisionedVersions = withKey(fn.ProvisionedVersions, qualifier, n)
		return nil
	})
}

// ProvisionedTargets resolves fn's provisioned concurrency of versions and
// aliases to the versions they keep warm (an alias: the version it points
// at), summed per version number.
func (r *Registry) ProvisionedTargets(ctx context.Context, fn *nimbus.Function) map[int]int {
	out := map[int]int{}
	for q, n := range fn.ProvisionedVersions {
		if v, err := strconv.Atoi(AliasVersion(fn, q)); err == nil {
			out[v] += n
		}
	}
	return out
}
