package codepkg

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/nimbus-serverless/nimbus"
)

func TestUnpack(t *testing.T) {
	z := buildZip(t,
		dir("lib/"),
		exe("bootstrap", "#!/bin/sh\necho hi\n"),
		file("lib/util.js", "module.exports = 1\n"),
		file("lib/deep/er/data.json", `{"a":1}`),
		file("./handler.py", "def h(e, c): return e\n"),
		link("lib/current", "deep/er/data.json"),
		link("lib/deep/up", "../util.js"),
		link("cfg", "lib/deep"),
		exe("bin/tool", "\x7fELF"),
	)
	dest := filepath.Join(t.TempDir(), "code")
	makeRemovable(t, dest)
	if err := Unpack(z, dest, Limits{}); err != nil {
		t.Fatalf("Unpack: %v", err)
	}
	want := []string{"bin", "bin/tool", "bootstrap", "cfg", "handler.py", "lib", "lib/current", "lib/deep",
		"lib/deep/er", "lib/deep/er/data.json", "lib/deep/up", "lib/util.js"}
	if got := listTree(t, dest); !slices.Equal(got, want) {
		t.Errorf("tree: got %q, want %q", got, want)
	}
	modes := []struct {
		path string
		want fs.FileMode
	}{
		{".", fs.ModeDir | 0o555},
		{"bootstrap", 0o555},
		{"bin", fs.ModeDir | 0o555},
		{"bin/tool", 0o555},
		{"handler.py", 0o444},
		{"lib", fs.ModeDir | 0o555},
		{"lib/deep/er", fs.ModeDir | 0o555},
		{"lib/deep/er/data.json", 0o444},
		{"lib/current", fs.ModeSymlink},
	}
	for _, m := range modes {
		fi, err := os.Lstat(filepath.Join(dest, m.path))
		if err != nil {
			t.Fatal(err)
		}
		got := fi.Mode()
		if got&fs.ModeSymlink != 0 {
			got = fs.ModeSymlink
		}
		if got != m.want {
			t.Errorf("mode of %s: got %v, want %v", m.path, got, m.want)
		}
	}
	contents := []struct{ path, want string }{
		{"bootstrap", "#!/bin/sh\necho hi\n"},
		{"lib/current", `{"a":1}`},
		{"lib/deep/up", "module.exports = 1\n"},
		{"cfg/er/data.json", `{"a":1}`},
	}
	for _, c := range contents {
		b, err := os.ReadFile(filepath.Join(dest, c.path))
		if err != nil {
			t.Fatal(err)
		}
		if got := string(b); got != c.want {
			t.Errorf("content of %s: got %q, want %q", c.path, got, c.want)
		}
	}
	if target, err := os.Readlink(filepath.Join(dest, "cfg")); err != nil || target != "lib/deep" {
		t.Errorf("cfg: got link to %q (%v), want lib/deep", target, err)
	}
	fi, err := os.Stat(filepath.Join(dest, "handler.py"))
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.ModTime().UTC(); !got.Equal(testTime) {
		t.Errorf("mtime: got %v, want %v", got, testTime)
	}
	if got := listTree(t, filepath.Dir(dest)); !slices.Equal(got[:1], []string{"code"}) || slices.ContainsFunc(got, func(s string) bool { return s[0] == '.' }) {
		t.Errorf("parent: got %q, want only code/...", got)
	}
}

func TestUnpackExistingDest(t *testing.T) {
	tests := []struct {
		name  string
		setup func(dest string) error
	}{
		{"empty dir", func(dest string) error { return os.Mkdir(dest, 0o755) }},
		{"file", func(dest string) error { return os.WriteFile(dest, []byte("x"), 0o644) }},
		{"dangling symlink", func(dest string) error { return os.Symlink("nowhere", dest) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			parent := t.TempDir()
			dest := filepath.Join(parent, "out")
			if err := tc.setup(dest); err != nil {
				t.Fatal(err)
			}
			err := Unpack(buildZip(t, file("a", "x")), dest, Limits{})
			if !errors.Is(err, fs.ErrExist) {
				t.Fatalf("got %v, want fs.ErrExist", err)
			}
			if got := listTree(t, parent); !slices.Equal(got, []string{"out"}) {
				t.Errorf("parent: got %q, want [out]", got)
			}
		})
	}
}

// TestUnpackNothingLeftOnLateError checks the clean-up when the error comes
// after files were written: a CRC mismatch in the last entry.
func TestUnpackNothingLeftOnLateError(t *testing.T) {
	z := buildZip(t, dir("d/"), file("d/a", "aaaa"), exe("d/e/b", "bbbb"), link("l", "d/a"),
		zent{name: "d/last", body: "hello", raw: true, crc: crc("hellO")})
	parent := t.TempDir()
	err := Unpack(z, filepath.Join(parent, "out"), Limits{})
	if !errors.Is(err, nimbus.ErrInvalid) {
		t.Fatalf("got %v, want ErrInvalid", err)
	}
	if got := listTree(t, parent); len(got) != 0 {
		t.Errorf("parent: got %q, want nothing", got)
	}
}
