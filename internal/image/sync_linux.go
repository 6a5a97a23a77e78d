package image

import (
	"os"

	"golang.org/x/sys/unix"
)

// syncFS flushes the file system holding dir, so that an unpacked tree is on
// disk before the rename that publishes it.
func syncFS(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return unix.Syncfs(int(f.Fd()))
}
