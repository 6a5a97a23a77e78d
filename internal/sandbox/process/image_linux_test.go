package process

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nimbus-serverless/nimbus/internal/sandbox"
	"github.com/nimbus-serverless/nimbus/internal/sandbox/sandboxtest"
	"github.com/nimbus-serverless/nimbus/internal/testenv"
)

// imageBackend runs every instance on an image's root: the conformance
// suite's image mode.
type imageBackend struct {
	*Backend
	root string
}

func (b imageBackend) Start(ctx context.Context, spec sandbox.Spec) (sandbox.Instance, error) {
	spec.RootFS = b.root
	return b.Backend.Start(ctx, spec)
}

// requireImageRoot skips the test unless b can run image instances.
func requireImageRoot(t *testing.T, b *Backend) {
	t.Helper()
	if !b.Isolation().ImageRoot {
		t.Skipf("the backend cannot run image instances: %s", b.Describe())
	}
}

// hostImage builds, in a new host directory, an image root from the
// host's files the conformance suite runs (/bin/sh, coreutils, python3):
// /usr/bin, /usr/sbin, /usr/lib64, the host's library directories and
// Python's standard library, hard-linked where the file system allows
// (else copied), the top-level links (bin, lib, lib64, sbin) as the host
// has them, an /etc of its own (the linker's cache, a passwd with a user
// "app", a marker file) and empty /var/task and /var/runtime as mount
// points. Nothing else of the host is in it.
func hostImage(t testing.TB) string {
	t.Helper()
	root := sandboxtest.HostDir(t)
	out, err := exec.Command(python, "-c", "import sysconfig; print(sysconfig.get_path('stdlib'))").Output()
	if err != nil {
		t.Skipf("%s: %v", python, err)
	}
	dirs := []string{"/usr/bin", "/usr/sbin", "/usr/lib64", strings.TrimSpace(string(out))}
	libs, _ := filepath.Glob("/usr/lib/*-linux-gnu")
	dirs = append(dirs, libs...)
	for _, d := range dirs {
		if err := copyTree(d, filepath.Join(root, d)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("copy %s into the image: %v", d, err)
		}
	}
	for _, l := range []string{"bin", "lib", "lib64", "sbin"} {
		if target, err := os.Readlink("/" + l); err == nil {
			if err := os.Symlink(target, filepath.Join(root, l)); err != nil {
				t.Fatal(err)
			}
		} else if fi, err := os.Stat("/" + l); err == nil && fi.IsDir() {
			if err := copyTree("/"+l, filepath.Join(root, l)); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, d := range []string{"var/task", "var/runtime", "etc"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	files := map[string]string{
		"etc/passwd":       "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:the app:/home/app:/bin/sh\n",
		"etc/group":        "root:x:0:\napp:x:1000:\n",
		"etc/image-marker": "from the image\n",
		"etc/hosts":        "10.9.9.9 image-hosts\n", // replaced by the instance's
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(root, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if data, err := os.ReadFile("/etc/ld.so.cache"); err == nil {
		if err := os.WriteFile(filepath.Join(root, "etc/ld.so.cache"), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// copyTree makes dst a copy of the tree at src: directories made, regular
// files hard-linked (copied where that fails), links copied.
func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		target := filepath.Join(dst, rel)
		switch {
		case d.IsDir():
			return os.MkdirAll(target, 0o755)
		case d.Type()&fs.ModeSymlink != 0:
			link, err := os.Readlink(path)
			if err != nil {
				return err
			}
			return os.Symlink(link, target)
		case d.Type().IsRegular():
			if os.Link(path, target) == nil {
				return nil
			}
			return copyFile(path, target)
		}
		return nil // devices, pipes, sockets: not in an image
	})
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	fi, err := in.Stat()
	if err != nil {
		return err
	}
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, fi.Mode().Perm())
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// TestConformanceImage runs the conformance suite on instances whose root
// is an image's (sandbox.Spec.RootFS).
func TestConformanceImage(t *testing.T) {
	b := newBackend(t, Config{})
	requireImageRoot(t, b)
	root := hostImage(t)
	sandboxtest.Run(t, func(t *testing.T, s sandboxtest.Setup) sandbox.Backend {
		return imageBackend{newBackend(t, Config{HidePaths: s.Hide}), root}
	})
}

// TestImageRoot checks what an image instance sees beyond the suite: the
// image's files and /etc, its own passwd entries layered over the
// image's, the image's user named as its uid, the working directory, no
// host path, and what it may not write.
func TestImageRoot(t *testing.T) {
	for _, pooled := range []bool{true, false} {
		t.Run("pooled="+strconv.FormatBool(pooled), func(t *testing.T) {
			cfg := Config{}
			if !pooled {
				cfg.PoolSize = -1
			}
			b := newBackend(t, cfg)
			requireImageRoot(t, b)
			root := hostImage(t)
			var out testenv.Buffer
			spec := sandbox.Spec{
				ID:   "img-" + strconv.FormatBool(pooled),
				Path: "sh", Args: []string{"sh", "-c", `echo "root:$(ls -A / | tr '\n' ' ')"
echo "cwd:$(pwd)"
echo "marker:$(cat /etc/image-marker)"
echo "whoami:$(whoami)"
echo "id:$(id -u)"
echo "app:$(grep '^app:' /etc/passwd)"
echo "hosts:$(grep -c image-hosts /etc/hosts)"
echo "hostname:$(cat /etc/hostname)"
if [ -e /work ] || [ -e /root ] || [ -e /home ]; then echo "host:seen"; else echo "host:unseen"; fi
if (echo x > /etc/new) 2>/dev/null; then echo "etc:written"; else echo "etc:refused"; fi
if (echo x > /usr/new) 2>/dev/null; then echo "usr:written"; else echo "usr:refused"; fi
echo x > /tmp/ok && echo "tmp:written"`},
				Env:     testEnv,
				RootFS:  root,
				WorkDir: "/usr",
				User:    "app:app",
				TmpMB:   8,
			}
			spec.Stdout, spec.Stderr = &out, &out
			inst, err := b.Start(t.Context(), spec)
			if err != nil {
				t.Fatalf("Start: %v", err)
			}
			<-inst.Done()
			lines := map[string]string{}
			for line := range strings.Lines(out.String()) {
				if k, v, ok := strings.Cut(strings.TrimSpace(line), ":"); ok {
					lines[k] = strings.TrimSpace(v)
				}
			}
			uid := strconv.Itoa(inst.UID())
			want := map[string]string{
				"root":   "bin dev etc lib lib64 proc sbin tmp usr var",
				"cwd":    "/usr",
				"marker": "from the image",
				"whoami": "app", "id": uid,
				"app":   "app:x:" + uid + ":" + uid + ":the app:/home/app:/bin/sh",
				"hosts": "0", "hostname": spec.ID,
				"host": "unseen", "etc": "refused", "usr": "refused", "tmp": "written",
			}
			for k, v := range want {
				if lines[k] != v {
					t.Errorf("%s: %q, want %q", k, lines[k], v)
				}
			}
			if inst.Err() != nil || t.Failed() {
				t.Errorf("Err() = %v; output %q", inst.Err(), out.String())
			}
		})
	}
}

// TestImageStatic runs a static program on an image that holds nothing
// else (as one built FROM scratch): no /etc, /tmp, /dev or /proc of its
// own.
func TestImageStatic(t *testing.T) {
	b := newBackend(t, Config{})
	requireImageRoot(t, b)
	root := sandboxtest.HostDir(t)
	buildProbe(t, root)
	// Links of the image that point out of it lead nowhere.
	secret := filepath.Join(sandboxtest.HostDir(t), "secret")
	if err := os.WriteFile(secret, []byte("host-secret:x:0:0::/:/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := errors.Join(os.Mkdir(filepath.Join(root, "etc"), 0o755), os.Symlink(secret, filepath.Join(root, "etc", "passwd")),
		os.Symlink("../../../../../../.."+secret, filepath.Join(root, "etc", "group")), os.Symlink(secret, filepath.Join(root, "escape"))); err != nil {
		t.Fatal(err)
	}
	var out testenv.Buffer
	spec := sandbox.Spec{ID: "img-static", Path: "/probe", RootFS: root, Stdout: &out, Stderr: &out}
	inst, err := b.Start(t.Context(), spec)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	<-inst.Done()
	got := out.String()
	uid := strconv.Itoa(inst.UID())
	for _, want := range []string{
		"root: dev escape etc probe proc tmp\n", "cwd: /\n", "uid: " + uid + "\n",
		"sbx_user:x:" + uid + ":" + uid + ":",
		"tmp: ok\n", "write /: read-only file system\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("output %q: want %q", got, want)
		}
	}
	if strings.Contains(got, "host-secret") {
		t.Errorf("output %q: the image's links reached a host file", got)
	}
	if inst.Err() != nil {
		t.Errorf("Err() = %v; output %q", inst.Err(), got)
	}
}

// buildProbe builds testdata/imageprobe, static, at root/probe.
func buildProbe(t *testing.T, root string) {
	t.Helper()
	build := exec.Command("go", "build", "-o", filepath.Join(root, "probe"), "./testdata/imageprobe")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
}

// imageModes are the two ways an image instance's root is built: an
// overlay (overlayRoot) and, where overlayfs is missing, a bind per entry
// (bindRoot).
var imageModes = []struct {
	name  string
	binds bool
}{{"overlay", false}, {"binds", true}}

// TestImageLayout runs an instance on an image with a distribution's
// breadth (many top-level directories, many files in /etc) and links or
// directories at the paths the instance's root mounts on (/tmp, /dev and
// /proc links to the image's /etc and /, a /sys with files, the image's
// own resolv.conf and hostname): the instance sees the image's entries,
// its own /tmp, /dev, /proc and /etc files in place of the image's, no
// /sys, and (as an overlay) a handful of mounts whatever the image's
// layout.
func TestImageLayout(t *testing.T) {
	for _, mode := range imageModes {
		t.Run(mode.name, func(t *testing.T) {
			b := newBackend(t, Config{})
			requireImageRoot(t, b)
			b.imageBinds = mode.binds
			root := hostImage(t)
			for i := range 30 {
				d := filepath.Join(root, fmt.Sprintf("d%02d", i))
				if err := errors.Join(os.Mkdir(d, 0o755), os.WriteFile(filepath.Join(d, "f"), []byte(fmt.Sprintf("dir %d\n", i)), 0o644)); err != nil {
					t.Fatal(err)
				}
			}
			for i := range 50 {
				if err := os.WriteFile(filepath.Join(root, "etc", fmt.Sprintf("e%02d", i)), []byte(fmt.Sprintf("etc %d\n", i)), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if err := errors.Join(
				os.Symlink("/etc", filepath.Join(root, "tmp")), os.Symlink("/", filepath.Join(root, "dev")),
				os.Symlink("/", filepath.Join(root, "proc")), os.Mkdir(filepath.Join(root, "sys"), 0o755),
				os.WriteFile(filepath.Join(root, "sys", "marker"), nil, 0o644),
				os.WriteFile(filepath.Join(root, "etc", "resolv.conf"), []byte("nameserver 10.9.9.9\n"), 0o644),
				os.WriteFile(filepath.Join(root, "etc", "hostname"), []byte("image-host\n"), 0o644),
			); err != nil {
				t.Fatal(err)
			}
			var out testenv.Buffer
			spec := sandbox.Spec{
				ID: "img-layout-" + mode.name, Path: "sh", Args: []string{"sh", "-c", `echo "root:$(ls -A / | tr '\n' ' ')"
echo "mounts:$(wc -l < /proc/self/mountinfo)"
echo "rootfs:$(grep ' / / ' /proc/self/mountinfo | sed 's/.* - \([^ ]*\) .*/\1/')"
echo "d17:$(cat /d17/f)"
echo "e42:$(cat /etc/e42)"
echo "marker:$(cat /etc/image-marker)"
if [ -e /sys ]; then echo "sys:seen"; else echo "sys:unseen"; fi
if [ -L /tmp ] || [ -L /dev ] || [ -L /proc ]; then echo "links:kept"; else echo "links:replaced"; fi
echo x > /tmp/e00 && echo "tmp:$(cat /tmp/e00) $(cat /etc/e00)"
if [ -c /dev/null ] && [ ! -e /dev/d17 ]; then echo "dev:own"; else echo "dev:image"; fi
echo "proc:$(cat /proc/self/comm)"
echo "resolv:$(grep -c 10.9.9.9 /etc/resolv.conf)"
echo "hostname:$(cat /etc/hostname)"
if (echo x > /d17/new) 2>/dev/null || (echo x > /etc/new) 2>/dev/null; then echo "image:written"; else echo "image:refused"; fi`},
				Env: testEnv, RootFS: root, TmpMB: 8, Stdout: &out, Stderr: &out,
			}
			inst, err := b.Start(t.Context(), spec)
			if err != nil {
				t.Fatalf("Start: %v", err)
			}
			<-inst.Done()
			lines := map[string]string{}
			for line := range strings.Lines(out.String()) {
				if k, v, ok := strings.Cut(strings.TrimSpace(line), ":"); ok {
					lines[k] = strings.TrimSpace(v)
				}
			}
			var names []string
			ents, err := os.ReadDir(root)
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range ents {
				if e.Name() != "sys" {
					names = append(names, e.Name())
				}
			}
			slices.Sort(names)
			want := map[string]string{
				"root": strings.Join(names, " "),
				"d17":  "dir 17", "e42": "etc 42", "marker": "from the image",
				"sys": "unseen", "links": "replaced", "tmp": "x etc 0", "dev": "own", "proc": "cat",
				"resolv": "0", "hostname": spec.ID, "image": "refused",
				"rootfs": map[bool]string{false: "overlay", true: "tmpfs"}[mode.binds],
			}
			for k, v := range want {
				if lines[k] != v {
					t.Errorf("%s: %q, want %q", k, lines[k], v)
				}
			}
			mounts, err := strconv.Atoi(lines["mounts"])
			if err != nil {
				t.Fatalf("mounts: %q", lines["mounts"])
			}
			// The overlay: the root, /dev and its 6 devices and shm, /proc,
			// /tmp, resolv.conf. One per entry: 30 more and 50 more at least.
			if !mode.binds && mounts > 14 || mode.binds && mounts < 80 {
				t.Errorf("%d mounts in the instance's namespace", mounts)
			}
			t.Logf("%s: %d mounts in the instance's namespace", mode.name, mounts)
			if inst.Err() != nil || t.Failed() {
				t.Errorf("Err() = %v; output %q", inst.Err(), out.String())
			}
		})
	}
}

// TestImageLinks runs a static program on images whose /etc and /tmp are
// links out of the image's tree (to the host's root, and to a host
// directory): the instance gets its own, and nothing of the host.
func TestImageLinks(t *testing.T) {
	for _, mode := range imageModes {
		t.Run(mode.name, func(t *testing.T) {
			b := newBackend(t, Config{})
			requireImageRoot(t, b)
			b.imageBinds = mode.binds
			root := sandboxtest.HostDir(t)
			buildProbe(t, root)
			host := sandboxtest.HostDir(t)
			if err := errors.Join(os.Symlink("/", filepath.Join(root, "etc")), os.Symlink(host, filepath.Join(root, "tmp"))); err != nil {
				t.Fatal(err)
			}
			var out testenv.Buffer
			spec := sandbox.Spec{ID: "img-links-" + mode.name, Path: "/probe", RootFS: root, Stdout: &out, Stderr: &out}
			inst, err := b.Start(t.Context(), spec)
			if err != nil {
				t.Fatalf("Start: %v", err)
			}
			<-inst.Done()
			got := out.String()
			uid := strconv.Itoa(inst.UID())
			for _, want := range []string{"root: dev etc probe proc tmp\n", "sbx_user:x:" + uid + ":" + uid + ":", "tmp: ok\n"} {
				if !strings.Contains(got, want) {
					t.Errorf("output %q: want %q", got, want)
				}
			}
			if _, err := os.Stat(filepath.Join(host, "x")); err == nil {
				t.Errorf("the instance's /tmp/x went to the host directory its image's /tmp links to")
			}
			if inst.Err() != nil {
				t.Errorf("Err() = %v; output %q", inst.Err(), got)
			}
		})
	}
}

// TestImageErrors checks the image specs that cannot start: a root that is
// not a directory, code to bind where the image has no mount point, an
// image on a backend without a root of its own, and links of the image
// that point out of it.
func TestImageErrors(t *testing.T) {
	b := newBackend(t, Config{})
	requireImageRoot(t, b)
	root := sandboxtest.HostDir(t)
	if err := os.MkdirAll(filepath.Join(root, "var"), 0o755); err != nil {
		t.Fatal(err)
	}
	code := sandboxtest.HostDir(t)
	file := filepath.Join(code, "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Start(t.Context(), sandbox.Spec{ID: "img-file", Path: "/x", RootFS: file}); err == nil || !strings.Contains(err.Error(), "image root") {
		t.Errorf("Start with a file as the image root: %v, want an error naming the image root", err)
	}
	if _, err := b.Start(t.Context(), sandbox.Spec{ID: "img-rel", Path: "/x", RootFS: root, WorkDir: "usr"}); err == nil {
		t.Errorf("Start with a relative working directory succeeded")
	}
	_, err := b.Start(t.Context(), sandbox.Spec{ID: "img-code", Path: "/x", RootFS: root, CodeDir: code})
	if !errors.Is(err, syscall.EROFS) {
		t.Errorf("Start with code but no /var/task in the image's /var: %v, want a read-only file system error", err)
	}
	// A mount point reached through a link of the image: refused, and
	// nothing made where the link points.
	linked, target := sandboxtest.HostDir(t), sandboxtest.HostDir(t)
	if err := os.Symlink(target, filepath.Join(linked, "var")); err != nil {
		t.Fatal(err)
	}
	for _, mode := range imageModes {
		b.imageBinds = mode.binds
		_, err := b.Start(t.Context(), sandbox.Spec{ID: "img-link-" + mode.name, Path: "/x", RootFS: linked, CodeDir: code})
		if err == nil || !strings.Contains(err.Error(), "/var is a symbolic link in the image") {
			t.Errorf("%s: Start with code to bind below a link of the image: %v, want an error naming the link", mode.name, err)
		}
		if _, err := os.Lstat(filepath.Join(target, "task")); err == nil {
			t.Errorf("%s: a mount point was made where the image's /var links to", mode.name)
		}
	}
	b.imageBinds = false
	hr := hostRoot(t, Config{})
	if _, err := hr.Start(t.Context(), sandbox.Spec{ID: "img-hr", Path: "/x", RootFS: root}); !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("Start of an image on a backend without a root of its own: %v, want ErrUnsupported", err)
	}
}

func TestLayerPasswd(t *testing.T) {
	image := "root:x:0:0:root:/root:/bin/bash\n# comment\napp:x:1000:1000:App:/home/app:/bin/sh\nsbx_user:x:5:5::/:/x\nclash:x:1000042:1:::\nbad line\n"
	got := layerPasswd([]byte(image), 1000042, 1000042, "app")
	want := "app:x:1000042:1000042:App:/home/app:/bin/sh\nsbx_user:x:1000042:1000042::/tmp:/sbin/nologin\nroot:x:0:0:root:/root:/bin/bash\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n"
	if got != want {
		t.Errorf("layerPasswd = %q, want %q", got, want)
	}
	for _, user := range []string{"", "root", "0", "1000", "1000:1000", "missing"} {
		got := layerPasswd([]byte(image), 7, 7, user)
		if strings.Contains(got, "app:x:7") || !strings.Contains(got, "app:x:1000:1000") {
			t.Errorf("user %q: app is given the instance's uid: %q", user, got)
		}
	}
	if got := layerPasswd([]byte("toor:x:0:0::/:/bin/sh\n"), 7, 7, "toor"); strings.Contains(got, "toor:x:7") {
		t.Errorf("an image user of uid 0 got the instance's uid: %q", got)
	}
	if got, want := layerGroup([]byte("root:x:0:\nstaff:x:7:\nusers:x:100:a,b\n"), 7), "sbx_user:x:7:\nroot:x:0:\nusers:x:100:a,b\nnogroup:x:65534:\n"; got != want {
		t.Errorf("layerGroup = %q, want %q", got, want)
	}
}

// BenchmarkStartImage times Start until the program runs (its exec done)
// of a pooled helper on an image's root, beside a zip instance's start
// (/bin/true, code bound at /var/task), in turns in each iteration so that
// a change of the machine's load hits them alike: "image" holds a static
// binary alone, "distro" the same with a distribution's layout around it
// (debian:12's 14 top-level directories, 60 files in /etc), each built as
// an overlay and with a bind per entry (the fallback). Each reports its
// median (ms, p50-<kind>).
func BenchmarkStartImage(b *testing.B) {
	be := newAdjusted(b, Config{PoolSize: 1}, nil)
	if !be.Isolation().ImageRoot {
		b.Skipf("the backend cannot run image instances: %s", be.Describe())
	}
	code := sandboxtest.HostDir(b)
	plain, distro := sandboxtest.HostDir(b), sandboxtest.HostDir(b)
	bin := filepath.Join(plain, "probe")
	build := exec.Command("go", "build", "-o", bin, "./testdata/imageprobe")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		b.Fatalf("go build: %v\n%s", err, out)
	}
	if err := os.Link(bin, filepath.Join(distro, "probe")); err != nil {
		b.Fatal(err)
	}
	for _, d := range []string{"bin", "boot", "home", "lib", "lib64", "media", "mnt", "opt", "root", "run", "sbin", "srv", "usr", "var", "etc"} {
		if err := os.Mkdir(filepath.Join(distro, d), 0o755); err != nil {
			b.Fatal(err)
		}
	}
	for i := range 60 {
		if err := os.WriteFile(filepath.Join(distro, "etc", fmt.Sprintf("file%02d", i)), []byte("x"), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	kinds := []struct {
		name  string
		root  string
		binds bool
	}{{"zip", "", false}, {"image", plain, false}, {"distro", distro, false}, {"image-binds", plain, true}, {"distro-binds", distro, true}}
	lat := map[string][]time.Duration{}
	k := 0
	for range b.N {
		for _, kind := range kinds {
			b.StopTimer()
			settle(b, be)
			time.Sleep(20 * time.Millisecond) // let the refill's cgroup move pass
			k++
			spec := sandbox.Spec{ID: fmt.Sprintf("bench%d", k), Path: "/bin/true", CodeDir: code}
			if kind.root != "" {
				spec = sandbox.Spec{ID: spec.ID, Path: "/probe", RootFS: kind.root}
			}
			be.imageBinds = kind.binds
			b.StartTimer()
			began := time.Now()
			inst, err := be.Start(b.Context(), spec)
			lat[kind.name] = append(lat[kind.name], time.Since(began))
			b.StopTimer()
			if err != nil {
				b.Fatal(err)
			}
			<-inst.Done()
		}
	}
	for _, kind := range kinds {
		d := lat[kind.name]
		slices.Sort(d)
		b.ReportMetric(float64(d[len(d)/2].Microseconds())/1000, "p50-"+kind.name+"-ms")
	}
}
