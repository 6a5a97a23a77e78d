//go:build !linux

package durable

import (
	"io/fs"
	"os"
	"path/filepath"
)

// SyncFS flushes every regular file under dir, so that an unpacked tree is on
// disk before the rename that publishes it.
func SyncFS(dir string) error {
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		return f.Sync()
	})
}
