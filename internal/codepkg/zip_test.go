package codepkg

import (
	"archive/zip"
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// writeTree creates files under root: a name ending in "/" is a directory,
// "->" makes a symlink, a leading "*" makes an executable.
func writeTree(t *testing.T, root string, specs ...string) {
	t.Helper()
	for _, s := range specs {
		var err error
		switch {
		case strings.HasSuffix(s, "/"):
			err = os.MkdirAll(filepath.Join(root, s), 0o755)
		case strings.Contains(s, " -> "):
			name, target, _ := strings.Cut(s, " -> ")
			p := filepath.Join(root, name)
			if err = os.MkdirAll(filepath.Dir(p), 0o755); err == nil {
				err = os.Symlink(target, p)
			}
		default:
			mode := fs.FileMode(0o644)
			if s[0] == '*' {
				s, mode = s[1:], 0o755
			}
			p := filepath.Join(root, s)
			if err = os.MkdirAll(filepath.Dir(p), 0o755); err == nil {
				err = os.WriteFile(p, []byte("content of "+s), mode)
			}
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

func TestZipRoundTrip(t *testing.T) {
	src := t.TempDir()
	writeTree(t, src,
		"*bootstrap", "handler.py", "lib/a.js", "lib/deep/b.js", "empty/",
		"lib/link.js -> a.js", "current -> lib/deep",
		".git/config", "lib/.git/HEAD", ".gitignore", ".env",
	)
	var buf bytes.Buffer
	n, err := Zip(src, &buf)
	if err != nil {
		t.Fatalf("Zip: %v", err)
	}
	if n != int64(buf.Len()) {
		t.Errorf("Zip: got %d bytes written, want %d", n, buf.Len())
	}

	// Deterministic: the same tree zips to the same bytes.
	var again bytes.Buffer
	if _, err := Zip(src, &again); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf.Bytes(), again.Bytes()) {
		t.Error("Zip: two runs over the same tree differ")
	}
	r, err := zip.NewReader(bytes.NewReader(buf.Bytes()), int64(buf.Len()))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range r.File {
		names = append(names, f.Name)
	}
	wantNames := []string{".env", ".gitignore", "bootstrap", "current", "empty/", "handler.py", "lib/",
		"lib/a.js", "lib/deep/", "lib/deep/b.js", "lib/link.js"}
	if !slices.Equal(names, wantNames) {
		t.Errorf("entries: got %q, want %q", names, wantNames)
	}

	dest := filepath.Join(t.TempDir(), "out")
	makeRemovable(t, dest)
	if err := Unpack(buf.Bytes(), dest, Limits{}); err != nil {
		t.Fatalf("Unpack: %v", err)
	}
	wantTree := []string{".env", ".gitignore", "bootstrap", "current", "empty", "handler.py", "lib", "lib/a.js",
		"lib/deep", "lib/deep/b.js", "lib/link.js"}
	if got := listTree(t, dest); !slices.Equal(got, wantTree) {
		t.Errorf("tree: got %q, want %q", got, wantTree)
	}
	for _, name := range []string{"bootstrap", "handler.py", "lib/deep/b.js"} {
		got, err := os.ReadFile(filepath.Join(dest, name))
		if err != nil {
			t.Fatal(err)
		}
		if want := "content of " + name; string(got) != want {
			t.Errorf("%s: got %q, want %q", name, got, want)
		}
	}
	for name, want := range map[string]fs.FileMode{"bootstrap": 0o555, "handler.py": 0o444} {
		fi, err := os.Stat(filepath.Join(dest, name))
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode(); got != want {
			t.Errorf("mode of %s: got %v, want %v", name, got, want)
		}
	}
	for name, want := range map[string]string{"current": "lib/deep", "lib/link.js": "a.js"} {
		if got, err := os.Readlink(filepath.Join(dest, name)); err != nil || got != want {
			t.Errorf("link %s: got %q (%v), want %q", name, got, err, want)
		}
	}
}

func TestZipOfSymlinkedDir(t *testing.T) {
	base := t.TempDir()
	writeTree(t, base, "real/f.txt", "alias -> real")
	var buf bytes.Buffer
	if _, err := Zip(filepath.Join(base, "alias"), &buf); err != nil {
		t.Fatalf("Zip: %v", err)
	}
	r, err := zip.NewReader(bytes.NewReader(buf.Bytes()), int64(buf.Len()))
	if err != nil {
		t.Fatal(err)
	}
	if len(r.File) != 1 || r.File[0].Name != "f.txt" {
		t.Errorf("entries: got %d, want only f.txt", len(r.File))
	}
}

func TestZipErrors(t *testing.T) {
	fifoDir := t.TempDir()
	if err := unix.Mkfifo(filepath.Join(fifoDir, "pipe"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		dir  string
		want string
	}{
		{"missing dir", filepath.Join(t.TempDir(), "missing"), "no such file"},
		{"fifo", fifoDir, "unsupported file type"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Zip(tc.dir, &bytes.Buffer{})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}
