package runtimes

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

func TestInstall(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "runtimes")
	files := map[string]string{
		"python/bootstrap.py": "bootstrap/python/bootstrap.py",
		"node/bootstrap.mjs":  "bootstrap/node/bootstrap.mjs",
	}
	check := func(t *testing.T) {
		t.Helper()
		for _, d := range []string{dir, filepath.Join(dir, "python"), filepath.Join(dir, "node")} {
			fi, err := os.Stat(d)
			if err != nil {
				t.Fatal(err)
			}
			if got := fi.Mode().Perm(); got != 0o755 {
				t.Errorf("%s mode = %v, want 0755", d, got)
			}
		}
		for rel, src := range files {
			p := filepath.Join(dir, filepath.FromSlash(rel))
			fi, err := os.Stat(p)
			if err != nil {
				t.Fatal(err)
			}
			if got := fi.Mode().Perm(); got != 0o444 {
				t.Errorf("%s mode = %v, want 0444", rel, got)
			}
			got, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			want, err := os.ReadFile(filepath.FromSlash(src))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) || len(want) == 0 {
				t.Errorf("%s differs from %s", rel, src)
			}
		}
		// Nothing but the bootstraps and their directories.
		var n int
		_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err == nil && !d.IsDir() {
				n++
			}
			return nil
		})
		if n != len(files) {
			t.Errorf("%d files installed, want %d", n, len(files))
		}
	}
	old := syscall.Umask(0o077) // Install must not depend on the umask
	defer syscall.Umask(old)
	if err := Install(dir); err != nil {
		t.Fatalf("Install: %v", err)
	}
	check(t)
	// Again: idempotent.
	if err := Install(dir); err != nil {
		t.Fatalf("second Install: %v", err)
	}
	check(t)
	// A damaged file is repaired.
	py := filepath.Join(dir, "python", "bootstrap.py")
	if err := os.Chmod(py, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(py, []byte("damaged"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(dir, "node"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := Install(dir); err != nil {
		t.Fatalf("repairing Install: %v", err)
	}
	check(t)
}

func TestInstallError(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := Install(filepath.Join(file, "runtimes")); err == nil {
		t.Error("Install under a regular file succeeded, want an error")
	}
}
