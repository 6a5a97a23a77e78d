package runtimes

import (
	"bytes"
	"embed"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
)

// bootstraps holds the runtimes' bootstraps: python/bootstrap.py and
// node/bootstrap.mjs under bootstrap/.
//
//go:embed bootstrap
var bootstraps embed.FS

const embedRoot = "bootstrap"

// File modes of installed bootstraps: world-readable, so that instances
// running as unprivileged users can load them, and read-only.
const (
	dirMode  fs.FileMode = 0o755
	fileMode fs.FileMode = 0o444
)

// Install writes the embedded bootstraps into dir (python/bootstrap.py and
// node/bootstrap.mjs), creating dir and its subdirectories with mode 0755 and
// the files with mode 0444. It is idempotent: files already in place are left
// alone, and changed ones are replaced atomically. The directories above dir
// must be searchable by the users instances run as.
func Install(dir string) error {
	if err := mkdir(dir); err != nil {
		return err
	}
	return fs.WalkDir(bootstraps, embedRoot, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(embedRoot, filepath.FromSlash(p))
		if err != nil {
			return err
		}
		target := filepath.Join(dir, rel)
		if d.IsDir() {
			return mkdir(target)
		}
		data, err := bootstraps.ReadFile(path.Clean(p))
		if err != nil {
			return err
		}
		return writeFile(target, data, fileMode)
	})
}

func mkdir(dir string) error {
	if err := os.MkdirAll(dir, dirMode); err != nil {
		return fmt.Errorf("install bootstraps: %w", err)
	}
	if err := os.Chmod(dir, dirMode); err != nil { // MkdirAll's mode is subject to the umask
		return fmt.Errorf("install bootstraps: %w", err)
	}
	return nil
}

// writeFile makes target hold data with mode, replacing it atomically if it
// differs.
func writeFile(target string, data []byte, mode fs.FileMode) error {
	if cur, err := os.ReadFile(target); err == nil && bytes.Equal(cur, data) {
		fi, err := os.Stat(target)
		if err == nil && fi.Mode().Perm() == mode {
			return nil
		}
	}
	f, err := os.CreateTemp(filepath.Dir(target), ".install-*")
	if err != nil {
		return fmt.Errorf("install %s: %w", target, err)
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp, mode)
	}
	if err == nil {
		err = os.Rename(tmp, target)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("install %s: %w", target, err)
	}
	return nil
}
