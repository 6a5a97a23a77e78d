package node

import (
	"context"
	"log/slog"
	"time"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/engine"
	"github.com/nimbus-serverless/nimbus/internal/image"
	"github.com/nimbus-serverless/nimbus/internal/runtimes"
)

// imageMinAge is how long an image the store made or handed out is kept
// even if no function names it (a create that is about to write its
// record, an instance about to mark it in use).
const imageMinAge = 10 * time.Minute

// openImages opens the node's image store in <data-dir>/images.
func openImages(cfg Config, dir string, log *slog.Logger) (*image.Store, error) {
	var creds map[string]image.Credential
	if cfg.RegistryConfig != "" {
		var err error
		if creds, err = image.LoadCredentials(cfg.RegistryConfig); err != nil {
			return nil, err
		}
	}
	return image.Open(image.Options{Dir: dir, Credentials: creds, Insecure: cfg.InsecureRegistries, MaxUnpacked: cfg.ImageMaxSize, Log: log})
}

// engineImages is the image store as the engine uses it.
type engineImages struct{ s *image.Store }

func (a engineImages) Ensure(ctx context.Context, resolved string) (engine.Image, error) {
	img, err := a.s.Ensure(ctx, resolved)
	if err != nil {
		return engine.Image{}, err
	}
	c := img.Config
	return engine.Image{Digest: img.Digest, Root: img.Root, Config: runtimes.ImageConfig{
		Entrypoint: c.Entrypoint, Cmd: c.Cmd, Env: c.Env, WorkingDir: c.WorkingDir, User: c.User}}, nil
}

func (a engineImages) Use(digest string) func() { return a.s.Use(digest) }

// registryImages is the image store as the registry uses it.
type registryImages struct{ s *image.Store }

func (a registryImages) Resolve(ctx context.Context, ref string) (string, error) {
	return a.s.Resolve(ctx, ref)
}

func (a registryImages) Ensure(ctx context.Context, resolved string) error {
	_, err := a.s.Ensure(ctx, resolved)
	return err
}

// collectImages removes the images (and their layers) that no function or
// published version runs and no instance uses, beside the code cache's
// collection.
func (n *Node) collectImages() { n.collectImagesOlderThan(imageMinAge) }

// collectImagesOlderThan is collectImages for images at least minAge old;
// it returns what it removed.
func (n *Node) collectImagesOlderThan(minAge time.Duration) []string {
	if n.images == nil {
		return nil
	}
	removed, err := n.images.Collect(n.registry.ImageInUse, minAge)
	if err != nil {
		n.log.Warn("collect unused images", nimbus.LogErr, err)
	}
	if len(removed) > 0 {
		n.log.Info("collected unused images", "removed", len(removed))
	}
	return removed
}
