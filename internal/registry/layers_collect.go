package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/nimbus-serverless/nimbus"
)

// collectLayers deletes the records of the layer versions deleted more
// than CodeMinAge ago that no function ($LATEST) and no published version
// names, unless a create, update or publish of this node holds them
// (holdLayers). Their packages go with the code collection that follows
// (dropIfUnused keeps one that has the digest of a function's code or of
// another layer version). It does nothing while the registry's view of the
// functions or of the versions is incomplete; it goes on past a failed
// delete and returns the errors joined.
func (r *Registry) collectLayers(ctx context.Context) error {
	if r.cfg.Layers == nil {
		return nil
	}
	used, ok := r.cache.layersInUse()
	if !ok {
		return nil // the watch is starting again: the next collection sees to it
	}
	unused, err := r.deletedLayers(ctx, used)
	if err != nil || len(unused) == 0 {
		return err
	}
	// After $LATEST's layers: a publish stores its snapshot before $LATEST
	// can drop a layer the snapshot keeps.
	if err := r.versionLayers(ctx, used); err != nil {
		return err
	}
	var errs []error
	for _, key := range unused {
		if used[key] {
			continue
		}
		if err := r.purgeLayer(ctx, key); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("collect layers: %w", err)
	}
	return nil
}

// deletedLayers returns the keys of the layer versions deleted more than
// CodeMinAge ago that are not in used. A version deleted with no time (by
// a node from before DeletedAt) is given the time now, and waits too.
func (r *Registry) deletedLayers(ctx context.Context, used map[string]bool) ([]string, error) {
	keys, err := r.cfg.Layers.Keys(ctx)
	if err != nil {
		return nil, fmt.Errorf("collect layers: %w", err)
	}
	now := r.cfg.Now().UTC()
	var out []string
	for _, k := range keys {
		name, n, ok := parseLayerKey(k)
		if !ok || used[k] {
			continue
		}
		v, _, err := r.readLayer(ctx, name, n)
		if errors.Is(err, nimbus.ErrNotFound) || err == nil && !v.Deleted {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("collect layers: %w", err)
		}
		if v.DeletedAt.IsZero() {
			err := r.modifyLayer(ctx, name, n, "", func(v *LayerVersion) error {
				if !v.DeletedAt.IsZero() {
					return errSkip
				}
				v.DeletedAt = now
				return nil
			})
			if err != nil && !errors.Is(err, errSkip) {
				return nil, fmt.Errorf("collect layers: %w", err)
			}
			continue
		}
		if now.Sub(v.DeletedAt) >= CodeMinAge {
			out = append(out, k)
		}
	}
	return out, nil
}

// versionLayers adds to used the keys of the layer versions that the
// stored snapshots of published versions name.
func (r *Registry) versionLayers(ctx context.Context, used map[string]bool) error {
	if r.cfg.Versions == nil {
		return nil
	}
	keys, err := r.cfg.Versions.Keys(ctx)
	if err != nil {
		return fmt.Errorf("collect layers: %w", err)
	}
	for _, k := range keys {
		arns, ok := r.versions.layersOf(k)
		if !ok {
			e, err := r.cfg.Versions.Get(ctx, k)
			if errors.Is(err, nimbus.ErrNotFound) {
				continue // deleted meanwhile
			}
			if err != nil {
				return fmt.Errorf("collect layers: %w", err)
			}
			var v struct { // layers are not sealed: nothing to open
				Layers []string `json:"layers"`
			}
			if err := json.Unmarshal(e.Value, &v); err != nil {
				return fmt.Errorf("collect layers: decode version %s: %w", k, err)
			}
			arns = v.Layers
			r.versions.putLayers(k, arns)
		}
		for _, lk := range layerKeys(arns) {
			used[lk] = true
		}
	}
	return nil
}

// purgeLayer deletes the record of layer version key unless this node
// holds it. Under codeMu, a create that holds it waits for the delete,
// then finds it gone.
func (r *Registry) purgeLayer(ctx context.Context, key string) error {
	r.codeMu.Lock()
	defer r.codeMu.Unlock()
	if r.layerHolds[key] > 0 {
		return nil
	}
	if err := r.cfg.Layers.Delete(ctx, key); err != nil && !errors.Is(err, nimbus.ErrNotFound) {
		return err
	}
	r.layers.drop(key)
	r.log.Info("deleted unused layer version", "layer", key)
	return nil
}
