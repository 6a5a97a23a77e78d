package engine

import (
	"context"
	"errors"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/codepkg"
)

// LayerCache is implemented by a CodeCache that also prepares functions'
// layers (registry.Registry.CodeWithLayers).
type LayerCache interface {
	// EnsureLayers returns the directory of the layer versions (their
	// ARNs), merged in order, that an instance sees at /opt.
	EnsureLayers(ctx context.Context, layers []string) (dir string, err error)
}

// layersDir returns the merged directory of fn's layers, "" when it has
// none.
func (e *Engine) layersDir(ctx context.Context, fn *nimbus.Function) (string, error) {
	if len(fn.Layers) == 0 {
		return "", nil
	}
	lc, ok := e.cfg.Code.(LayerCache)
	if !ok {
		return "", errors.New("this node's code cache does not prepare layers")
	}
	return lc.EnsureLayers(ctx, fn.Layers)
}

// layersInUse adds fn's merged layers directory to inUse.
func layersInUse(inUse map[string]bool, fn *nimbus.Function) {
	if len(fn.Layers) > 0 {
		inUse[codepkg.LayersKey(fn.Layers)] = true
	}
}
