package codepkg

import (
	"archive/zip"
	"bytes"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"strings"

	"github.com/nimbus-serverless/nimbus"
)

const (
	maxNameLen      = 4095 // bytes in an entry's path, as Linux's PATH_MAX
	maxComponentLen = 255  // bytes in one path element, as Linux's NAME_MAX
	maxLinkTarget   = 4095 // bytes in a symlink target
	maxLinkHops     = 40   // symlinks followed resolving one target, as Linux
	maxLinkSteps    = 1 << 20
)

type kind uint8

const (
	kindDir kind = iota
	kindFile
	kindLink
)

// entry is one checked archive entry.
type entry struct {
	f      *zip.File
	name   string // clean, relative, slash-separated, never empty
	kind   kind
	exec   bool   // files: the zip's mode has an exec bit
	target string // links: where the link points
}

// node is a path in the archive's tree; implicit directories (parents that
// have no entry of their own) are nodes too.
type node struct {
	kind     kind
	explicit bool
	children map[string]*node
	target   string
}

// archive is a parsed package whose names, tree and symlinks are checked;
// file contents are checked by extract.
type archive struct {
	lim       Limits
	size      int64
	entries   []entry
	linkBytes int64
}

// Validate checks that b is a code package Unpack accepts: a zip archive
// within lim, whose every entry decompresses with a correct CRC, whose names
// are relative paths that stay inside the package, whose symlinks point
// inside it, and that holds at least one file. It returns nil or an error
// wrapping nimbus.ErrInvalid whose message is meant for the user.
func Validate(b []byte, lim Limits) error {
	a, err := parse(b, lim)
	if err != nil {
		return err
	}
	return a.extract(nil)
}

// parse opens b and checks everything but the file contents.
func parse(b []byte, lim Limits) (*archive, error) {
	lim = lim.withDefaults()
	a := &archive{lim: lim, size: int64(len(b))}
	if a.size > lim.MaxZipped {
		return nil, nimbus.Invalidf("code package is %d bytes, over the limit of %d bytes zipped", a.size, lim.MaxZipped)
	}
	r, err := zip.NewReader(bytes.NewReader(b), a.size)
	if err != nil && !errors.Is(err, zip.ErrInsecurePath) { // insecure paths are rejected below
		return nil, nimbus.Invalidf("code package is not a valid zip archive (%v)", err)
	}
	if len(r.File) > lim.MaxFiles {
		return nil, nimbus.Invalidf("code package has %d entries, over the limit of %d", len(r.File), lim.MaxFiles)
	}
	root := &node{kind: kindDir, explicit: true}
	hasFiles := false
	for _, f := range r.File {
		e, err := checkEntry(f)
		if err != nil {
			return nil, err
		}
		if e.name == "" { // "./": the root itself
			continue
		}
		if err := root.insert(e); err != nil {
			return nil, err
		}
		hasFiles = hasFiles || e.kind != kindDir
		a.entries = append(a.entries, e)
	}
	if !hasFiles {
		return nil, nimbus.Invalidf("code package contains no files")
	}
	if err := a.checkLinks(root); err != nil {
		return nil, err
	}
	return a, nil
}

// checkEntry checks an entry's name and type.
func checkEntry(f *zip.File) (entry, error) {
	name, err := cleanName(f.Name)
	if err != nil {
		return entry{}, err
	}
	e := entry{f: f, name: name}
	mode := f.Mode()
	switch {
	case mode.IsDir():
		e.kind = kindDir
	case mode&fs.ModeSymlink != 0:
		e.kind = kindLink
	case mode.IsRegular():
		e.kind = kindFile
		e.exec = mode&0o111 != 0
	default:
		return entry{}, nimbus.Invalidf("code package entry %q has an unsupported file type (%v)", f.Name, mode.Type())
	}
	if name == "" && e.kind != kindDir {
		return entry{}, nimbus.Invalidf("code package entry %q has an empty path", f.Name)
	}
	return e, nil
}

// cleanName turns an entry name into a clean relative slash-separated path,
// rejecting any name that could land outside the package root. The root's
// own entry ("./") cleans to "".
func cleanName(name string) (string, error) {
	bad := func(why string) error {
		return nimbus.Invalidf("code package entry %q has an unsafe path: %s", name, why)
	}
	switch {
	case name == "":
		return "", bad("empty name")
	case len(name) > maxNameLen:
		return "", bad("too long")
	case strings.ContainsRune(name, 0):
		return "", bad("NUL character")
	case strings.ContainsRune(name, '\\'):
		return "", bad("backslash (use / to separate directories)")
	case name[0] == '/':
		return "", bad("absolute path")
	case len(name) >= 2 && name[1] == ':' && isLetter(name[0]):
		return "", bad("drive letter")
	}
	var parts []string
	for p := range strings.SplitSeq(name, "/") {
		switch {
		case p == "" || p == ".":
		case p == "..":
			return "", bad(`".." element`)
		case len(p) > maxComponentLen:
			return "", bad("a path element is over 255 bytes")
		default:
			parts = append(parts, p)
		}
	}
	return strings.Join(parts, "/"), nil
}

func isLetter(c byte) bool { return c|0x20 >= 'a' && c|0x20 <= 'z' }

// insert adds e to the tree, rejecting duplicates and paths under anything
// but a directory.
func (n *node) insert(e entry) error {
	parts := strings.Split(e.name, "/")
	for i, p := range parts[:len(parts)-1] {
		child := n.children[p]
		if child == nil {
			child = &node{kind: kindDir}
			n.addChild(p, child)
		} else if child.kind != kindDir {
			return nimbus.Invalidf("code package entry %q is inside %q, which is not a directory",
				e.name, strings.Join(parts[:i+1], "/"))
		}
		n = child
	}
	last := parts[len(parts)-1]
	switch old := n.children[last]; {
	case old == nil:
		n.addChild(last, &node{kind: e.kind, explicit: true, target: e.target})
	case old.explicit:
		return nimbus.Invalidf("code package has more than one entry named %q", e.name)
	case e.kind != kindDir:
		return nimbus.Invalidf("code package entry %q is not a directory but other entries are inside it", e.name)
	default:
		old.explicit = true
	}
	return nil
}

func (n *node) addChild(name string, c *node) {
	if n.children == nil {
		n.children = make(map[string]*node)
	}
	n.children[name] = c
}

// lookup returns the node at a clean relative path, or nil.
func (n *node) lookup(name string) *node {
	for p := range strings.SplitSeq(name, "/") {
		if n = n.children[p]; n == nil {
			return nil
		}
	}
	return n
}

// checkLinks reads every symlink's target and checks that it resolves inside
// the package.
func (a *archive) checkLinks(root *node) error {
	for i := range a.entries {
		e := &a.entries[i]
		if e.kind != kindLink {
			continue
		}
		target, err := readTarget(e.f)
		if err != nil {
			return err
		}
		e.target = target
		a.linkBytes += int64(len(target))
		root.lookup(e.name).target = target
	}
	steps := maxLinkSteps
	for _, e := range a.entries {
		if e.kind == kindLink {
			if err := resolve(root, e.name, &steps); err != nil {
				return err
			}
		}
	}
	return nil
}

// readTarget reads and checks a symlink entry's target.
func readTarget(f *zip.File) (string, error) {
	rc, err := f.Open()
	if err != nil {
		return "", readError(f.Name, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, maxLinkTarget+1))
	if err != nil {
		return "", readError(f.Name, err)
	}
	bad := func(why string) error {
		return nimbus.Invalidf("code package symlink %q is unsafe: %s", f.Name, why)
	}
	target := string(b)
	switch {
	case len(b) > maxLinkTarget:
		return "", bad("target too long")
	case crc32.ChecksumIEEE(b) != f.CRC32:
		return "", readError(f.Name, zip.ErrChecksum)
	case target == "":
		return "", bad("empty target")
	case strings.ContainsRune(target, 0):
		return "", bad("NUL character in target")
	case strings.ContainsRune(target, '\\'):
		return "", bad("backslash in target")
	case target[0] == '/':
		return "", bad(fmt.Sprintf("absolute target %q", target))
	}
	return target, nil
}

// resolve follows the symlink at name through the archive's tree, as the
// kernel would, and fails if it leaves the root or loops. Paths that do not
// exist in the archive are taken literally. steps bounds the work over all
// links of a package.
func resolve(root *node, name string, steps *int) error {
	escape := func() error {
		return nimbus.Invalidf("code package symlink %q is unsafe: its target %q points outside the package",
			name, root.lookup(name).target)
	}
	// stack holds the directories from the root to where resolution is;
	// ghost counts the elements past it that do not exist in the archive.
	stack := []*node{root}
	dir := name[:max(strings.LastIndexByte(name, '/'), 0)]
	if dir != "" {
		for p := range strings.SplitSeq(dir, "/") {
			stack = append(stack, stack[len(stack)-1].children[p])
		}
	}
	ghost := 0
	pending := [][]string{strings.Split(root.lookup(name).target, "/")}
	hops := 0
	for len(pending) > 0 {
		top := &pending[len(pending)-1]
		if len(*top) == 0 {
			pending = pending[:len(pending)-1]
			continue
		}
		if *steps--; *steps < 0 {
			return nimbus.Invalidf("code package symlinks are too complex to check (at %q)", name)
		}
		p := (*top)[0]
		*top = (*top)[1:]
		switch {
		case p == "" || p == ".":
		case p == ".." && ghost > 0:
			ghost--
		case p == "..":
			if len(stack) == 1 {
				return escape()
			}
			stack = stack[:len(stack)-1]
		case ghost > 0:
			ghost++
		default:
			child := stack[len(stack)-1].children[p]
			switch {
			case child == nil || child.kind == kindFile:
				ghost++
			case child.kind == kindDir:
				stack = append(stack, child)
			default: // a symlink: continue with its target, relative to the same directory
				if hops++; hops > maxLinkHops {
					return nimbus.Invalidf("code package symlink %q is unsafe: too many levels of symbolic links", name)
				}
				if child.target == "" || child.target[0] == '/' {
					return escape()
				}
				pending = append(pending, strings.Split(child.target, "/"))
			}
		}
	}
	return nil
}

// sinkError marks an error from writing extracted content (a platform
// error), as opposed to one from reading the archive (a bad package).
type sinkError struct{ err error }

func (e *sinkError) Error() string { return e.err.Error() }
func (e *sinkError) Unwrap() error { return e.err }

type sinkWriter struct{ w io.Writer }

func (s sinkWriter) Write(p []byte) (int, error) {
	n, err := s.w.Write(p)
	if err != nil {
		err = &sinkError{err}
	}
	return n, err
}

// readError turns an error from reading an entry into a user-facing one.
func readError(name string, err error) error {
	var se *sinkError
	switch {
	case errors.As(err, &se):
		return se.err
	case errors.Is(err, zip.ErrChecksum):
		return nimbus.Invalidf("code package entry %q is corrupt: CRC mismatch", name)
	case errors.Is(err, zip.ErrAlgorithm):
		return nimbus.Invalidf("code package entry %q uses an unsupported compression method", name)
	}
	return nimbus.Invalidf("code package entry %q is corrupt (%v)", name, err)
}

// extract decompresses every entry, checking sizes, ratios and CRCs. For
// each regular file it copies the content to the writer create returns
// (closing it after), or discards it when create is nil.
func (a *archive) extract(create func(e *entry) (io.WriteCloser, error)) error {
	lim := a.lim
	totalCap := min(lim.MaxUnzipped, max(ratioFloor, satMul(lim.MaxRatio, a.size)))
	total := a.linkBytes
	for i := range a.entries {
		e := &a.entries[i]
		if e.kind == kindLink {
			continue
		}
		csize := max(min(int64(min(e.f.CompressedSize64, 1<<62)), a.size), 1)
		entryCap := max(ratioFloor, satMul(lim.MaxRatio, csize))
		budget := max(min(totalCap-total, entryCap), 0)
		var w io.Writer = io.Discard
		var wc io.WriteCloser
		if create != nil && e.kind == kindFile {
			var err error
			if wc, err = create(e); err != nil {
				return err
			}
			w = sinkWriter{wc}
		}
		n, err := copyEntry(e, w, budget)
		if wc != nil {
			if cerr := wc.Close(); err == nil && cerr != nil {
				err = &sinkError{cerr}
			}
		}
		if err != nil {
			return readError(e.f.Name, err)
		}
		if n > budget {
			switch {
			case total+n > lim.MaxUnzipped:
				return nimbus.Invalidf("code package is over the limit of %d bytes unzipped", lim.MaxUnzipped)
			case n > entryCap:
				return nimbus.Invalidf("code package entry %q expands more than %d times its compressed size (a zip bomb?)",
					e.f.Name, lim.MaxRatio)
			default:
				return nimbus.Invalidf("code package expands more than %d times its compressed size (a zip bomb?)", lim.MaxRatio)
			}
		}
		total += n
	}
	return nil
}

// copyEntry copies at most budget+1 bytes of e's content to w, checking the
// CRC when it reads the whole content.
func copyEntry(e *entry, w io.Writer, budget int64) (int64, error) {
	rc, err := e.f.Open()
	if err != nil {
		return 0, err
	}
	defer rc.Close()
	h := crc32.NewIEEE()
	n, err := io.Copy(io.MultiWriter(w, h), io.LimitReader(rc, budget+1))
	if err != nil || n > budget {
		return n, err
	}
	if e.kind != kindDir && h.Sum32() != e.f.CRC32 {
		return n, zip.ErrChecksum
	}
	return n, nil
}

// satMul returns a*b for non-negative a and b, saturating at 1<<62.
func satMul(a, b int64) int64 {
	const top = 1 << 62
	if a != 0 && b > top/a {
		return top
	}
	return a * b
}
