// Package durable makes what was written to disk stay there: a tree of files
// flushed before the rename that publishes it (the code cache's and the image
// store's).
package durable

import (
	"os"

	"golang.org/x/sys/unix"
)

// SyncFS flushes the file system holding dir, so that an unpacked tree is on
// disk before the rename that publishes it.
func SyncFS(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return unix.Syncfs(int(f.Fd()))
}
