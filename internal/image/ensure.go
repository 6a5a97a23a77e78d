package image

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/nimbus-serverless/nimbus/internal/durable"
	"golang.org/x/sync/errgroup"
)

// layerJobs is how many layers of one image are pulled at once.
const layerJobs = 3

// record is an image's image.json.
type record struct {
	Digest string   `json:"digest"`
	Size   int64    `json:"size"`
	Config Config   `json:"config"`
	Layers []string `json:"layers"` // hex digests, lowest first
}

// Ensure makes the image of a resolved ref ("host/repo@sha256:<hex>", as
// Resolve returns) ready on this node and returns it. Layers are pulled and
// unpacked once per layer digest, shared by every image using them; the
// image's root is built from them by hard links and appears (by rename)
// only when complete. Concurrent calls for one digest pull it once; ctx
// stops the caller's wait, not the pull, which goes on for the other
// callers (and is bounded by the stall timeout and Close). A digest that
// names an index is resolved to the node's platform.
//
// Errors: ErrInvalidRef (not a digest reference), ErrNotFound, ErrAuth,
// ErrUnavailable, ErrInvalidImage, ctx's error; others are disk errors.
func (s *Store) Ensure(ctx context.Context, resolved string) (*Image, error) {
	r, err := s.parse(resolved)
	if err != nil {
		return nil, err
	}
	dg, ok := r.(name.Digest)
	if !ok {
		return nil, fmt.Errorf("%w %q: not pinned to a digest (Resolve it first)", ErrInvalidRef, resolved)
	}
	hex, err := hexOf(dg.DigestStr())
	if err != nil {
		return nil, fmt.Errorf("%w %q: %v", ErrInvalidRef, resolved, err)
	}
	if img, err := s.load(hex); err == nil {
		return img, nil
	}
	v, err := s.do(ctx, "image:"+hex, true, func(ctx context.Context) (any, error) {
		return s.pull(ctx, dg, hex)
	})
	if err != nil {
		return nil, err
	}
	return v.(*Image), nil
}

// hexOf returns the hex of a "sha256:<hex>" digest.
func hexOf(digest string) (string, error) {
	h, err := v1.NewHash(digest)
	if err != nil || h.Algorithm != "sha256" {
		return "", fmt.Errorf("%q is not a sha256 digest", digest)
	}
	return h.Hex, nil
}

// load returns the image of hex if its root is ready, and marks it used now
// (Collect spares images used within its minAge).
func (s *Store) load(hex string) (*Image, error) {
	dir := s.imageDir(hex)
	b, err := os.ReadFile(filepath.Join(dir, "image.json"))
	if err != nil {
		return nil, err
	}
	var rec record
	if err := json.Unmarshal(b, &rec); err != nil {
		return nil, fmt.Errorf("image %s: %w", hex, err)
	}
	now := time.Now()
	_ = os.Chtimes(dir, now, now)
	return &Image{Digest: rec.Digest, Root: filepath.Join(dir, "rootfs"), Size: rec.Size, Config: rec.Config}, nil
}

// pull pulls and flattens the image dg, whose digest's hex is hex.
func (s *Store) pull(ctx context.Context, dg name.Digest, hex string) (*Image, error) {
	s.setBusy(1, hex)
	defer s.setBusy(-1, hex)
	if img, err := s.load(hex); err == nil {
		return img, nil
	}
	start := time.Now()
	d, err := s.pick(ctx, dg)
	if err != nil {
		return nil, err
	}
	if d.Digest.Hex != hex { // an index: its manifest for this platform
		return s.Ensure(ctx, dg.Context().Name()+"@"+d.Digest.String())
	}
	img, err := d.Image()
	if err != nil {
		return nil, s.registryError(dg, err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, s.registryError(dg, err)
	}
	layers, err := img.Layers()
	if err != nil {
		return nil, s.registryError(dg, err)
	}
	hexes := make([]string, len(layers))
	for i, l := range layers {
		h, err := l.Digest()
		if err != nil {
			return nil, s.registryError(dg, err)
		}
		hexes[i] = h.Hex
	}
	s.setBusy(1, hexes...)
	defer s.setBusy(-1, hexes...)

	metas, err := s.layers(ctx, dg, layers, hexes)
	if err != nil {
		return nil, err
	}
	var total int64
	for _, m := range metas {
		total += m.Size
	}
	if total > s.opts.MaxUnpacked {
		return nil, fmt.Errorf("%w: %s is %d bytes unpacked, over the limit of %d", ErrInvalidImage, dg, total, s.opts.MaxUnpacked)
	}
	rec := record{Digest: "sha256:" + hex, Config: configOf(cf), Layers: hexes}
	if err := s.flatten(hex, &rec, metas); err != nil {
		return nil, err
	}
	s.log.Info("image ready", logDigest, rec.Digest, logRef, dg.Context().Name(), logBytes, rec.Size, logDuration, time.Since(start))
	return s.load(hex)
}

// layers ensures every layer is unpacked, a few at a time, and returns
// their metadata in order.
func (s *Store) layers(ctx context.Context, dg name.Digest, layers []v1.Layer, hexes []string) ([]layerMeta, error) {
	bud := newBudget(s.opts.MaxUnpacked)
	metas := make([]layerMeta, len(layers))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(layerJobs)
	for i, l := range layers {
		if slices.Index(hexes, hexes[i]) < i { // the same layer twice
			continue
		}
		g.Go(func() error {
			m, err := s.ensureLayer(gctx, dg, l, hexes[i], bud)
			metas[i] = m
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	for i := range layers {
		if j := slices.Index(hexes, hexes[i]); j < i {
			metas[i] = metas[j]
		}
	}
	return metas, nil
}

// ensureLayer returns the metadata of the layer hex, pulling and unpacking
// it once.
func (s *Store) ensureLayer(ctx context.Context, dg name.Digest, l v1.Layer, hex string, bud *budget) (layerMeta, error) {
	if m, err := s.loadLayer(hex); err == nil {
		bud.bytes.Add(-m.Size)
		return m, nil
	}
	v, err := s.do(ctx, "layer:"+hex, false, func(ctx context.Context) (any, error) {
		if m, err := s.loadLayer(hex); err == nil {
			return m, nil
		}
		return s.pullLayer(ctx, dg, l, hex, bud)
	})
	if err != nil {
		return layerMeta{}, err
	}
	return v.(layerMeta), nil
}

func (s *Store) loadLayer(hex string) (layerMeta, error) {
	var m layerMeta
	b, err := os.ReadFile(filepath.Join(s.layerDir(hex), "layer.json"))
	if err != nil {
		return m, err
	}
	err = json.Unmarshal(b, &m)
	return m, err
}

// Layer media types the store unpacks (the format is told by the bytes).
var layerTypes = []types.MediaType{
	types.DockerLayer, types.DockerUncompressedLayer, types.DockerForeignLayer,
	types.OCILayer, types.OCILayerZStd, types.OCIUncompressedLayer,
	types.OCIRestrictedLayer, types.OCIUncompressedRestrictedLayer,
}

// pullLayer fetches a layer, checks its digest and unpacks it into
// layers/<hex>, through a temporary directory.
func (s *Store) pullLayer(ctx context.Context, dg name.Digest, l v1.Layer, hex string, bud *budget) (layerMeta, error) {
	short := "sha256:" + hex[:12]
	if mt, err := l.MediaType(); err == nil && !slices.Contains(layerTypes, mt) {
		return layerMeta{}, fmt.Errorf("%w: layer %s of %s has media type %s, not an image layer", ErrInvalidImage, short, dg, mt)
	}
	tmp, err := os.MkdirTemp(s.tmpDir(), "layer-"+hex[:12]+"-")
	if err != nil {
		return layerMeta{}, fmt.Errorf("pull layer: %w", err)
	}
	m, err := s.unpackLayer(ctx, dg, l, short, tmp, bud)
	if err == nil {
		err = s.publish(tmp, s.layerDir(hex), m, "layer.json")
	}
	if err != nil {
		removeTree(tmp)
		return layerMeta{}, err
	}
	return m, nil
}

func (s *Store) unpackLayer(ctx context.Context, dg name.Digest, l v1.Layer, short, tmp string, bud *budget) (layerMeta, error) {
	root := filepath.Join(tmp, "root")
	if err := os.Mkdir(root, 0o755); err != nil {
		return layerMeta{}, fmt.Errorf("pull layer: %w", err)
	}
	rc, err := l.Compressed() // verifies the digest when read to its end
	if err != nil {
		return layerMeta{}, s.ioError(dg, short, err)
	}
	defer rc.Close()
	// The layer's requests are bound to the image pull's context; this one
	// (the layer's pull, given up by every image waiting for it) ends it.
	stop := context.AfterFunc(ctx, func() { rc.Close() })
	defer stop()
	br := bufio.NewReaderSize(rc, 1<<20)
	dec, err := decompressor(br)
	if err != nil {
		return layerMeta{}, s.corrupt(dg, short, br, err)
	}
	defer dec.Close()
	m, err := extractLayer(dec, root, bud)
	if err == nil {
		// The tar's end is not the stream's: read on, so that the
		// decompressor checks its trailer and the digest is verified.
		_, err = io.Copy(io.Discard, dec)
	}
	if err == nil {
		_, err = io.Copy(io.Discard, br)
	}
	if err != nil && ctx.Err() != nil {
		return layerMeta{}, ctx.Err()
	}
	if err != nil {
		return layerMeta{}, s.corrupt(dg, short, br, err)
	}
	if err := os.Chmod(root, modeDir); err != nil {
		return layerMeta{}, fmt.Errorf("pull layer: %w", err)
	}
	return m, nil
}

// corrupt returns the error of a layer that failed to unpack with err. A
// layer whose bytes are damaged usually breaks its decompression or its tar
// format before its digest can be checked, at its end: so for those errors
// it reads the rest of the layer, and reports a digest mismatch if that is
// what the end tells.
func (s *Store) corrupt(dg name.Digest, short string, rest io.Reader, err error) error {
	var stall *stallError
	if !errors.As(err, &stall) && !errors.Is(err, context.Canceled) && isFormatError(err) {
		if _, derr := io.Copy(io.Discard, rest); derr != nil {
			return s.ioError(dg, short, derr)
		}
	}
	if isFormatError(err) && !errors.Is(err, ErrInvalidImage) {
		return fmt.Errorf("%w: layer %s of %s is corrupt: %v", ErrInvalidImage, short, dg, err)
	}
	return s.ioError(dg, short, err)
}

// isFormatError says whether err is about the layer's bytes (compression or
// tar format) rather than the network or the disk.
func isFormatError(err error) bool {
	if errors.Is(err, ErrInvalidImage) || errors.Is(err, gzip.ErrChecksum) || errors.Is(err, gzip.ErrHeader) {
		return true
	}
	msg := err.Error()
	return strings.Contains(msg, "zstd") || strings.Contains(msg, "flate") || strings.Contains(msg, "corrupt")
}

// decompressor returns the tar stream of a layer, told by its first bytes:
// gzip, zstd, or none.
func decompressor(br *bufio.Reader) (io.ReadCloser, error) {
	magic, err := br.Peek(4)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	switch {
	case bytes.HasPrefix(magic, []byte{0x1f, 0x8b}):
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, err
		}
		zr.Multistream(true)
		return zr, nil
	case bytes.Equal(magic, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		zr, err := zstd.NewReader(br, zstd.WithDecoderConcurrency(1))
		if err != nil {
			return nil, err
		}
		return zr.IOReadCloser(), nil
	}
	return io.NopCloser(br), nil
}

// publish writes meta as file in tmp, flushes the file system and renames
// tmp to dst.
func (s *Store) publish(tmp, dst string, meta any, file string) error {
	b, err := json.Marshal(meta)
	if err == nil {
		err = os.WriteFile(filepath.Join(tmp, file), b, 0o444)
	}
	if err == nil {
		err = durable.SyncFS(tmp)
	}
	if err == nil {
		err = os.Rename(tmp, dst)
	}
	if err != nil {
		return fmt.Errorf("publish %s: %w", filepath.Base(dst), err)
	}
	return nil
}

// flatten builds the image's root from its layers and publishes it.
func (s *Store) flatten(hex string, rec *record, metas []layerMeta) error {
	tmp, err := os.MkdirTemp(s.tmpDir(), "image-"+hex[:12]+"-")
	if err != nil {
		return fmt.Errorf("flatten image: %w", err)
	}
	err = s.build(tmp, rec, metas)
	if err == nil {
		err = os.Chmod(tmp, modePublic)
	}
	if err == nil {
		err = s.publish(tmp, s.imageDir(hex), rec, "image.json")
	}
	if err != nil {
		removeTree(tmp)
	}
	return err
}

func (s *Store) build(tmp string, rec *record, metas []layerMeta) error {
	root := filepath.Join(tmp, "rootfs")
	if err := os.Mkdir(root, 0o755); err != nil {
		return fmt.Errorf("flatten image: %w", err)
	}
	f := newFlattener(root)
	for i, h := range rec.Layers {
		if err := f.add(filepath.Join(s.layerDir(h), "root"), metas[i]); err != nil {
			return err
		}
	}
	size, err := f.finish()
	rec.Size = size
	return err
}

// configOf is what the store keeps of an image's config.
func configOf(cf *v1.ConfigFile) Config {
	c := Config{
		Entrypoint: cf.Config.Entrypoint, Cmd: cf.Config.Cmd, Env: cf.Config.Env,
		WorkingDir: cf.Config.WorkingDir, User: cf.Config.User,
	}
	for p := range cf.Config.ExposedPorts {
		c.ExposedPorts = append(c.ExposedPorts, p)
	}
	slices.Sort(c.ExposedPorts)
	return c
}

// flight is one pull under way, shared by the callers that want it.
type flight struct {
	done    chan struct{}
	val     any
	err     error
	waiters int                // callers waiting (guarded by Store.mu)
	cancel  context.CancelFunc // stops the pull; nil for pulls that outlive their callers
}

// do runs fn once per key at a time, in a goroutine of the store's, and
// waits for its result or for ctx. When detached, the pull goes on after
// every caller has given up (an image: callers may come back for it); when
// not (a layer, whose callers are image pulls), the last caller to give up
// stops it and waits for it to end, so that a failed image pull leaves
// nothing running.
func (s *Store) do(ctx context.Context, key string, detached bool, fn func(context.Context) (any, error)) (any, error) {
	s.mu.Lock()
	f, ok := s.flights[key]
	if !ok {
		if err := s.ctx.Err(); err != nil {
			s.mu.Unlock()
			return nil, errors.New("image store closed")
		}
		f = &flight{done: make(chan struct{})}
		fctx := s.ctx
		if !detached {
			fctx, f.cancel = context.WithCancel(s.ctx)
		}
		s.flights[key] = f
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			val, err := fn(fctx)
			s.mu.Lock()
			f.val, f.err = val, err
			delete(s.flights, key)
			s.mu.Unlock()
			close(f.done)
		}()
	}
	f.waiters++
	s.mu.Unlock()
	select {
	case <-f.done:
		return f.val, f.err
	case <-ctx.Done():
	}
	s.mu.Lock()
	f.waiters--
	abandon := f.waiters == 0 && f.cancel != nil
	s.mu.Unlock()
	if abandon {
		f.cancel()
		<-f.done
	}
	return nil, ctx.Err()
}

func (s *Store) setBusy(d int, hexes ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, h := range hexes {
		if s.busy[h] += d; s.busy[h] <= 0 {
			delete(s.busy, h)
		}
	}
}
