package codepkg

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestMeasure(t *testing.T) {
	n, err := Measure(buildZip(t, file("a", "12345"), dir("d/"), file("d/b", "123")), Limits{})
	if err != nil || n != 8 {
		t.Errorf("Measure = %d, %v, want 8", n, err)
	}
	if _, err := Measure(buildZip(t, file("../evil", "x")), Limits{}); err == nil {
		t.Error("Measure accepted a zip-slip entry")
	}
}

// TestEnsureLayers: packages merge in order, a later one's entry
// replacing an earlier one's whatever their kinds, without writing
// through an earlier package's symbolic link; the result is read-only,
// cached by key, and pruned when its key is not in use.
func TestEnsureLayers(t *testing.T) {
	root := filepath.Join(t.TempDir(), "cache")
	makeRemovable(t, root)
	blobs := newFakeBlobs()
	c, err := NewCache(root, blobs, Limits{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	put := func(zip []byte) string {
		d, _, err := blobs.Put(t.Context(), bytes.NewReader(zip))
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	one := put(buildZip(t, file("same", "one"), file("only1", "1"), file("was-file", "f"), dir("was-dir/"), file("was-dir/x", "x"),
		link("through", "target"), dir("target/"), exe("bin/tool", "#!/bin/sh\n")))
	two := put(buildZip(t, file("same", "two"), dir("was-file/"), file("was-file/y", "y"), file("was-dir", "now a file"),
		dir("through/"), file("through/z", "z")))
	key := LayersKey([]string{"a:1", "b:1"})
	dir, err := c.EnsureLayers(t.Context(), key, []string{one, two})
	if err != nil {
		t.Fatal(err)
	}
	read := func(p string) string {
		b, err := os.ReadFile(filepath.Join(dir, p))
		if err != nil {
			return "error: " + err.Error()
		}
		return string(b)
	}
	for p, want := range map[string]string{"same": "two", "only1": "1", "was-file/y": "y", "was-dir": "now a file", "through/z": "z"} {
		if got := read(p); got != want {
			t.Errorf("%s = %q, want %q", p, got, want)
		}
	}
	if fi, err := os.Lstat(filepath.Join(dir, "through")); err != nil || !fi.IsDir() {
		t.Errorf("through: %v, %v: want a directory in place of the link", fi, err)
	}
	if got := listTree(t, filepath.Join(dir, "target")); len(got) != 0 {
		t.Errorf("target holds %v: written through the earlier link", got)
	}
	if fi, err := os.Stat(filepath.Join(dir, "bin/tool")); err != nil || fi.Mode().Perm() != modeExec {
		t.Errorf("bin/tool: %v, %v: want mode %o", fi, err, modeExec)
	}
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != modeDir {
		t.Errorf("merged dir: %v, %v: want mode %o", fi, err, modeDir)
	}
	again, err := c.EnsureLayers(t.Context(), key, []string{one, two})
	if err != nil || again != dir {
		t.Errorf("again = %s, %v", again, err)
	}
	if _, err := c.Prune(map[string]bool{key: true}); err != nil {
		t.Fatal(err)
	}
	if got := read("same"); got != "two" {
		t.Errorf("after a prune keeping the key: %q", got)
	}
	if _, err := c.Prune(map[string]bool{}); err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(root); slices.ContainsFunc(ents, func(e os.DirEntry) bool { return e.Name() == key }) {
		t.Error("the merged directory outlived a prune without its key")
	}
	if _, err := c.EnsureLayers(t.Context(), "not-a-key", nil); err == nil {
		t.Error("a bad key was accepted")
	}
}
