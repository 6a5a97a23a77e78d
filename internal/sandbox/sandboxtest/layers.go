package sandboxtest

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nimbus-serverless/nimbus/internal/sandbox"
	"github.com/nimbus-serverless/nimbus/internal/testenv"
)

// testLayers checks that an instance reads its layers (Spec.OptDir) where
// PathsOf says, at OptRoot with FixedPaths, and cannot write there even
// when the directory's modes would let anyone.
func testLayers(t *testing.T, nb NewBackend) {
	b := nb(t, Setup{})
	var out testenv.Buffer
	spec := sh(t, `cat "$OPT/lib.txt"
try() { if (eval "$2") 2>/dev/null; then echo "$1:written"; else echo "$1:refused"; fi; }
try "layer file" 'echo changed > "$OPT/lib.txt"'
try "layer dir" 'touch "$OPT/new"'`, &out)
	spec.OptDir = HostDir(t)
	writeFile(t, filepath.Join(spec.OptDir, "lib.txt"), "the layer\n")
	ro := sandbox.IsolationOf(b).ReadOnlyCode
	if ro {
		if err := errors.Join(os.Chmod(spec.OptDir, 0o777), os.Chmod(filepath.Join(spec.OptDir, "lib.txt"), 0o666)); err != nil {
			t.Fatal(err)
		}
	}
	in := sandbox.PathsOf(b, spec)
	if sandbox.IsolationOf(b).FixedPaths && in.Opt != sandbox.OptRoot {
		t.Errorf("PathsOf(...).Opt = %q, want %s", in.Opt, sandbox.OptRoot)
	}
	spec.Env = append(spec.Env, "OPT="+in.Opt)
	wait(t, Start(t, b, spec))
	want := "the layer\n"
	if ro {
		want += "layer file:refused\nlayer dir:refused\n"
	}
	// Without ReadOnlyCode only the modes protect it: root may write.
	if got := out.String(); ro && got != want || !strings.HasPrefix(got, want) {
		t.Errorf("output %q, want %q", got, want)
	}
	if !ro {
		return
	}
	if _, err := os.Stat(filepath.Join(spec.OptDir, "new")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("stat error %v, want the instance's file not created", err)
	}
	if data, _ := os.ReadFile(filepath.Join(spec.OptDir, "lib.txt")); string(data) != "the layer\n" {
		t.Errorf("lib.txt = %q after the instance ran, want it unchanged", data)
	}
}
