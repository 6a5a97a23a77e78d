package process

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/nimbus-serverless/nimbus/internal/sandbox"
	"github.com/nimbus-serverless/nimbus/internal/sandbox/sandboxtest"
	"github.com/nimbus-serverless/nimbus/internal/testenv"
)

// modes are the ways the process backend runs, as New picks them for the
// host it finds (forced here on a host that allows more).
var modes = []struct {
	name    string
	backend func(*testing.T, Config) *Backend
}{
	{"namespaces", newBackend},
	{"no pool", withoutPool},
	{"host root", hostRoot},
	{"no namespaces", withoutNamespaces},
	{"no namespaces or cgroups", withoutCgroups},
	{"unprivileged", unprivileged},
}

// unprivileged returns a Backend as New makes it for a user other than
// root: no namespaces, no cgroups, no uid per instance. (Run as root, its
// instances still run as root.)
func unprivileged(t *testing.T, cfg Config) *Backend {
	return newAdjusted(t, cfg, func(b *Backend) { b.flags, b.cg, b.root = 0, nil, false })
}

// hostRoot returns a Backend whose instances keep the host's root, with
// hidden paths, as New makes it where a root of their own fails.
func hostRoot(t *testing.T, cfg Config) *Backend {
	return newAdjusted(t, cfg, func(b *Backend) { b.rootfs = false })
}

func TestConformance(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			sandboxtest.Run(t, func(t *testing.T, s sandboxtest.Setup) sandbox.Backend {
				return m.backend(t, Config{HidePaths: s.Hide})
			})
		})
	}
}

// TestIsolation checks what each mode claims, so that the conformance suite
// skips only what a mode does not enforce.
func TestIsolation(t *testing.T) {
	b := newBackend(t, Config{})
	all := b.root && b.flags == syscall.CLONE_NEWPID|syscall.CLONE_NEWNS|syscall.CLONE_NEWIPC|syscall.CLONE_NEWUTS|syscall.CLONE_NEWNET &&
		b.cg != nil && b.cg.has(ctlMemory) && b.cg.has(ctlPids) && b.mountPoints
	if !all {
		t.Skipf("this host does not allow every feature: %s", b.Describe())
	}
	full := sandbox.Isolation{FixedPaths: true, ReadOnlyCode: true, PrivateTmp: true, HiddenPaths: true,
		MemoryLimit: true, PidsLimit: true, OwnUser: true, KillAll: true, NoPrivileges: true, SyscallFilter: true,
		MinimalRoot: true, ImageRoot: true, Freeze: b.cg.freeze, NetworkIsolation: true}
	hostRoot := full
	hostRoot.MinimalRoot, hostRoot.ImageRoot = false, false
	limitsOnly := sandbox.Isolation{MemoryLimit: true, PidsLimit: true, OwnUser: true, KillAll: true,
		NoPrivileges: true, SyscallFilter: true, Freeze: b.cg.freeze}
	want := map[string]sandbox.Isolation{
		"namespaces":               full,
		"no pool":                  full,
		"host root":                hostRoot,
		"no namespaces":            limitsOnly,
		"no namespaces or cgroups": {OwnUser: true, KillAll: true, NoPrivileges: true, SyscallFilter: true},
		"unprivileged":             {NoPrivileges: true, SyscallFilter: true},
	}
	for _, m := range modes {
		if got := m.backend(t, Config{}).Isolation(); got != want[m.name] {
			t.Errorf("%s: Isolation() = %+v, want %+v", m.name, got, want[m.name])
		}
	}
	noPoints := newAdjusted(t, Config{}, func(b *Backend) { b.mountPoints, b.rootfs = false, false })
	if got := noPoints.Isolation(); got.FixedPaths || !got.PrivateTmp || !got.ReadOnlyCode {
		t.Errorf("without mount points: Isolation() = %+v, want a private /tmp and read-only code at host paths", got)
	}
	if got := sandbox.PathsOf(noPoints, sandbox.Spec{CodeDir: "/c", RuntimeDir: "/r"}); got != (sandbox.Paths{TaskRoot: "/c", RuntimeDir: "/r"}) {
		t.Errorf("without mount points: PathsOf = %+v, want the host paths", got)
	}
}

func TestMakeMountPoints(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	link := filepath.Join(dir, "link")
	if err := errors.Join(os.WriteFile(file, nil, 0o644), os.Symlink(dir, link)); err != nil {
		t.Fatal(err)
	}
	made := []string{filepath.Join(dir, "var", "task"), filepath.Join(dir, "var", "runtime")}
	if err := makeMountPoints(made...); err != nil {
		t.Fatalf("makeMountPoints: %v", err)
	}
	for _, p := range made {
		if fi, err := os.Lstat(p); err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o755 {
			t.Errorf("%s: %v, %v; want a directory of mode 0755", p, fi, err)
		}
	}
	if err := makeMountPoints(made...); err != nil {
		t.Errorf("makeMountPoints again: %v, want nil", err)
	}
	for _, bad := range []string{file, link} {
		if err := makeMountPoints(made[0], bad); err == nil {
			t.Errorf("makeMountPoints(%s) succeeded, want an error", bad)
		}
	}
}

// TestTmpCountsTowardMemory checks what docs/functions.md says: /tmp is a
// tmpfs whose pages are charged to the instance's memory cgroup, so that
// filling it past the memory limit gets the instance killed for memory,
// whatever its size.
func TestTmpCountsTowardMemory(t *testing.T) {
	b := newBackend(t, Config{})
	requireController(t, b, ctlMemory)
	requireFlag(t, b, syscall.CLONE_NEWNS, "mount")
	var out testenv.Buffer
	spec := sh(t, "exec head -c 200000000 /dev/zero > /tmp/fill", &out)
	spec.MemoryMB, spec.TmpMB = 64, 512
	inst := start(t, b, spec)
	var size int64
	waitFor(t, "the write to grow", func() bool {
		if fi, err := os.Stat(filepath.Join(inst.TmpDir(), "fill")); err == nil {
			size = fi.Size()
		}
		return size > 32<<20 || isDone(inst)
	})
	wait(t, inst)
	if err := inst.Err(); !errors.Is(err, sandbox.ErrOutOfMemory) {
		t.Errorf("Err() = %v, want out of memory: 200 MB in a 512 MB /tmp exceeds the 64 MB memory limit; output %q", err, out.String())
	}
	if size == 0 || size > 64<<20 {
		t.Errorf("/tmp/fill grew to %d bytes, want some, under the 64 MB limit", size)
	}
}

func isDone(inst *instance) bool {
	select {
	case <-inst.Done():
		return true
	default:
		return false
	}
}
