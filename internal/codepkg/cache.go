package codepkg

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/store"
	"golang.org/x/sync/singleflight"
)

// Log attribute keys.
const (
	logDigest   = "digest"
	logPath     = "path"
	logBytes    = "bytes"
	logDuration = "duration"
)

// rootMode lets function users reach their own code by name without listing
// (and so learning the digests of) other functions' code.
const rootMode = 0o711

// fillTimeout bounds fetching and unpacking one package. The work is shared
// by every caller waiting for the digest, so it does not stop when the first
// caller's context does.
const fillTimeout = 5 * time.Minute

// Cache is a node's read-only cache of unpacked code: root/<hex digest>/ for
// each package. A directory appears whole (by rename) or not at all. One
// Cache, and one process, owns a root.
type Cache struct {
	root  string
	blobs store.Blobs
	lim   Limits
	log   *slog.Logger
	group singleflight.Group
	// fills counts the unpacks under way, which outlive their callers;
	// Close waits for it to reach zero.
	fillMu   sync.Mutex
	fills    int
	fillDone *sync.Cond

	mu   sync.Mutex
	busy map[string]int // digests being prepared; Prune leaves them alone
}

// NewCache opens (creating it if needed) the cache at root, sets its mode to
// 0711 and removes temporary directories left by a crash. blobs is where
// Ensure fetches packages this node lacks; lim bounds what it unpacks; log
// may be nil.
func NewCache(root string, blobs store.Blobs, lim Limits, log *slog.Logger) (*Cache, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(root, rootMode); err != nil {
		return nil, fmt.Errorf("open code cache: %w", err)
	}
	if err := os.Chmod(root, rootMode); err != nil { // MkdirAll obeys the umask and leaves an existing mode
		return nil, fmt.Errorf("open code cache: %w", err)
	}
	ents, err := os.ReadDir(root)
	if err != nil {
		return nil, fmt.Errorf("open code cache: %w", err)
	}
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), tmpPrefix) {
			p := filepath.Join(root, e.Name())
			log.Warn("removing leftover code directory", logPath, p)
			if err := removeTree(p); err != nil {
				return nil, fmt.Errorf("open code cache: %w", err)
			}
		}
	}
	c := &Cache{root: root, blobs: blobs, lim: lim, log: log, busy: make(map[string]int)}
	c.fillDone = sync.NewCond(&c.fillMu)
	return c, nil
}

// Prepare makes sure the code package zip, whose SHA-256 is hexDigest, is
// unpacked in the cache, and returns its directory. Concurrent calls for one
// digest unpack it once; the others wait for it (or for ctx).
//
// Errors: nimbus.ErrInvalid for a malformed digest, a digest that does not
// match zip, or a bad package; ctx's error; other errors are platform errors.
func (c *Cache) Prepare(ctx context.Context, hexDigest string, zip []byte) (string, error) {
	return c.fill(ctx, hexDigest, func(context.Context) ([]byte, error) {
		if got, _ := Digest(zip); got != hexDigest {
			return nil, nimbus.Invalidf("code digest %s does not match the package's SHA-256 %s", hexDigest, got)
		}
		return zip, nil
	})
}

// Ensure returns the directory of the package whose SHA-256 is hexDigest,
// fetching it from the blob store and unpacking it when this node does not
// have it yet. Concurrent calls for one digest fetch it once.
//
// Errors: nimbus.ErrNotFound if the store has no such blob;
// nimbus.ErrInvalid for a malformed digest or a bad package; ctx's error;
// other errors (a blob whose content does not match its digest, disk
// errors) are platform errors.
func (c *Cache) Ensure(ctx context.Context, hexDigest string) (string, error) {
	return c.fill(ctx, hexDigest, func(ctx context.Context) ([]byte, error) {
		return c.fetch(ctx, hexDigest)
	})
}

// fetch reads a blob and checks its digest.
func (c *Cache) fetch(ctx context.Context, digest string) ([]byte, error) {
	rc, err := c.blobs.Get(ctx, digest)
	if err != nil {
		return nil, fmt.Errorf("fetch code %s: %w", digest, err)
	}
	defer rc.Close()
	limit := c.lim.withDefaults().MaxZipped
	b, err := io.ReadAll(io.LimitReader(rc, limit+1))
	if err != nil {
		return nil, fmt.Errorf("fetch code %s: %w", digest, err)
	}
	if int64(len(b)) > limit {
		return nil, nimbus.Invalidf("code package %s is over the limit of %d bytes zipped", digest, limit)
	}
	sum := sha256.Sum256(b)
	if got := hex.EncodeToString(sum[:]); got != digest {
		return nil, fmt.Errorf("fetch code %s: stored blob is corrupt (its SHA-256 is %s)", digest, got)
	}
	return b, nil
}

// fill returns the directory of digest, unpacking what get returns into it
// first if needed; one get and unpack run per digest at a time.
func (c *Cache) fill(ctx context.Context, digest string, get func(context.Context) ([]byte, error)) (string, error) {
	if !validDigest(digest) {
		return "", nimbus.Invalidf("code digest %q is not 64 lowercase hex characters", digest)
	}
	dir := filepath.Join(c.root, digest)
	if ok, err := isDir(dir); err != nil {
		return "", err
	} else if ok {
		return dir, nil
	}
	if err := ctx.Err(); err != nil {
		return "", err
	}
	ch := c.group.DoChan(digest, func() (any, error) {
		c.fillMu.Lock()
		c.fills++
		c.fillMu.Unlock()
		defer func() {
			c.fillMu.Lock()
			if c.fills--; c.fills == 0 {
				c.fillDone.Broadcast()
			}
			c.fillMu.Unlock()
		}()
		c.setBusy(digest, 1)
		defer c.setBusy(digest, -1)
		if ok, err := isDir(dir); err != nil || ok {
			return nil, err
		}
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), fillTimeout)
		defer cancel()
		b, err := get(ctx)
		if err != nil {
			return nil, err
		}
		start := time.Now()
		if err := Unpack(b, dir, c.lim); err != nil {
			if ok, _ := isDir(dir); ok && errors.Is(err, fs.ErrExist) {
				return nil, nil
			}
			return nil, err
		}
		c.log.Info("code unpacked", logDigest, digest, logBytes, len(b), logDuration, time.Since(start))
		return nil, nil
	})
	select {
	case <-ctx.Done():
		return "", ctx.Err()
	case res := <-ch:
		if res.Err != nil {
			return "", res.Err
		}
		return dir, nil
	}
}

// Close waits (within ctx) for the unpacks under way to finish, so that
// nothing writes into the cache after it returns.
func (c *Cache) Close(ctx context.Context) error {
	done := make(chan struct{})
	go func() {
		c.fillMu.Lock()
		defer c.fillMu.Unlock()
		for c.fills > 0 {
			c.fillDone.Wait()
		}
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("code cache close: unpacks still running: %w", ctx.Err())
	}
}

func (c *Cache) setBusy(digest string, d int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.busy[digest] += d; c.busy[digest] == 0 {
		delete(c.busy, digest)
	}
}

// Prune removes the cached directories whose digest is not in inUse, and
// returns how many it removed. It leaves alone digests being prepared at the
// moment, but a directory Prepare or Ensure returned earlier goes if its
// digest is missing from inUse: the caller must list every digest it may
// still run.
func (c *Cache) Prune(inUse map[string]bool) (int, error) {
	ents, err := os.ReadDir(c.root)
	if err != nil {
		return 0, fmt.Errorf("prune code cache: %w", err)
	}
	// First move the doomed directories aside, so that a crash midway
	// leaves temporary directories (removed by NewCache), never a half
	// removed package that looks whole.
	var doomed []string
	c.mu.Lock()
	for _, e := range ents {
		d := e.Name()
		if !e.IsDir() || !validDigest(d) || inUse[d] || c.busy[d] > 0 {
			continue
		}
		p := filepath.Join(c.root, fmt.Sprintf("%sprune-%s-%d", tmpPrefix, d, time.Now().UnixNano()))
		if err = os.Rename(filepath.Join(c.root, d), p); err != nil {
			break
		}
		doomed = append(doomed, p)
		c.log.Info("pruning code", logDigest, d)
	}
	c.mu.Unlock()
	for _, p := range doomed {
		if rerr := removeTree(p); err == nil {
			err = rerr
		}
	}
	if err != nil {
		return len(doomed), fmt.Errorf("prune code cache: %w", err)
	}
	return len(doomed), nil
}

func isDir(p string) (bool, error) {
	fi, err := os.Lstat(p)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("code cache: %w", err)
	case !fi.IsDir():
		return false, fmt.Errorf("code cache: %s is not a directory", p)
	}
	return true, nil
}
