//go:build !linux

package image

import (
	"io/fs"
	"os"
	"path/filepath"
)

// syncFS flushes every regular file under dir, so that an unpacked tree is on
// disk before the rename that publishes it.
func syncFS(dir string) error {
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
