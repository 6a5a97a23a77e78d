package codepkg

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/durable"
)

// Measure validates b as Validate does and returns its real unzipped size
// (the bytes of its files).
func Measure(b []byte, lim Limits) (int64, error) {
	a, err := parse(b, lim)
	if err != nil {
		return 0, err
	}
	c := countWriter{w: io.Discard}
	err = a.extract(func(*entry) (io.WriteCloser, error) { return nopCloser{&c}, nil })
	return c.n, err
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }

// LayersKey names the merged directory of an ordered list of layer
// versions (their ARNs, which never name other content): a digest, so that
// Prune treats it as a package.
func LayersKey(layers []string) string {
	sum := sha256.Sum256([]byte("nimbus-layers\n" + strings.Join(layers, "\n")))
	return hex.EncodeToString(sum[:])
}

// EnsureLayers returns the directory, named key (LayersKey), of the
// packages digests unpacked one over the other in order, as Lambda merges
// a function's layers into /opt: a later package's file replaces an
// earlier one's at the same path. Each package is first unpacked (Ensure)
// on its own; the merge hard-links their files and never writes through a
// symbolic link. Like a package's directory, it is read-only and appears
// whole or not at all; Prune removes it when key is not in use.
//
// Errors: those of Ensure; other errors are platform errors.
func (c *Cache) EnsureLayers(ctx context.Context, key string, digests []string) (string, error) {
	if !validDigest(key) {
		return "", nimbus.Invalidf("layers key %q is not 64 lowercase hex characters", key)
	}
	dir := filepath.Join(c.root, key)
	if ok, err := isDir(dir); err != nil || ok {
		return dir, err
	}
	for _, d := range digests { // not pruned while merged
		c.setBusy(d, 1)
		defer c.setBusy(d, -1)
	}
	srcs := make([]string, len(digests))
	for i, d := range digests {
		var err error
		if srcs[i], err = c.Ensure(ctx, d); err != nil {
			return "", fmt.Errorf("prepare layer: %w", err)
		}
	}
	ch := c.group.DoChan(key, func() (any, error) {
		c.setBusy(key, 1)
		defer c.setBusy(key, -1)
		if ok, err := isDir(dir); err != nil || ok {
			return nil, err
		}
		start := time.Now()
		if err := mergeInto(dir, srcs); err != nil {
			return nil, err
		}
		c.log.Info("layers merged", logDigest, key, "layers", len(srcs), logDuration, time.Since(start))
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

// mergeInto merges the trees srcs, in order, into a temporary sibling of
// dest, then renames it to dest.
func mergeInto(dest string, srcs []string) error {
	tmp, err := os.MkdirTemp(filepath.Dir(dest), tmpPrefix+filepath.Base(dest)+"-")
	if err != nil {
		return fmt.Errorf("merge layers: %w", err)
	}
	err = func() error {
		for _, src := range srcs {
			if err := mergeTree(tmp, src); err != nil {
				return err
			}
		}
		return filepath.WalkDir(tmp, func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				err = os.Chmod(p, modeDir)
			}
			return err
		})
	}()
	if err == nil {
		err = durable.SyncFS(tmp)
	}
	if err == nil {
		err = os.Rename(tmp, dest)
	}
	if err != nil {
		removeTree(tmp)
		return fmt.Errorf("merge layers: %w", err)
	}
	return nil
}

// mergeTree puts every entry of src at the same path under root, in place
// of what is there. A directory of src becomes a directory (replacing a
// file or a link); a file is hard-linked (copied across file systems); a
// symbolic link is made again. Nothing is written through a link: what
// stands where a directory must be is removed first.
func mergeTree(root, src string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil || rel == "." {
			return err
		}
		target := filepath.Join(root, rel)
		fi, lerr := os.Lstat(target)
		exists := lerr == nil
		switch {
		case d.IsDir():
			if exists && fi.IsDir() {
				return nil
			}
			if exists {
				if err := os.RemoveAll(target); err != nil {
					return err
				}
			}
			return os.Mkdir(target, 0o755)
		case exists:
			if err := os.RemoveAll(target); err != nil {
				return err
			}
		}
		if d.Type()&fs.ModeSymlink != 0 {
			link, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return os.Symlink(link, target)
		}
		if err := os.Link(p, target); err == nil {
			return nil
		}
		return copyFile(p, target) // another file system
	})
}

// copyFile copies a regular file with its mode.
func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	fi, err := in.Stat()
	if err != nil {
		return err
	}
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, fi.Mode().Perm())
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
