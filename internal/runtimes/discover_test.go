package runtimes

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestDiscoverHost(t *testing.T) {
	rts := discovered()
	byID := map[string]Runtime{}
	for _, rt := range rts {
		byID[rt.ID] = rt
	}
	want := []Runtime{
		{ID: "python3.11", Kind: KindPython, Interp: "/usr/bin/python3.11"},
		{ID: "nodejs20.x", Kind: KindNode, Interp: "/usr/bin/node"},
		{ID: "provided.al2023", Kind: KindProvided},
		{ID: "provided.al2", Kind: KindProvided},
		{ID: "http", Kind: KindHTTP},
	}
	for _, w := range want {
		if got := byID[w.ID]; got != w {
			t.Errorf("runtime %s = %+v, want %+v", w.ID, got, w)
		}
	}
	if !slices.IsSortedFunc(rts, func(a, b Runtime) int { return strings.Compare(a.ID, b.ID) }) {
		t.Errorf("runtimes not sorted by ID: %+v", rts)
	}
	for _, rt := range rts {
		if rt.Interp == "" {
			continue
		}
		real, err := filepath.EvalSymlinks(rt.Interp)
		if err != nil {
			t.Errorf("%s: %v", rt.ID, err)
		}
		if strings.HasPrefix(real, "/root/") || strings.HasPrefix(rt.Interp, "/root/") {
			t.Errorf("%s uses %s (%s), under /root", rt.ID, rt.Interp, real)
		}
	}
}

// openTree makes dir and its parents up to the test's temporary root
// searchable by others (t.TempDir makes them 0700).
func openTree(t *testing.T, dir string) {
	t.Helper()
	tmp := filepath.Clean(os.TempDir())
	if !strings.HasPrefix(dir, tmp+string(filepath.Separator)) {
		t.Fatalf("%s is not under %s", dir, tmp)
	}
	for d := dir; d != tmp; d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
}

func TestDiscoverPermissions(t *testing.T) {
	root := t.TempDir()
	openTree(t, root)
	pub := filepath.Join(root, "pub")   // like /usr/bin
	priv := filepath.Join(root, "priv") // like /root
	pub2 := filepath.Join(root, "pub2") // like /usr/local/bin
	for _, d := range []string{pub, pub2} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(priv, 0o700); err != nil {
		t.Fatal(err)
	}
	link := func(target, name string) {
		if err := os.Symlink(target, name); err != nil {
			t.Fatal(err)
		}
	}
	script := func(p, body string, mode os.FileMode) {
		if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body+"\n"), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
	}
	real := "/usr/bin/python3.11"
	link(real, filepath.Join(pub, "python3.12"))                              // usable
	link(real, filepath.Join(pub, "python3.7"))                               // too old
	link(real, filepath.Join(pub, "python3-config"))                          // not an interpreter name
	link(real, filepath.Join(pub, "python3.x"))                               // not an interpreter name
	script(filepath.Join(priv, "python3.13"), "", 0o755)                      // in a closed directory...
	link(filepath.Join(priv, "python3.13"), filepath.Join(pub, "python3.13")) // ...reached by a link
	script(filepath.Join(pub, "python3.14"), "", 0o750)                       // not executable by others
	script(filepath.Join(pub, "python3.15"), "", 0o755)                       // usable
	script(filepath.Join(pub2, "python3.15"), "", 0o755)                      // same ID: the first directory wins
	link(filepath.Join(root, "missing"), filepath.Join(pub, "python3.16"))    // dangling

	script(filepath.Join(pub, "node"), "echo v22.3.1", 0o755)
	script(filepath.Join(pub2, "node"), "echo v16.0.0", 0o755)        // too old
	script(filepath.Join(priv, "node"), "echo v23.0.0", 0o755)        // closed directory
	script(filepath.Join(root, "badnode"), "echo hello", 0o755)       // no version
	link(filepath.Join(pub, "node"), filepath.Join(root, "samenode")) // asked once only

	got := discover(discardLog, []string{pub, pub2, filepath.Join(root, "absent")},
		[]string{filepath.Join(pub, "node"), filepath.Join(pub2, "node"), filepath.Join(priv, "node"),
			filepath.Join(root, "badnode"), filepath.Join(root, "samenode")})
	want := []Runtime{
		{ID: "http", Kind: KindHTTP},
		{ID: "nodejs22.x", Kind: KindNode, Interp: filepath.Join(pub, "node")},
		{ID: "provided.al2", Kind: KindProvided},
		{ID: "provided.al2023", Kind: KindProvided},
		{ID: "python3.12", Kind: KindPython, Interp: filepath.Join(pub, "python3.12")},
		{ID: "python3.15", Kind: KindPython, Interp: filepath.Join(pub, "python3.15")},
	}
	if !slices.Equal(got, want) {
		t.Errorf("discover =\n%+v\nwant\n%+v", got, want)
	}
}

func TestWorldExecutable(t *testing.T) {
	root := t.TempDir()
	tests := []struct {
		name   string
		open   bool        // open the directory tree to others
		mode   os.FileMode // of the file
		wantOK bool
	}{
		{"open tree, 0755", true, 0o755, true},
		{"open tree, 0751", true, 0o751, false},
		{"open tree, 0700", true, 0o700, false},
		{"closed tree, 0755", false, 0o755, false},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(root, string(rune('a'+i)))
			if err := os.Mkdir(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			if tt.open {
				openTree(t, dir)
			} else {
				openTree(t, root)
			}
			p := filepath.Join(dir, "interp")
			if err := os.WriteFile(p, nil, tt.mode); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(p, tt.mode); err != nil {
				t.Fatal(err)
			}
			if err := worldExecutable(p); (err == nil) != tt.wantOK {
				t.Errorf("worldExecutable = %v, want ok %v", err, tt.wantOK)
			}
		})
	}
}

func TestInstallDirs(t *testing.T) {
	dir := t.TempDir()
	opt := filepath.Join(dir, "opt", "node", "bin")
	if err := os.MkdirAll(opt, 0o755); err != nil {
		t.Fatal(err)
	}
	node := filepath.Join(opt, "node")
	link := filepath.Join(dir, "node-link")
	if err := errors.Join(os.WriteFile(node, nil, 0o755), os.Symlink(node, link)); err != nil {
		t.Fatal(err)
	}
	rts := []Runtime{
		{ID: "provided.al2023"},
		{ID: "python3.11", Interp: "/usr/bin/python3"},
		{ID: "nodejs20.x", Interp: link},
		{ID: "nodejs22.x", Interp: node},
	}
	if got, want := InstallDirs(rts), []string{filepath.Join(dir, "opt", "node")}; !slices.Equal(got, want) {
		t.Errorf("InstallDirs = %v, want %v", got, want)
	}
}
