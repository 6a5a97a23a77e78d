package image

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// mnode is a path of the root being built: a directory (with children) or
// not (a file or a symlink).
type mnode struct {
	dir      bool
	children map[string]*mnode
}

// flattener builds a root from unpacked layers, lowest first, as overlayfs
// would show them: a layer's whiteouts and opaque directories hide what the
// layers below put there, then its entries replace what was there. Files are
// hard links to the layers' files; directories and symlinks are made anew.
type flattener struct {
	root string
	top  *mnode
}

func newFlattener(root string) *flattener {
	return &flattener{root: root, top: &mnode{dir: true, children: map[string]*mnode{}}}
}

// lookup returns the node of rel (slash-separated) and its parent, nil when
// absent.
func (f *flattener) lookup(rel string) (n, parent *mnode, base string) {
	n = f.top
	if rel == "" {
		return n, nil, ""
	}
	for _, p := range strings.Split(rel, "/") {
		if n == nil || !n.dir {
			return nil, nil, ""
		}
		parent, base = n, p
		n = n.children[p]
	}
	return n, parent, base
}

func (f *flattener) abs(rel string) string { return filepath.Join(f.root, filepath.FromSlash(rel)) }

// add applies one layer: its tree in dir/root, its whiteouts in m.
func (f *flattener) add(layerRoot string, m layerMeta) error {
	for _, d := range m.Opaque {
		n, _, _ := f.lookup(d)
		if n == nil || !n.dir {
			continue
		}
		for c := range n.children {
			if err := os.RemoveAll(f.abs(joinRel(d, c))); err != nil {
				return fmt.Errorf("flatten image: %w", err)
			}
		}
		n.children = map[string]*mnode{}
	}
	for _, w := range m.Whiteouts {
		n, parent, base := f.lookup(w)
		if n == nil {
			continue
		}
		if err := os.RemoveAll(f.abs(w)); err != nil {
			return fmt.Errorf("flatten image: %w", err)
		}
		delete(parent.children, base)
	}
	return filepath.WalkDir(layerRoot, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("flatten image: %w", err)
		}
		if p == layerRoot {
			return nil
		}
		rel, err := filepath.Rel(layerRoot, p)
		if err != nil {
			return fmt.Errorf("flatten image: %w", err)
		}
		return f.entry(filepath.ToSlash(rel), p, d)
	})
}

func (f *flattener) entry(rel, src string, d fs.DirEntry) error {
	n, parent, base := f.lookup(rel)
	if parent == nil || !parent.dir { // WalkDir visits a directory before its entries
		return fmt.Errorf("flatten image: %s has no parent directory", rel)
	}
	dst := f.abs(rel)
	if n != nil {
		if n.dir && d.IsDir() {
			return nil
		}
		if err := os.RemoveAll(dst); err != nil {
			return fmt.Errorf("flatten image: %w", err)
		}
		delete(parent.children, base)
	}
	var err error
	switch t := d.Type(); {
	case t.IsDir():
		err = os.Mkdir(dst, 0o755)
	case t&fs.ModeSymlink != 0:
		var target string
		if target, err = os.Readlink(src); err == nil {
			err = os.Symlink(target, dst)
		}
	case t.IsRegular():
		err = os.Link(src, dst)
	default:
		err = fmt.Errorf("%s is a %s", src, t)
	}
	if err != nil {
		return fmt.Errorf("flatten image: %w", err)
	}
	nn := &mnode{dir: d.IsDir()}
	if nn.dir {
		nn.children = map[string]*mnode{}
	}
	parent.children[base] = nn
	return nil
}

func joinRel(a, b string) string {
	if a == "" {
		return b
	}
	return a + "/" + b
}

// finish makes the root's directories read-only and returns the size of its
// files.
func (f *flattener) finish() (int64, error) {
	var size int64
	err := filepath.WalkDir(f.root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			fi, err := d.Info()
			if err != nil {
				return err
			}
			size += fi.Size()
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("flatten image: %w", err)
	}
	// Directories last and deepest first would not matter: chmod needs no
	// write permission on the parent.
	err = filepath.WalkDir(f.root, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			err = os.Chmod(p, modeDir)
		}
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("flatten image: %w", err)
	}
	return size, nil
}
