package image

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// Modes of unpacked files: readable (and, for executables, runnable) by
// everyone, writable by no one; no setuid, setgid or sticky bit.
const (
	modeFile = 0o444
	modeExec = 0o555
	modeDir  = 0o555
)

// Limits of one layer's tar stream beyond the image's size.
const (
	maxEntries      = 1 << 20 // entries in one image (all layers)
	maxNameLen      = 4095    // bytes in an entry's path, as Linux's PATH_MAX
	maxComponentLen = 255     // bytes in one path element, as Linux's NAME_MAX
	maxLinkTarget   = 4095
)

// Whiteout names (the OCI image spec's, from AUFS).
const (
	whiteoutPrefix = ".wh."
	whiteoutOpaque = ".wh..wh..opq"
)

type kind uint8

const (
	kindDir kind = iota + 1
	kindFile
	kindLink
)

// layerMeta is what flattening needs of a layer beyond its tree; it is
// stored beside the tree as layer.json.
type layerMeta struct {
	Size      int64    `json:"size"`      // bytes of regular files
	Entries   int      `json:"entries"`   // entries written
	Whiteouts []string `json:"whiteouts"` // paths the layer deletes from the layers below
	Opaque    []string `json:"opaque"`    // directories whose lower contents the layer hides
}

// budget is what an image may still unpack, in bytes and entries, shared by
// the layers of one Ensure.
type budget struct {
	bytes, entries atomic.Int64
	limit          int64
}

func newBudget(limit int64) *budget {
	b := &budget{limit: limit}
	b.bytes.Store(limit)
	b.entries.Store(maxEntries)
	return b
}

func (b *budget) take(bytes int64) error {
	if b.bytes.Add(-bytes) < 0 {
		return fmt.Errorf("%w: the image is over the limit of %d bytes unpacked", ErrInvalidImage, b.limit)
	}
	if b.entries.Add(-1) < 0 {
		return fmt.Errorf("%w: the image has over %d files", ErrInvalidImage, maxEntries)
	}
	return nil
}

// extractor writes one layer's tar stream into an empty directory it owns.
// It never follows a link while writing: it knows the kind of everything it
// wrote (kinds), creates every parent directory itself and refuses a path
// through anything but a directory of its own; files are created with
// O_EXCL|O_NOFOLLOW.
type extractor struct {
	root  string
	kinds map[string]kind // relative slash path -> kind
	bud   *budget
	meta  layerMeta
}

// extractLayer unpacks the tar stream r into root (an empty directory) and
// returns the layer's metadata. Its errors about the content wrap
// ErrInvalidImage and name the entry.
func extractLayer(r io.Reader, root string, bud *budget) (layerMeta, error) {
	x := &extractor{root: root, kinds: map[string]kind{"": kindDir}, bud: bud}
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return x.meta, readError(err)
		}
		if err := x.entry(h, tr); err != nil {
			return x.meta, err
		}
	}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() && p != root {
			err = os.Chmod(p, modeDir)
		}
		return err
	})
	if err != nil {
		return x.meta, fmt.Errorf("unpack layer: %w", err)
	}
	return x.meta, nil
}

// readError is an error of the tar or decompression stream: a format error
// is the image's fault; a read error (the network) is returned as it is.
func readError(err error) error {
	if errors.Is(err, tar.ErrHeader) || errors.Is(err, tar.ErrFieldTooLong) || errors.Is(err, tar.ErrInsecurePath) {
		return fmt.Errorf("%w: a layer is not a valid tar archive (%v)", ErrInvalidImage, err)
	}
	return err
}

func invalidf(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalidImage}, args...)...)
}

func (x *extractor) entry(h *tar.Header, r io.Reader) error {
	name, err := cleanName(h.Name)
	if err != nil {
		return err
	}
	if h.Typeflag == tar.TypeXGlobalHeader {
		return nil
	}
	if name == "" { // "./": the layer's root
		if h.Typeflag != tar.TypeDir {
			return invalidf("layer entry %q is the root but not a directory", h.Name)
		}
		return nil
	}
	dir, base := path.Split(name)
	dir = strings.TrimSuffix(dir, "/")
	if strings.HasPrefix(base, whiteoutPrefix) {
		return x.whiteout(name, dir, base)
	}
	if err := x.parents(name); err != nil {
		return err
	}
	switch h.Typeflag {
	case tar.TypeDir:
		return x.dir(name, h)
	case tar.TypeReg:
		return x.file(name, h, r)
	case tar.TypeSymlink:
		return x.symlink(name, h.Linkname)
	case tar.TypeLink:
		return x.hardlink(name, h.Linkname)
	case tar.TypeChar, tar.TypeBlock:
		return invalidf("layer entry %q is a device node (%s): device files are not allowed", name, typeName(h.Typeflag))
	case tar.TypeFifo:
		return invalidf("layer entry %q is a FIFO: FIFOs are not allowed", name)
	}
	return invalidf("layer entry %q has an unsupported tar type %q", name, h.Typeflag)
}

func typeName(t byte) string {
	if t == tar.TypeChar {
		return "character device"
	}
	return "block device"
}

// cleanName makes an entry's name relative and slash-separated, refusing
// absolute paths and "..".
func cleanName(n string) (string, error) {
	if len(n) > maxNameLen {
		return "", invalidf("layer entry name of %d bytes is over %d", len(n), maxNameLen)
	}
	if strings.HasPrefix(n, "/") {
		return "", invalidf("layer entry %q is an absolute path", n)
	}
	if strings.ContainsRune(n, 0) {
		return "", invalidf("layer entry %q has a NUL byte", n)
	}
	var parts []string
	for _, p := range strings.Split(n, "/") {
		switch {
		case p == "" || p == ".":
		case p == "..":
			return "", invalidf("layer entry %q has a \"..\" element: it would escape the image", n)
		case len(p) > maxComponentLen:
			return "", invalidf("layer entry %q has an element of over %d bytes", n, maxComponentLen)
		default:
			parts = append(parts, p)
		}
	}
	return strings.Join(parts, "/"), nil
}

// parents makes the parent directories of name, refusing a path through
// anything that is not a directory.
func (x *extractor) parents(name string) error {
	for i := 0; i < len(name); i++ {
		if name[i] != '/' {
			continue
		}
		p := name[:i]
		switch x.kinds[p] {
		case kindDir:
			continue
		case 0:
			if err := os.Mkdir(x.abs(p), 0o755); err != nil {
				return fmt.Errorf("unpack layer: %w", err)
			}
			x.kinds[p] = kindDir
		case kindLink:
			return invalidf("layer entry %q goes through the symlink %q", name, p)
		default:
			return invalidf("layer entry %q goes through the file %q", name, p)
		}
	}
	return nil
}

func (x *extractor) abs(rel string) string { return filepath.Join(x.root, filepath.FromSlash(rel)) }

// replace removes what name is now (a later entry of a tar replaces an
// earlier one), unless both are directories.
func (x *extractor) replace(name string, k kind) (exists bool, err error) {
	old := x.kinds[name]
	if old == 0 {
		return false, nil
	}
	if old == kindDir && k == kindDir {
		return true, nil
	}
	if err := os.RemoveAll(x.abs(name)); err != nil { // directories are still writable here
		return false, fmt.Errorf("unpack layer: %w", err)
	}
	for p := range x.kinds {
		if p == name || strings.HasPrefix(p, name+"/") {
			delete(x.kinds, p)
		}
	}
	return false, nil
}

func (x *extractor) count(size int64) error {
	x.meta.Entries++
	x.meta.Size += size
	return x.bud.take(size)
}

func (x *extractor) dir(name string, h *tar.Header) error {
	exists, err := x.replace(name, kindDir)
	if err != nil || exists {
		return err
	}
	if err := x.count(0); err != nil {
		return err
	}
	if err := os.Mkdir(x.abs(name), 0o755); err != nil {
		return fmt.Errorf("unpack layer: %w", err)
	}
	x.kinds[name] = kindDir
	return nil
}

func (x *extractor) file(name string, h *tar.Header, r io.Reader) error {
	if h.Size < 0 {
		return invalidf("layer entry %q has a negative size", name)
	}
	if err := x.count(h.Size); err != nil {
		return err
	}
	if _, err := x.replace(name, kindFile); err != nil {
		return err
	}
	p := x.abs(name)
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return fmt.Errorf("unpack layer: %w", err)
	}
	x.kinds[name] = kindFile
	_, err = io.CopyN(f, r, h.Size)
	if err != nil {
		f.Close()
		return readError(err)
	}
	mode := os.FileMode(modeFile)
	if h.Mode&0o111 != 0 {
		mode = modeExec
	}
	err = f.Chmod(mode) // setuid, setgid, sticky and write bits dropped
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil && !h.ModTime.IsZero() {
		err = os.Chtimes(p, h.ModTime, h.ModTime)
	}
	if err != nil {
		return fmt.Errorf("unpack layer: %w", err)
	}
	return nil
}

func (x *extractor) symlink(name, target string) error {
	if target == "" || len(target) > maxLinkTarget || strings.ContainsRune(target, 0) {
		return invalidf("layer entry %q is a symlink with an invalid target", name)
	}
	if escapes(path.Dir(name), target) {
		return invalidf("layer entry %q is a symlink to %q, outside the image", name, target)
	}
	if err := x.count(0); err != nil {
		return err
	}
	if _, err := x.replace(name, kindLink); err != nil {
		return err
	}
	if err := os.Symlink(target, x.abs(name)); err != nil {
		return fmt.Errorf("unpack layer: %w", err)
	}
	x.kinds[name] = kindLink
	return nil
}

// escapes says whether target, a symlink's target in the directory dir
// (relative to the root), leaves the root, read lexically as the kernel
// would within the image: an absolute target starts at the root.
func escapes(dir, target string) bool {
	depth := 0
	if !strings.HasPrefix(target, "/") && dir != "." {
		depth = strings.Count(dir, "/") + 1
	}
	for _, p := range strings.Split(target, "/") {
		switch p {
		case "", ".":
		case "..":
			if depth--; depth < 0 {
				return true
			}
		default:
			depth++
		}
	}
	return false
}

func (x *extractor) hardlink(name, target string) error {
	if strings.HasPrefix(target, "/") {
		return invalidf("layer entry %q is a hard link to %q, outside the layer", name, target)
	}
	t, err := cleanName(target)
	if err != nil || t == "" {
		return invalidf("layer entry %q is a hard link to %q, outside the layer", name, target)
	}
	if x.kinds[t] != kindFile {
		return invalidf("layer entry %q is a hard link to %q, which is not a regular file earlier in the same layer", name, target)
	}
	if t == name {
		return nil
	}
	if err := x.count(0); err != nil {
		return err
	}
	if _, err := x.replace(name, kindFile); err != nil {
		return err
	}
	if err := os.Link(x.abs(t), x.abs(name)); err != nil {
		return fmt.Errorf("unpack layer: %w", err)
	}
	x.kinds[name] = kindFile
	return nil
}

// whiteout records a whiteout entry (it deletes from the layers below, not
// from this one) and makes its directory.
func (x *extractor) whiteout(name, dir, base string) error {
	if err := x.parents(name); err != nil {
		return err
	}
	if dir != "" && x.kinds[dir] != kindDir {
		return invalidf("layer whiteout %q is in %q, which is not a directory", name, dir)
	}
	switch {
	case base == whiteoutOpaque:
		x.meta.Opaque = append(x.meta.Opaque, dir)
	case strings.HasPrefix(base, whiteoutPrefix+whiteoutPrefix): // other AUFS metadata (.wh..wh.plnk): ignored
	case base == whiteoutPrefix:
		return invalidf("layer whiteout %q names nothing", name)
	default:
		x.meta.Whiteouts = append(x.meta.Whiteouts, path.Join(dir, strings.TrimPrefix(base, whiteoutPrefix)))
	}
	return nil
}

// removeTree removes a tree whose directories may be read-only.
func removeTree(root string) error {
	_ = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			_ = os.Chmod(p, 0o700)
		}
		return nil
	})
	return os.RemoveAll(root)
}
