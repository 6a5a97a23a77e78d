package codepkg

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nimbus-serverless/nimbus"
	"golang.org/x/sys/unix"
)

// FuzzUnpack checks that Unpack never panics, fails only with ErrInvalid on
// any input, leaves nothing behind when it fails, and never writes or links
// outside dest when it succeeds.
func FuzzUnpack(f *testing.F) {
	f.Add(buildZip(f, file("index.js", "x"), exe("bootstrap", "#!/bin/sh\n")))
	f.Add(buildZip(f, dir("a/"), file("a/b/c", "x"), link("l", "a/b/c"), link("a/up", "..")))
	f.Add(buildZip(f, file("f", zeros(4096)), zent{name: "s", body: "stored", store: true}))
	f.Add(rawZip(f, "a", "hello", 0, crc("hello")))
	for _, tc := range badCases(f) {
		if len(tc.zip) < 64<<10 { // keep the corpus small
			f.Add(tc.zip)
		}
	}
	lim := Limits{MaxZipped: 1 << 20, MaxUnzipped: 4 << 20, MaxFiles: 64, MaxRatio: 200}
	f.Fuzz(func(t *testing.T, data []byte) {
		base := scratchDir(t)
		makeRemovable(t, base)
		// dest is deep inside base, so that a write a few ".." away from
		// it would still land in base, where the checks below see it.
		parent := filepath.Join(base, "p1", "p2", "p3")
		if err := os.MkdirAll(parent, 0o755); err != nil {
			t.Fatal(err)
		}
		dest := filepath.Join(parent, "out")
		err := Unpack(data, dest, lim)
		if err != nil && !errors.Is(err, nimbus.ErrInvalid) {
			t.Fatalf("Unpack: got %v, want nil or ErrInvalid", err)
		}
		for _, p := range listTree(t, base) {
			inside := p == "p1" || p == "p1/p2" || p == "p1/p2/p3" || (err == nil && (p == "p1/p2/p3/out" || strings.HasPrefix(p, "p1/p2/p3/out/")))
			if !inside {
				t.Fatalf("Unpack (err %v) left %s outside dest", err, p)
			}
		}
		if err == nil {
			checkUnpacked(t, dest)
		}
	})
}

// scratchDir is a new directory for one fuzz input, removed at the end of
// it: on tmpfs (/dev/shm) when there is one, else t.TempDir. Each input
// makes, fills and removes a small tree; on the disk file system of the
// project's 2-core CI machine that made FuzzUnpack about six times slower
// (some 1,000 inputs a second against 5,000 to 7,000 on tmpfs). Everything
// Unpack relies on (O_EXCL, symlinks, modes, rename, syncfs, openat2) works
// the same on tmpfs.
func scratchDir(t *testing.T) string {
	t.Helper()
	const shm = "/dev/shm"
	var st unix.Statfs_t
	if unix.Statfs(shm, &st) != nil || st.Type != unix.TMPFS_MAGIC {
		return t.TempDir()
	}
	d, err := os.MkdirTemp(shm, "nimbus-fuzz-")
	if err != nil {
		return t.TempDir()
	}
	t.Cleanup(func() { _ = os.RemoveAll(d) })
	return d
}

// checkUnpacked checks modes and, with the kernel's RESOLVE_BENEATH, that
// every symlink under dest resolves inside it.
func checkUnpacked(t *testing.T, dest string) {
	t.Helper()
	root, err := unix.Open(dest, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(root)
	err = filepath.WalkDir(dest, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dest, p)
		switch mode := info.Mode(); {
		case mode.IsDir():
			if mode.Perm() != 0o555 {
				t.Errorf("%s: got mode %v, want dr-xr-xr-x", rel, mode)
			}
		case mode.IsRegular():
			if mode.Perm() != 0o444 && mode.Perm() != 0o555 {
				t.Errorf("%s: got mode %v, want 0444 or 0555", rel, mode)
			}
		case mode&fs.ModeSymlink != 0:
			fd, err := unix.Openat2(root, rel, &unix.OpenHow{
				Flags:   unix.O_PATH | unix.O_CLOEXEC,
				Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_MAGICLINKS,
			})
			switch {
			case errors.Is(err, unix.ENOSYS):
				t.Skip("no openat2 on this kernel")
			case errors.Is(err, unix.EXDEV):
				t.Errorf("symlink %s resolves outside dest", rel)
			case errors.Is(err, unix.ELOOP):
				t.Errorf("symlink %s loops", rel)
			case err == nil:
				unix.Close(fd)
			}
			// ENOENT, ENOTDIR: a dangling link, harmless.
		default:
			t.Errorf("%s: unexpected file type %v", rel, mode)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
