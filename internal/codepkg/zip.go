package codepkg

import (
	"archive/zip"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// Zip writes the directory dir as a zip archive to w and returns the number
// of bytes written. Entries come in lexical order, with their modes (so an
// executable bootstrap stays executable) and modification times; symlinks
// are stored as symlinks, not followed; ".git" directories are skipped, and
// nothing else. A file that is neither regular, a directory nor a symlink
// is an error.
func Zip(dir string, w io.Writer) (int64, error) {
	root, err := filepath.EvalSymlinks(dir) // dir itself may be a link
	if err != nil {
		return 0, fmt.Errorf("zip code: %w", err)
	}
	cw := &countWriter{w: w}
	zw := zip.NewWriter(cw)
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		switch {
		case err != nil:
			return err
		case p == root:
			return nil
		case d.IsDir() && d.Name() == ".git":
			return filepath.SkipDir
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		return addEntry(zw, p, filepath.ToSlash(rel), d)
	})
	if err == nil {
		err = zw.Close()
	}
	if err != nil {
		return cw.n, fmt.Errorf("zip code: %w", err)
	}
	return cw.n, nil
}

// addEntry adds the file at p to zw under name.
func addEntry(zw *zip.Writer, p, name string, d fs.DirEntry) error {
	info, err := d.Info()
	if err != nil {
		return err
	}
	h, err := zip.FileInfoHeader(info)
	if err != nil {
		return err
	}
	h.Name = name
	switch mode := info.Mode(); {
	case mode.IsDir():
		h.Name += "/"
		h.Method = zip.Store
		_, err = zw.CreateHeader(h)
		return err
	case mode&fs.ModeSymlink != 0:
		target, err := os.Readlink(p)
		if err != nil {
			return err
		}
		h.Method = zip.Store
		fw, err := zw.CreateHeader(h)
		if err != nil {
			return err
		}
		_, err = io.WriteString(fw, target)
		return err
	case mode.IsRegular():
		h.Method = zip.Deflate
		fw, err := zw.CreateHeader(h)
		if err != nil {
			return err
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = io.Copy(fw, f)
		return err
	default:
		return fmt.Errorf("%s: unsupported file type %v", p, mode.Type())
	}
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
