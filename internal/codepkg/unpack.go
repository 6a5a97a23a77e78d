package codepkg

import (
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/nimbus-serverless/nimbus/internal/durable"
)

// Modes of unpacked code: readable and traversable by everyone, writable by
// no one, so an unprivileged function user can run but not change it.
const (
	modeFile = 0o444
	modeExec = 0o555
	modeDir  = 0o555
)

// tmpPrefix starts the names of the temporary directories Unpack and Cache
// create beside their destination.
const tmpPrefix = ".tmp-"

// Unpack validates b (as Validate does) and writes it into dest, which must
// not exist but whose parent must. It unpacks into a temporary sibling
// directory, flushes it to disk and renames it to dest only when everything
// succeeded; on any error it leaves nothing behind. Files are 0444, or 0555
// when their zip mode has an exec bit; directories, dest included, are 0555;
// modification times are kept. Symlinks are created as they are in the zip,
// after checking that they resolve inside dest.
//
// Errors: nimbus.ErrInvalid (with a user-facing message) for a bad package;
// fs.ErrExist if dest exists; anything else is a platform (disk) error.
func Unpack(b []byte, dest string, lim Limits) error {
	a, err := parse(b, lim)
	if err != nil {
		return err
	}
	if _, err := os.Lstat(dest); err == nil {
		return fmt.Errorf("unpack code: %s: %w", dest, fs.ErrExist)
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dest), tmpPrefix+filepath.Base(dest)+"-")
	if err != nil {
		return fmt.Errorf("unpack code: %w", err)
	}
	if err := a.writeTree(tmp); err != nil {
		removeTree(tmp)
		return err
	}
	if err := os.Rename(tmp, dest); err != nil {
		removeTree(tmp)
		return fmt.Errorf("unpack code: %w", err)
	}
	return nil
}

// writeTree writes the archive into the empty directory root, sets the final
// modes and flushes the file system.
func (a *archive) writeTree(root string) error {
	for _, e := range a.entries {
		if e.kind == kindDir {
			if err := os.MkdirAll(filepath.Join(root, filepath.FromSlash(e.name)), 0o755); err != nil {
				return fmt.Errorf("unpack code: %w", err)
			}
		}
	}
	err := a.extract(func(e *entry) (io.WriteCloser, error) {
		return createFile(root, e)
	})
	if err != nil {
		return err
	}
	// Symlinks last, so that nothing is ever written through one.
	for _, e := range a.entries {
		if e.kind != kindLink {
			continue
		}
		p := filepath.Join(root, filepath.FromSlash(e.name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return fmt.Errorf("unpack code: %w", err)
		}
		if err := os.Symlink(e.target, p); err != nil {
			return fmt.Errorf("unpack code: %w", err)
		}
	}
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			err = os.Chmod(p, modeDir)
		}
		return err
	})
	if err == nil {
		err = durable.SyncFS(root)
	}
	if err != nil {
		return fmt.Errorf("unpack code: %w", err)
	}
	return nil
}

// outFile is an extracted file being written; Close sets its mode and time.
type outFile struct {
	*os.File
	e *entry
}

func createFile(root string, e *entry) (io.WriteCloser, error) {
	p := filepath.Join(root, filepath.FromSlash(e.name))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return nil, fmt.Errorf("unpack code: %w", err)
	}
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600) // O_EXCL: never through a symlink
	if err != nil {
		return nil, fmt.Errorf("unpack code: %w", err)
	}
	return &outFile{File: f, e: e}, nil
}

func (f *outFile) Close() error {
	mode := fs.FileMode(modeFile)
	if f.e.exec {
		mode = modeExec
	}
	err := f.Chmod(mode)
	if cerr := f.File.Close(); err == nil {
		err = cerr
	}
	if t := f.e.f.Modified; err == nil && !t.IsZero() {
		err = os.Chtimes(f.Name(), t, t)
	}
	return err
}

// removeTree removes a tree of read-only directories, best effort.
func removeTree(root string) error {
	_ = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			_ = os.Chmod(p, 0o700)
		}
		return nil
	})
	return os.RemoveAll(root)
}
