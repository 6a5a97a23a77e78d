package process

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/sandbox"
	"github.com/nimbus-serverless/nimbus/internal/sandbox/sandboxtest"
	"github.com/nimbus-serverless/nimbus/internal/testenv"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	MaybeInit()
	if root := os.Getenv(fakeNodeEnv); root != "" {
		fakeNode(root)
	}
	// The thread that joins zygotes' namespaces lives as long as the
	// process (see inNamespaces).
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("github.com/nimbus-serverless/nimbus/internal/sandbox/process.nsWorker"))
}

// python is readable by every uid (the python3 on PATH may not be).
const python = "/usr/bin/python3"

// testEnv is the environment test programs run with.
var testEnv = []string{"PATH=/usr/bin:/bin"}

// newBackend returns a Backend for cfg, with Root in a fresh host directory
// unless cfg names one, closed when the test ends.
func newBackend(t *testing.T, cfg Config) *Backend {
	return newAdjusted(t, cfg, nil)
}

// newAdjusted is newBackend with adjust, if not nil, changing the Backend
// before its pool starts (so that the pool's helpers are made as adjusted).
func newAdjusted(t testing.TB, cfg Config, adjust func(*Backend)) *Backend {
	t.Helper()
	if cfg.Root == "" {
		cfg.Root = sandboxtest.HostDir(t)
	}
	cfg.Logger = slog.New(slog.NewTextHandler(t.Output(), nil))
	full, err := cfg.withDefaults()
	if err != nil {
		t.Fatalf("Config: %v", err)
	}
	cfg.PoolSize = -1
	b, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if adjust != nil {
		adjust(b)
	}
	b.pool.mu.Lock()
	b.pool.size = full.PoolSize
	b.fillLocked()
	b.pool.mu.Unlock()
	t.Cleanup(func() {
		if err := b.Close(context.Background()); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return b
}

// withoutNamespaces returns a Backend that does not use namespaces.
func withoutNamespaces(t *testing.T, cfg Config) *Backend {
	return newAdjusted(t, cfg, func(b *Backend) { b.flags = 0 })
}

// withoutCgroups returns a Backend that uses neither namespaces nor
// cgroups.
func withoutCgroups(t *testing.T, cfg Config) *Backend {
	return newAdjusted(t, cfg, func(b *Backend) { b.flags, b.cg = 0, nil })
}

// withoutPool returns a Backend that starts a helper for each instance.
func withoutPool(t *testing.T, cfg Config) *Backend {
	cfg.PoolSize = -1
	return newBackend(t, cfg)
}

// idleCount returns the number of idle helpers in b's pool.
func idleCount(b *Backend) int {
	b.pool.mu.Lock()
	defer b.pool.mu.Unlock()
	return len(b.pool.idle)
}

// idlePids returns the pids of the idle helpers in b's pool.
func idlePids(b *Backend) []int {
	b.pool.mu.Lock()
	defer b.pool.mu.Unlock()
	var pids []int
	for _, h := range b.pool.idle {
		pids = append(pids, h.cmd.Process.Pid)
	}
	return pids
}

// startPooled waits for an idle helper in b's pool, starts spec and checks
// that the instance was given that helper.
func startPooled(t *testing.T, b *Backend, spec sandbox.Spec) *instance {
	t.Helper()
	waitFor(t, "an idle helper", func() bool { return idleCount(b) > 0 })
	idle := idlePids(b)
	inst := start(t, b, spec)
	if pid := inst.h.cmd.Process.Pid; !inst.h.pooled || !slices.Contains(idle, pid) {
		t.Errorf("instance %s: helper %d, pooled %v; want one of the idle helpers %v", spec.ID, pid, inst.h.pooled, idle)
	}
	return inst
}

var lastID atomic.Int64

// sh returns a spec running script with /bin/sh, with its output in out.
func sh(t *testing.T, script string, out *testenv.Buffer) sandbox.Spec {
	spec := sandbox.Spec{
		ID:   fmt.Sprintf("t%d", lastID.Add(1)),
		Path: "/bin/sh", Args: []string{"sh", "-c", script},
		Env:     testEnv,
		CodeDir: sandboxtest.HostDir(t),
	}
	if out != nil {
		spec.Stdout, spec.Stderr = out, out
	}
	return spec
}

// start starts spec on b (sandboxtest.Start) and returns its instance.
func start(t *testing.T, b *Backend, spec sandbox.Spec) *instance {
	t.Helper()
	return sandboxtest.Start(t, b, spec).(*instance)
}

// wait waits for inst to exit.
func wait(t *testing.T, inst *instance) {
	t.Helper()
	select {
	case <-inst.Done():
	case <-time.After(20 * time.Second):
		t.Fatalf("instance %s did not exit", inst.spec.ID)
	}
}

// run runs script and returns its output and Err.
func run(t *testing.T, b *Backend, script string) (string, error) {
	t.Helper()
	var out testenv.Buffer
	inst := start(t, b, sh(t, script, &out))
	wait(t, inst)
	return out.String(), inst.Err()
}

// waitFor polls cond until it holds, failing the test after 10 s.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// countUID counts the live processes running as uid.
func countUID(t *testing.T, uid int) int {
	t.Helper()
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		if status, err := os.ReadFile("/proc/" + e.Name() + "/status"); err == nil && statusMatches(string(status), uid) {
			n++
		}
	}
	return n
}

func requireRoot(t *testing.T, b *Backend) {
	t.Helper()
	if !b.root {
		t.Skip("needs root: instances run as this process's uid")
	}
}

func requireFlag(t *testing.T, b *Backend, flag uintptr, name string) {
	t.Helper()
	if b.flags&flag == 0 {
		t.Skipf("%s namespace unavailable here: %s", name, b.Describe())
	}
}

func requireController(t *testing.T, b *Backend, c string) {
	t.Helper()
	if b.cg == nil || !b.cg.has(c) {
		t.Skipf("cgroup %s controller unavailable here: %s", c, b.Describe())
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
	}{
		{"no root", Config{}},
		{"relative hide path", Config{Root: t.TempDir(), HidePaths: []string{"data"}}},
		{"hide everything", Config{Root: t.TempDir(), HidePaths: []string{"/"}}},
		{"relative system path", Config{Root: t.TempDir(), SystemPaths: []string{"opt/node"}}},
		{"system root", Config{Root: t.TempDir(), SystemPaths: []string{"/"}}},
		{"negative uid", Config{Root: t.TempDir(), UID: -5}},
		{"uid range overflows", Config{Root: t.TempDir(), UID: 1<<31 - 10}},
		{"negative gid", Config{Root: t.TempDir(), GID: -1}},
		{"negative max instances", Config{Root: t.TempDir(), MaxInstances: -1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if b, err := New(tt.cfg); err == nil {
				t.Errorf("New(%+v) = %v, want an error", tt.cfg, b.Describe())
			}
		})
	}
}

func TestNewNeedsMaybeInit(t *testing.T) {
	initCalled.Store(false)
	defer initCalled.Store(true)
	_, err := New(Config{Root: t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), "MaybeInit") {
		t.Errorf("New without MaybeInit: got %v, want an error naming MaybeInit", err)
	}
}

func TestDescribe(t *testing.T) {
	b := withoutPool(t, Config{UID: 2_000_000, MaxInstances: 10})
	got := b.Describe()
	want := []string{"process sandbox"}
	if b.cg != nil {
		want = append(want, fmt.Sprintf("cgroup v%d (memory", b.cg.version))
	}
	if b.flags == syscall.CLONE_NEWPID|syscall.CLONE_NEWNS|syscall.CLONE_NEWIPC|syscall.CLONE_NEWUTS {
		want = append(want, "namespaces pid, mount, ipc, uts")
		if b.ownRoot() {
			want = append(want, "a root of its own")
		} else {
			want = append(want, "private /tmp, hidden paths")
		}
	}
	if b.seccomp {
		want = append(want, "no capabilities, no_new_privs", "seccomp filter")
	}
	if b.fixedPaths() {
		want = append(want, "code at /var/task, runtime at /var/runtime")
	}
	if b.root {
		want = append(want, "uids 2000000-2000009")
	}
	for _, w := range want {
		if !strings.Contains(got, w) {
			t.Errorf("Describe() = %q, want it to contain %q", got, w)
		}
	}

	b.flags, b.cg, b.root = 0, nil, false
	b.missing = []string{"cgroups (not mounted)"}
	got = b.Describe()
	for _, w := range []string{"no cgroups", "no namespaces", "/tmp under Root", "code and runtime at their host paths",
		"every instance runs as uid", "missing: cgroups (not mounted)"} {
		if !strings.Contains(got, w) {
			t.Errorf("degraded Describe() = %q, want it to contain %q", got, w)
		}
	}
}

func TestIdentity(t *testing.T) {
	cfg := Config{UID: 2_000_000, GID: 3_000_000, MaxInstances: 100}
	b := newBackend(t, cfg)
	requireRoot(t, b)
	requireFlag(t, b, syscall.CLONE_NEWPID, "pid")
	requireFlag(t, b, syscall.CLONE_NEWUTS, "uts")

	var outA testenv.Buffer
	a := startPooled(t, b, sh(t, "echo ready; exec sleep 60", &outA))
	waitFor(t, "first instance", func() bool { return strings.Contains(outA.String(), "ready") })

	var out testenv.Buffer
	spec := sh(t, `id -u; id -g; id -G; echo $$; ls /proc | grep -c '^[0-9]'; hostname; stat -c %a:%u /tmp`, &out)
	inst := startPooled(t, b, spec)
	wait(t, inst)
	if err := inst.Err(); err != nil {
		t.Fatalf("Err() = %v; output %q", err, out.String())
	}
	lines := strings.Fields(out.String())
	if len(lines) != 7 {
		t.Fatalf("output %q: want 7 fields", out.String())
	}
	uid, _ := strconv.Atoi(lines[0])
	if uid < cfg.UID || uid >= cfg.UID+cfg.MaxInstances || uid == a.uid {
		t.Errorf("uid = %d, want one in [%d, %d) other than the first instance's %d", uid, cfg.UID, cfg.UID+cfg.MaxInstances, a.uid)
	}
	wantGID := strconv.Itoa(cfg.GID + uid - cfg.UID)
	if lines[1] != wantGID || lines[2] != wantGID {
		t.Errorf("gid, groups = %s, %s, want %s and no other group", lines[1], lines[2], wantGID)
	}
	if lines[3] != "1" {
		t.Errorf("pid = %s, want 1 (own pid namespace)", lines[3])
	}
	if n, _ := strconv.Atoi(lines[4]); n < 1 || n > 4 {
		t.Errorf("%d processes in /proc, want only the instance's (1 to 4)", n)
	}
	if lines[5] != spec.ID {
		t.Errorf("hostname = %s, want %s", lines[5], spec.ID)
	}
	if want := "700:" + lines[0]; lines[6] != want {
		t.Errorf("/tmp mode:owner = %s, want %s", lines[6], want)
	}
}

// TestEnvironment checks that a function's environment is its spec's and
// nothing of its helper's (which runs with GOMAXPROCS=1, see spawn), from
// a pooled helper and from one started for it.
func TestEnvironment(t *testing.T) {
	for _, size := range []int{1, -1} {
		b := newBackend(t, Config{PoolSize: size})
		var out testenv.Buffer
		spec := sh(t, "", &out)
		spec.Path, spec.Args = "/usr/bin/env", []string{"env"} // a shell would add PWD
		spec.Env = append(slices.Clone(testEnv), "A=1", "EMPTY=")
		var inst *instance
		if size > 0 {
			inst = startPooled(t, b, spec)
		} else {
			inst = start(t, b, spec)
		}
		wait(t, inst)
		if err := inst.Err(); err != nil {
			t.Fatalf("pool %d: Err() = %v; output %q", size, err, out.String())
		}
		got := strings.Fields(out.String())
		// Without a mount namespace of its own, the instance is given a TMPDIR.
		got = slices.DeleteFunc(got, func(kv string) bool { return !b.mountNS() && strings.HasPrefix(kv, "TMPDIR=") })
		slices.Sort(got)
		want := slices.Sorted(slices.Values(spec.Env))
		if !slices.Equal(got, want) {
			t.Errorf("pool %d: environment %q, want %q", size, got, want)
		}
	}
}

// TestCleanup checks that an instance killed, or exited with processes
// left, leaves no process of its uid, no cgroup and no directory (that every
// process dies is the conformance suite's KillAll).
func TestCleanup(t *testing.T) {
	tests := []struct {
		name    string
		backend func(*testing.T, Config) *Backend
		kill    bool // else the main process exits by itself
	}{
		{"namespaces", newBackend, true},
		{"no namespaces", withoutNamespaces, true},
		{"no namespaces or cgroups", withoutCgroups, true},
		{"exit with daemons left", withoutNamespaces, false},
		{"exit with daemons left, no cgroups", withoutCgroups, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := tt.backend(t, Config{})
			requireRoot(t, b)
			script := "(setsid sleep 86401 &); echo ready; exec sleep 60"
			if !tt.kill {
				script = "(setsid sleep 86401 &); echo ready; exec sleep 1"
			}
			var out testenv.Buffer
			inst := start(t, b, sh(t, script, &out))
			waitFor(t, "2 processes", func() bool { return countUID(t, inst.uid) >= 2 })
			if tt.kill {
				inst.Kill()
			}
			wait(t, inst)
			if n := countUID(t, inst.uid); n != 0 {
				t.Errorf("%d processes of the instance survive", n)
			}
			if inst.cg != nil {
				for _, dir := range inst.cg.dirs {
					if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
						t.Errorf("cgroup %s: stat error %v, want it removed", dir, err)
					}
				}
			}
			if _, err := os.Stat(filepath.Join(b.cfg.Root, inst.spec.ID)); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("instance dir: stat error %v, want it removed", err)
			}
		})
	}
}

// TestLimits: an instance's cgroup has its limits, and one CPU's weight
// until InitDone gives it its memory's.
func TestLimits(t *testing.T) {
	b := newBackend(t, Config{})
	requireController(t, b, ctlMemory)
	spec := sh(t, "exec sleep 60", nil)
	spec.MemoryMB, spec.PidsMax = 64, 50
	inst := startPooled(t, b, spec)
	want := map[string]string{}
	cpuFile, initCPU, cpu := "cpu.shares", "1024", "37" // 1024*64/1769
	if b.cg.version == 1 {
		want["memory.limit_in_bytes"] = "67108864"
		if b.cg.swap {
			want["memory.memsw.limit_in_bytes"] = "67108864"
		}
	} else {
		want["memory.max"] = "67108864"
		if b.cg.swap {
			want["memory.swap.max"] = "0"
		}
		cpuFile, initCPU, cpu = "cpu.weight", "100", "3"
	}
	if b.cg.has(ctlPids) {
		want["pids.max"] = "50"
	}
	if b.cg.has(ctlCPU) {
		want[cpuFile] = initCPU
	}
	check := func() {
		t.Helper()
		for file, w := range want {
			data, err := os.ReadFile(inst.cg.file(file))
			if got := strings.TrimSpace(string(data)); err != nil || got != w {
				t.Errorf("%s = %q (error %v), want %q", file, got, err, w)
			}
		}
	}
	check()
	var _ sandbox.Initializer = inst
	for range 2 {
		if err := inst.InitDone(); err != nil {
			t.Fatal(err)
		}
		if b.cg.has(ctlCPU) {
			want[cpuFile] = cpu
		}
		check()
	}
	procs := inst.cg.procs()
	if len(procs) != 1 || procs[0] != inst.h.cmd.Process.Pid {
		t.Errorf("cgroup processes = %v, want [%d]", procs, inst.h.cmd.Process.Pid)
	}
}

func TestCPUWeights(t *testing.T) {
	tests := []struct{ memoryMB, shares, weight int }{
		{128, 74, 7},
		{1769, 1024, 100},
		{10240, 5927, 578},
		{1, 2, 1},
	}
	for _, tt := range tests {
		if got := cpuShares(tt.memoryMB); got != tt.shares {
			t.Errorf("cpuShares(%d) = %d, want %d", tt.memoryMB, got, tt.shares)
		}
		if got := cpuWeight(tt.memoryMB); got != tt.weight {
			t.Errorf("cpuWeight(%d) = %d, want %d", tt.memoryMB, got, tt.weight)
		}
	}
}

func TestTmpWithoutMountNamespace(t *testing.T) {
	b := withoutNamespaces(t, Config{})
	var out testenv.Buffer
	inst := start(t, b, sh(t, `echo x > "$TMPDIR/f"; echo "$TMPDIR"; echo ready; exec sleep 60`, &out))
	waitFor(t, "ready", func() bool { return strings.Contains(out.String(), "ready") })
	tmp := inst.TmpDir()
	if got, want := strings.Fields(out.String())[0], tmp; got != want {
		t.Errorf("TMPDIR = %q, want TmpDir() %q", got, want)
	}
	if data, err := os.ReadFile(filepath.Join(tmp, "f")); err != nil || string(data) != "x\n" {
		t.Errorf("TmpDir()/f = %q, %v; want %q", data, err, "x\n")
	}
	if b.root {
		fi, err := os.Stat(tmp)
		if err != nil || fi.Mode().Perm() != 0o700 || int(fi.Sys().(*syscall.Stat_t).Uid) != inst.uid {
			t.Errorf("TmpDir(): %v, %v; want mode 0700 owned by uid %d", fi.Mode(), err, inst.uid)
		}
	}
	inst.Kill()
	wait(t, inst)
	if _, err := os.Stat(tmp); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("TmpDir() after exit: stat error %v, want it removed", err)
	}
}

// TestHidePaths checks hiding as a node sets it up: the code and runtime
// directories inside a hidden data directory, a hidden path inside another,
// and Root. Instances see the code and runtime at /var/task and
// /var/runtime, or, without the mount points, bound back at their host
// paths (also inside their private /tmp).
func TestHidePaths(t *testing.T) {
	tests := []struct {
		name     string
		fixed    bool
		underTmp bool // the code and runtime are under the host's /tmp
	}{
		{"fixed paths", true, false},
		{"host paths", false, false},
		{"host paths under /tmp", false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data, root := sandboxtest.HostDir(t), sandboxtest.HostDir(t)
			if tt.underTmp {
				data = t.TempDir()
			}
			for name, content := range map[string]string{
				"secret.txt": "top secret", "code/hello.txt": "hello", "code/bin/run": "#!/bin/sh\necho ran $1\n",
				"nested/inner/x.txt": "inner", "rt/boot.txt": "boot",
			} {
				p := filepath.Join(data, name)
				if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(p, []byte(content), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			if err := os.WriteFile(filepath.Join(root, "state"), nil, 0o644); err != nil {
				t.Fatal(err)
			}
			b := newAdjusted(t, Config{Root: root, HidePaths: []string{filepath.Join(data, "nested"), data}},
				// The host's root, where hidden paths matter (an own root has
				// no host path to hide; the suite checks it hides them too).
				func(b *Backend) { b.mountPoints, b.rootfs = b.mountPoints && tt.fixed, false })
			requireFlag(t, b, syscall.CLONE_NEWNS, "mount")
			if b.fixedPaths() != tt.fixed {
				t.Fatalf("fixed paths %v, want %v: %s", b.fixedPaths(), tt.fixed, b.Describe())
			}
			codeDir, rtDir := filepath.Join(data, "code"), filepath.Join(data, "rt")
			task, rt, listing := "/var/task", "/var/runtime", "data:\n"
			if !tt.fixed {
				task, rt, listing = codeDir, rtDir, "data:code rt \n"
			}
			var out testenv.Buffer
			spec := sh(t, strings.NewReplacer("DATA", data, "ROOT", root, "TASK", task, "RT", rt).Replace(`
cat DATA/secret.txt; echo "secret:$?"
cat DATA/nested/inner/x.txt; echo "nested:$?"
echo "data:$(ls -A DATA | tr '\n' ' ')"
echo "cwd:$(pwd):$(cat hello.txt)"
echo "rt:$(cat RT/boot.txt)"
echo "run:$(TASK/bin/run x)"
ls -A ROOT > /tmp/root.txt && echo "root:$(tr '\n' ' ' < /tmp/root.txt)"
`), &out)
			spec.CodeDir, spec.RuntimeDir = codeDir, rtDir
			inst := startPooled(t, b, spec)
			wait(t, inst)
			got := out.String()
			for _, want := range []string{"secret:1", "nested:1", listing, "cwd:" + task + ":hello\n", "rt:boot\n", "run:ran x\n", "root:\n"} {
				if !strings.Contains(got, want) {
					t.Errorf("output %q: want %q", got, want)
				}
			}
			if strings.Contains(got, "top secret") || strings.Contains(got, "inner\n") {
				t.Errorf("output %q: a hidden file was read", got)
			}
			mounts, err := os.ReadFile("/proc/self/mountinfo")
			if err != nil || strings.Contains(string(mounts), data) {
				t.Errorf("host mount table mentions %s (error %v): mounts leaked", data, err)
			}
		})
	}
}

func TestSignalOtherInstance(t *testing.T) {
	tests := []struct {
		name    string
		backend func(*testing.T, Config) *Backend
		wantErr string
	}{
		{"namespaces", newBackend, "No such process"},
		{"no namespaces", withoutNamespaces, "Operation not permitted"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := tt.backend(t, Config{})
			requireRoot(t, b)
			var outA testenv.Buffer
			a := start(t, b, sh(t, "echo ready; exec sleep 60", &outA))
			waitFor(t, "ready", func() bool { return strings.Contains(outA.String(), "ready") })
			pid := a.h.cmd.Process.Pid
			out, err := run(t, b, fmt.Sprintf("kill -9 %d; echo status:$?", pid))
			if err != nil || !strings.Contains(out, "status:1") || !strings.Contains(out, tt.wantErr) {
				t.Errorf("kill from another instance: %q, %v; want status 1 and %q", out, err, tt.wantErr)
			}
			select {
			case <-a.Done():
				t.Errorf("the first instance died: %v", a.Err())
			default:
			}
		})
	}
}

func TestStartErrors(t *testing.T) {
	backends := []struct {
		name string
		b    *Backend
	}{
		{"pool", newBackend(t, Config{MaxInstances: 2})},
		{"no pool", withoutPool(t, Config{MaxInstances: 2})},
	}
	codeDir := sandboxtest.HostDir(t)
	if err := os.WriteFile(filepath.Join(codeDir, "bootstrap"), []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	private := sandboxtest.HostDir(t)
	if err := os.Chmod(private, 0o700); err != nil {
		t.Fatal(err)
	}
	cancelled, cancel := context.WithCancel(t.Context())
	cancel()

	tests := []struct {
		name     string
		ctx      context.Context
		spec     sandbox.Spec
		rootOnly bool
		wantIs   error
		wantMsg  string
	}{
		// "TASK" is the code directory as the instance sees it.
		{"not executable", nil, sandbox.Spec{Path: "TASK/bootstrap"}, false, fs.ErrPermission, "exec TASK/bootstrap: permission denied"},
		{"missing program", nil, sandbox.Spec{Path: "/nonexistent/bootstrap"}, false, fs.ErrNotExist, "exec /nonexistent/bootstrap: no such file or directory"},
		{"directory as program", nil, sandbox.Spec{Path: "TASK"}, false, fs.ErrPermission, "permission denied"},
		{"code dir the user cannot enter", nil, sandbox.Spec{Path: "/bin/true", CodeDir: private}, true, fs.ErrPermission, "chdir TASK: permission denied"},
		{"cancelled", cancelled, sandbox.Spec{Path: "/bin/true"}, false, context.Canceled, ""},
		{"empty id", nil, sandbox.Spec{ID: "-", Path: "/bin/true"}, false, nimbus.ErrInvalid, "instance id"},
		{"long id", nil, sandbox.Spec{ID: strings.Repeat("x", 129), Path: "/bin/true"}, false, nimbus.ErrInvalid, "instance id"},
		{"no program", nil, sandbox.Spec{}, false, nimbus.ErrInvalid, "no program"},
		{"missing code dir", nil, sandbox.Spec{Path: "/bin/true", CodeDir: "/nonexistent"}, false, nimbus.ErrInvalid, "not a directory"},
		{"code dir is /", nil, sandbox.Spec{Path: "/bin/true", CodeDir: "/"}, false, nimbus.ErrInvalid, "not a directory below /"},
		{"runtime dir is /", nil, sandbox.Spec{Path: "/bin/true", RuntimeDir: "/"}, false, nimbus.ErrInvalid, "runtime directory"},
		{"relative runtime dir", nil, sandbox.Spec{Path: "/bin/true", RuntimeDir: "rt"}, false, nimbus.ErrInvalid, "not an absolute path"},
		{"negative memory", nil, sandbox.Spec{Path: "/bin/true", MemoryMB: -1}, false, nimbus.ErrInvalid, "negative"},
	}
	for _, be := range backends {
		b := be.b
		for n, tt := range tests {
			t.Run(be.name+"/"+tt.name, func(t *testing.T) {
				if tt.rootOnly {
					requireRoot(t, b)
				}
				spec := tt.spec
				switch spec.ID {
				case "":
					spec.ID = fmt.Sprintf("bad%d", n)
				case "-":
					spec.ID = ""
				}
				if spec.CodeDir == "" {
					spec.CodeDir = codeDir
				}
				task := sandbox.PathsOf(b, spec).TaskRoot
				spec.Path = strings.Replace(spec.Path, "TASK", task, 1)
				wantMsg := strings.Replace(tt.wantMsg, "TASK", task, 1)
				ctx := tt.ctx
				if ctx == nil {
					ctx = t.Context()
				}
				// Errors of the helper's stage come from a pooled one.
				helperStage := tt.wantIs != nimbus.ErrInvalid && tt.wantIs != context.Canceled
				var idle []int
				if b.pool.size > 0 {
					waitFor(t, "an idle helper", func() bool { return idleCount(b) > 0 })
					idle = idlePids(b)
				}
				inst, err := b.Start(ctx, spec)
				if err == nil {
					inst.Kill()
					<-inst.Done()
					t.Fatalf("Start succeeded, want an error")
				}
				if taken := len(idle) > 0 && !slices.Contains(idlePids(b), idle[0]); taken != (helperStage && len(idle) > 0) {
					t.Errorf("idle helper %v taken: %v, want %v", idle, taken, helperStage)
				}
				if !errors.Is(err, tt.wantIs) || !strings.Contains(err.Error(), wantMsg) {
					t.Errorf("Start: %v; want one matching %v and containing %q", err, tt.wantIs, wantMsg)
				}
				if b.cg != nil {
					for _, parent := range b.cg.parents {
						if _, err := os.Stat(filepath.Join(parent, b.cgroupName(spec.ID))); !errors.Is(err, fs.ErrNotExist) && spec.ID != "" {
							t.Errorf("cgroup of the failed instance: stat error %v, want it removed", err)
						}
					}
				}
			})
		}
		b.mu.Lock()
		inUse := len(b.ids)
		b.mu.Unlock()
		if inUse != 0 {
			t.Errorf("%s: %d instance ids still reserved after failed starts", be.name, inUse)
		}
	}
	// What is left is the pool's idle helpers' cgroups.
	pool := backends[0].b
	settle(t, pool)
	if got, want := ownCgroups(t, pool), idleCgroups(pool); !slices.Equal(got, want) {
		t.Errorf("cgroups after failed starts: %v, want only the idle helpers' %v", got, want)
	}
}

func TestStartCapacity(t *testing.T) {
	b := newBackend(t, Config{MaxInstances: 2})
	start(t, b, sh(t, "exec sleep 60", nil))
	second := start(t, b, sh(t, "exec sleep 60", nil))
	if _, err := b.Start(t.Context(), sh(t, "exit 0", nil)); !errors.Is(err, nimbus.ErrThrottled) {
		t.Errorf("Start with every slot taken: %v, want ErrThrottled", err)
	}
	second.Kill()
	wait(t, second)
	third := start(t, b, sh(t, "exit 0", nil)) // the freed slot
	wait(t, third)
	if third.slot != second.slot {
		t.Errorf("third instance slot = %d, want the freed slot %d", third.slot, second.slot)
	}
}

// TestProbeConsistent checks that New's trial run of the helper did not
// turn off a namespace or cgroups the host allows: a broken helper would
// otherwise only make the other tests skip.
func TestProbeConsistent(t *testing.T) {
	b := newBackend(t, Config{})
	for _, ns := range namespaces {
		if probeCloneflag(ns.flag) == nil && b.flags&ns.flag == 0 {
			t.Errorf("%s namespace allowed by the host but off: %s", ns.name, b.Describe())
		}
	}
	if cg := detectCgroups(b.cgroupName("probe")); cg.version != 0 && b.cg == nil {
		t.Errorf("cgroup v%d usable but off: %s", cg.version, b.Describe())
	}
}

func TestSweep(t *testing.T) {
	b := newBackend(t, Config{})
	requireController(t, b, ctlMemory)
	// A pid above pid_max cannot exist.
	stale := "nimbus.99999999.t1"
	g, err := b.cg.create(stale, limits{memoryMB: 64})
	if err != nil {
		t.Fatal(err)
	}
	// One left by a Nimbus from before the nimbus parent, beside it.
	before := *b.cg
	before.parents = map[string]string{}
	for k, parent := range b.cg.parents {
		if filepath.Base(parent) != nestName {
			t.Fatalf("instance cgroups are made in %s, not in a %q parent", parent, nestName)
		}
		before.parents[k] = filepath.Dir(parent)
	}
	legacy, err := before.create("nimbus.99999999.t2", limits{memoryMB: 64})
	if err != nil {
		t.Fatal(err)
	}
	live, err := b.cg.create(b.cgroupName("live"), limits{memoryMB: 64})
	if err != nil {
		t.Fatal(err)
	}
	defer live.remove()
	// A process left in it, frozen as an idle instance is: killing it
	// needs the thaw of the freezer's hierarchy (cgroup v1), whichever
	// controller the sweep meets first.
	sleeper := exec.Command("sleep", "1000")
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- sleeper.Wait() }()
	if err := g.add(sleeper.Process.Pid); err != nil {
		t.Fatal(err)
	}
	if b.cg.freeze {
		if err := g.setFrozen(true); err != nil {
			t.Fatal(err)
		}
	}
	if n := b.cg.sweep(); n != 2 {
		t.Errorf("sweep() = %d, want 2", n)
	}
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		_ = sleeper.Process.Kill()
		t.Fatal("the stale cgroup's (frozen) process is still alive after the sweep")
	}
	for _, dir := range append(slices.Collect(maps.Values(g.dirs)), slices.Collect(maps.Values(legacy.dirs))...) {
		if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("stale cgroup %s: stat error %v, want it removed", dir, err)
		}
	}
	for _, dir := range live.dirs {
		if _, err := os.Stat(dir); err != nil {
			t.Errorf("live cgroup %s: %v, want it kept", dir, err)
		}
	}
}

// unifiedOnly returns cgroup v2 settings for this host's cgroup2 hierarchy
// with no controller: enough to exercise creating, joining, killing
// (cgroup.kill) and removing on v2 even where memory is bound to v1.
func unifiedOnly(t *testing.T) *cgroups {
	t.Helper()
	mi, err1 := os.ReadFile("/proc/self/mountinfo")
	pc, err2 := os.ReadFile("/proc/self/cgroup")
	if err := errors.Join(err1, err2); err != nil {
		t.Skip(err)
	}
	own := parseProcCgroup(string(pc))
	for _, m := range parseMountinfo(string(mi)) {
		if m.fstype != "cgroup2" {
			continue
		}
		if parent, ok := m.dir(own[unified]); ok {
			probe := filepath.Join(parent, "nimbus-test-probe")
			if err := makeCgroupDir(probe); err != nil {
				t.Skipf("cannot create a cgroup in %s: %v", parent, err)
			}
			_ = os.Remove(probe)
			_, err := os.Stat(filepath.Join(parent, "cgroup.kill"))
			return &cgroups{version: 2, parents: map[string]string{unified: parent}, kill: err == nil}
		}
	}
	t.Skip("no cgroup2 hierarchy mounted")
	return nil
}

func TestCgroupV2Kill(t *testing.T) {
	cg := unifiedOnly(t)
	b := newAdjusted(t, Config{}, func(b *Backend) { b.flags, b.cg = 0, cg })
	requireRoot(t, b)
	var out testenv.Buffer
	inst := start(t, b, sh(t, "setsid sleep 86405 & (setsid sleep 86406 &); echo ready; exec sleep 86407", &out))
	// The subshell that starts the second sleep is briefly a fourth
	// process: wait until exactly the three sleeps are left.
	waitFor(t, "3 processes", func() bool { return len(inst.cg.procs()) == 3 && countUID(t, inst.uid) == 3 })
	inst.Kill()
	wait(t, inst)
	if n := countUID(t, inst.uid); n != 0 {
		t.Errorf("%d processes of the instance survive", n)
	}
	var ee *exec.ExitError
	if err := inst.Err(); !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Errorf("Err() = %v, want death by SIGKILL", err)
	}
	if _, err := os.Stat(inst.cg.dirs[unified]); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("cgroup %s: stat error %v, want it removed", inst.cg.dirs[unified], err)
	}
}
