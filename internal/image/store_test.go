package image

import (
	"archive/tar"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// baseLayer is a base shared by images: the hello binary, files and
// directories that upper layers delete or hide.
func baseLayer(t testing.TB) []tentry {
	return []tentry{
		dir("bin"), {name: "bin/hello", body: string(helloBinary(t)), mode: 0o755},
		dir("etc"), file("etc/os-release", "ID=nimbus-test\n"), file("etc/gone", "x"),
		dir("opq"), file("opq/old", "old"), dir("opq/sub"), file("opq/sub/deep", "deep"),
		dir("usr"), dir("usr/lib"), file("usr/lib/libx.so", "lib"),
		symlink("lib", "usr/lib"), symlink("bin/sh", "/bin/hello"),
		{name: "bin/suid", body: "s", mode: 0o4755}, {name: "etc/secret", body: "k", mode: 0o600},
		{name: "tmp", typ: tar.TypeDir, mode: 0o1777},
	}
}

// appLayer deletes and hides what the base has and adds its own.
func appLayer(t testing.TB, tag string) []tentry {
	return []tentry{
		dir("etc"), {name: "etc/.wh.gone", mode: 0o644},
		dir("opq"), {name: "opq/.wh..wh..opq", mode: 0o644}, file("opq/new", "new"),
		dir("app"), file("app/"+tag, tag), {name: "app/link", typ: tar.TypeLink, link: "app/" + tag},
		symlink("app/rel", "../etc/os-release"),
	}
}

func TestEnsureFlattensImage(t *testing.T) {
	reg := newRegistry(t, nil)
	s := openStore(t, Options{})
	ref := reg.push(t, "app:v1", imageOf(t, layer(t, baseLayer(t)...), layer(t, appLayer(t, "one")...)))
	res, err := s.Resolve(t.Context(), ref)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(res, reg.host+"/app@sha256:") {
		t.Fatalf("Resolve(%q) = %q, want %s/app@sha256:...", ref, res, reg.host)
	}
	img, err := s.Ensure(t.Context(), res)
	if err != nil {
		t.Fatal(err)
	}
	if want := res[strings.Index(res, "@")+1:]; img.Digest != want {
		t.Errorf("Digest = %s, want %s", img.Digest, want)
	}
	wantCfg := Config{Entrypoint: []string{"/bin/hello"}, Cmd: []string{"arg"}, Env: []string{"PATH=/bin", "A=b"},
		WorkingDir: "/app", User: "1000:1000", ExposedPorts: []string{"53/udp", "8080/tcp"}}
	if !reflect.DeepEqual(img.Config, wantCfg) {
		t.Errorf("Config = %+v, want %+v", img.Config, wantCfg)
	}
	checkTree(t, img.Root, "one")
	if img.Size < int64(len(helloBinary(t))) {
		t.Errorf("Size = %d, under the binary's size", img.Size)
	}
	// The binary runs from the root.
	out, err := exec.Command(filepath.Join(img.Root, "bin/hello"), "x").CombinedOutput()
	if err != nil || string(out) != "hello from the image [x]\n" {
		t.Errorf("bin/hello: %q, %v", out, err)
	}
	// Again: the same image, no pull.
	again, err := s.Ensure(t.Context(), res)
	if err != nil || again.Root != img.Root {
		t.Fatalf("second Ensure = %+v, %v", again, err)
	}
}

// checkTree checks the flattened root of base + app(tag).
func checkTree(t *testing.T, root, tag string) {
	t.Helper()
	read := func(p string) string {
		b, err := os.ReadFile(filepath.Join(root, p))
		if err != nil {
			t.Errorf("read %s: %v", p, err)
		}
		return string(b)
	}
	absent := func(p string) {
		if _, err := os.Lstat(filepath.Join(root, p)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s: %v, want it absent", p, err)
		}
	}
	mode := func(p string, want fs.FileMode) {
		fi, err := os.Lstat(filepath.Join(root, p))
		if err != nil {
			t.Errorf("%s: %v", p, err)
			return
		}
		if got := fi.Mode() & (fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky | fs.ModeType); got != want {
			t.Errorf("mode of %s = %v, want %v", p, got, want)
		}
	}
	link := func(p, want string) {
		got, err := os.Readlink(filepath.Join(root, p))
		if err != nil || got != want {
			t.Errorf("readlink %s = %q, %v; want %q", p, got, err, want)
		}
	}
	if got := read("etc/os-release"); got != "ID=nimbus-test\n" {
		t.Errorf("etc/os-release = %q", got)
	}
	absent("etc/gone") // whiteout
	absent("opq/old")  // opaque directory
	absent("opq/sub")  // opaque directory
	if read("opq/new") != "new" || read("app/"+tag) != tag || read("app/link") != tag || read("lib/libx.so") != "lib" || read("app/rel") != "ID=nimbus-test\n" {
		t.Error("wrong content")
	}
	link("lib", "usr/lib")
	link("bin/sh", "/bin/hello")
	mode(".", fs.ModeDir|0o555)
	mode("bin", fs.ModeDir|0o555)
	mode("tmp", fs.ModeDir|0o555) // no sticky bit, no write
	mode("bin/hello", 0o555)
	mode("bin/suid", 0o555) // setuid stripped
	mode("etc/secret", 0o444)
	mode("etc/os-release", 0o444)
	a, _ := os.Stat(filepath.Join(root, "app/"+tag))
	b, _ := os.Stat(filepath.Join(root, "app/link"))
	if a == nil || b == nil || !os.SameFile(a, b) {
		t.Error("app/link is not a hard link of app/" + tag)
	}
	if f, err := os.OpenFile(filepath.Join(root, "etc/os-release"), os.O_WRONLY, 0); err == nil && os.Geteuid() != 0 {
		f.Close()
		t.Error("a file of the root is writable")
	}
	var st syscall.Stat_t
	if err := syscall.Stat(filepath.Join(root, "bin/hello"), &st); err != nil || int(st.Uid) != os.Geteuid() {
		t.Errorf("bin/hello owned by %d, want the store's user %d (%v)", st.Uid, os.Geteuid(), err)
	}
}

func TestSharedBaseLayerPulledOnce(t *testing.T) {
	reg := newRegistry(t, nil)
	s := openStore(t, Options{})
	base := layer(t, baseLayer(t)...)
	one, two := layer(t, appLayer(t, "one")...), layer(t, appLayer(t, "two")...)
	ref1 := reg.push(t, "app:one", imageOf(t, base, one))
	ref2 := reg.push(t, "other:two", imageOf(t, base, two))
	img1, err := resolveEnsure(t, s, ref1)
	if err != nil {
		t.Fatal(err)
	}
	img2, err := resolveEnsure(t, s, ref2)
	if err != nil {
		t.Fatal(err)
	}
	checkTree(t, img2.Root, "two")
	if got := reg.blobGets(digestOf(t, base)); got != 1 {
		t.Errorf("base layer fetched %d times, want 1", got)
	}
	if got := reg.blobGets(digestOf(t, two)); got != 1 {
		t.Errorf("second image's own layer fetched %d times, want 1", got)
	}
	for _, p := range []string{"bin/hello", "etc/os-release", "usr/lib/libx.so"} {
		a, err1 := os.Stat(filepath.Join(img1.Root, p))
		b, err2 := os.Stat(filepath.Join(img2.Root, p))
		if err1 != nil || err2 != nil || !os.SameFile(a, b) {
			t.Errorf("%s is not shared by the two roots (%v, %v)", p, err1, err2)
		}
	}
}

func TestConcurrentEnsurePullsOnce(t *testing.T) {
	reg := newRegistry(t, nil)
	s := openStore(t, Options{})
	l := layer(t, baseLayer(t)...)
	res, err := s.Resolve(t.Context(), reg.push(t, "app:v1", imageOf(t, l)))
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	roots := make([]string, 8)
	for i := range roots {
		wg.Go(func() {
			img, err := s.Ensure(t.Context(), res)
			if err != nil {
				t.Error(err)
				return
			}
			roots[i] = img.Root
		})
	}
	wg.Wait()
	for _, r := range roots[1:] {
		if r != roots[0] {
			t.Errorf("roots differ: %q, %q", r, roots[0])
		}
	}
	if got := reg.blobGets(digestOf(t, l)); got != 1 {
		t.Errorf("layer fetched %d times by 8 concurrent Ensures, want 1", got)
	}
}

func TestZstdAndDockerManifests(t *testing.T) {
	reg := newRegistry(t, nil)
	s := openStore(t, Options{})
	zl := static.NewLayer(zstded(t, tarOf(t, file("z", "zstd!"))), types.OCILayerZStd)
	ul := static.NewLayer(tarOf(t, file("u", "plain")), types.DockerUncompressedLayer)
	gl := static.NewLayer(gzipped(t, tarOf(t, file("g", "gzip"))), types.DockerLayer)
	img := imageOf(t, zl, ul, gl)
	ref := reg.push(t, "mixed:v1", img)
	got, err := resolveEnsure(t, s, ref)
	if err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]string{"z": "zstd!", "u": "plain", "g": "gzip"} {
		if b, err := os.ReadFile(filepath.Join(got.Root, p)); err != nil || string(b) != want {
			t.Errorf("%s = %q, %v; want %q", p, b, err, want)
		}
	}
}
