package process

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/sandbox"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	MaybeInit()
	if root := os.Getenv(fakeNodeEnv); root != "" {
		fakeNode(root)
	}
	goleak.VerifyTestMain(m)
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
		cfg.Root = hostDir(t)
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
		if err := b.Close(); err != nil {
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

// hostDir returns a new directory every uid can traverse, outside /tmp
// (which instances with a mount namespace do not see).
func hostDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("/var/tmp", "nimbus-sandbox-test-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := os.RemoveAll(dir); err != nil {
			t.Errorf("remove %s: %v", dir, err)
		}
	})
	return dir
}

// buffer is a bytes.Buffer safe for a copier and a test to share.
type buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

var lastID atomic.Int64

// sh returns a spec running script with /bin/sh, with its output in out.
func sh(t *testing.T, script string, out *buffer) sandbox.Spec {
	spec := sandbox.Spec{
		ID:   fmt.Sprintf("t%d", lastID.Add(1)),
		Path: "/bin/sh", Args: []string{"sh", "-c", script},
		Env:     testEnv,
		CodeDir: hostDir(t),
	}
	if out != nil {
		spec.Stdout, spec.Stderr = out, out
	}
	return spec
}

// start starts spec on b; the instance is killed and waited for when the
// test ends.
func start(t *testing.T, b *Backend, spec sandbox.Spec) *instance {
	t.Helper()
	si, err := b.Start(t.Context(), spec)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	inst := si.(*instance)
	t.Cleanup(func() {
		inst.Kill()
		select {
		case <-inst.Done():
		case <-time.After(20 * time.Second):
			t.Errorf("instance %s did not exit after Kill", spec.ID)
		}
	})
	return inst
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
	var out buffer
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
		want = append(want, "namespaces pid, mount, ipc, uts", "private /tmp, hidden paths")
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
	for _, w := range []string{"no cgroups", "no namespaces", "/tmp under Root", "every instance runs as uid", "missing: cgroups (not mounted)"} {
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

	var outA buffer
	a := startPooled(t, b, sh(t, "echo ready; exec sleep 60", &outA))
	waitFor(t, "first instance", func() bool { return strings.Contains(outA.String(), "ready") })

	var out buffer
	spec := sh(t, `id -u; id -g; id -G; echo $$; ls /proc | grep -c '^[0-9]'; hostname`, &out)
	inst := startPooled(t, b, spec)
	wait(t, inst)
	if err := inst.Err(); err != nil {
		t.Fatalf("Err() = %v; output %q", err, out.String())
	}
	lines := strings.Fields(out.String())
	if len(lines) != 6 {
		t.Fatalf("output %q: want 6 fields", out.String())
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
}

func TestIO(t *testing.T) {
	b := newBackend(t, Config{})
	codeDir := hostDir(t)

	var stdout, stderr buffer
	inst := start(t, b, sandbox.Spec{
		ID: "io", Path: "/bin/sh",
		Args:    []string{"sh", "-c", `echo "$0 $1 $FOO"; pwd; echo oops >&2`, "a0", "a1"},
		Env:     append([]string{"FOO=bar"}, testEnv...),
		CodeDir: codeDir, Stdout: &stdout, Stderr: &stderr,
	})
	wait(t, inst)
	if err := inst.Err(); err != nil {
		t.Errorf("Err() = %v, want nil", err)
	}
	if got, want := stdout.String(), "a0 a1 bar\n"+codeDir+"\n"; got != want {
		t.Errorf("stdout = %q, want %q", got, want)
	}
	if got, want := stderr.String(), "oops\n"; got != want {
		t.Errorf("stderr = %q, want %q", got, want)
	}

	t.Run("file", func(t *testing.T) {
		f, err := os.Create(filepath.Join(t.TempDir(), "out"))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		spec := sh(t, "echo to-file; echo err-to-file >&2", nil)
		spec.Stdout, spec.Stderr = f, f
		inst := start(t, b, spec)
		wait(t, inst)
		data, _ := os.ReadFile(f.Name())
		if got, want := string(data), "to-file\nerr-to-file\n"; got != want {
			t.Errorf("file output = %q, want %q", got, want)
		}
	})
	t.Run("environment larger than the socket buffer", func(t *testing.T) {
		var out buffer
		spec := sh(t, `echo ${#A} ${#B} ${#C} ${#D}`, &out)
		for _, k := range "ABCD" {
			spec.Env = append(spec.Env, string(k)+"="+strings.Repeat("x", 100_000))
		}
		inst := start(t, b, spec)
		wait(t, inst)
		if got, want := out.String(), "100000 100000 100000 100000\n"; got != want || inst.Err() != nil {
			t.Errorf("output %q, Err() %v; want %q", got, inst.Err(), want)
		}
	})
	t.Run("failing writer", func(t *testing.T) {
		spec := sh(t, "head -c 1000000 /dev/zero; echo done >&2", nil)
		spec.Stdout = failingWriter{}
		var errOut buffer
		spec.Stderr = &errOut
		inst := start(t, b, spec)
		wait(t, inst)
		if err := inst.Err(); err != nil || errOut.String() != "done\n" {
			t.Errorf("Err() = %v, stderr %q; want nil and %q", err, errOut.String(), "done\n")
		}
	})
}

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func TestExitStatus(t *testing.T) {
	backends := map[string]*Backend{
		"namespaces":    newBackend(t, Config{}),
		"no namespaces": withoutNamespaces(t, Config{}),
		"no pool":       withoutPool(t, Config{}),
	}
	tests := []struct {
		name       string
		script     string
		kill       bool
		wantCode   int // -1: killed by wantSignal
		wantSignal syscall.Signal
	}{
		{"clean exit", "exit 0", false, 0, 0},
		{"exit code", "exit 3", false, 3, 0},
		{"crash", "exec " + python + ` -c "import ctypes; ctypes.string_at(0)"`, false, -1, syscall.SIGSEGV},
		{"killed", "echo ready; exec sleep 60", true, -1, syscall.SIGKILL},
	}
	for name, b := range backends {
		for _, tt := range tests {
			t.Run(name+"/"+tt.name, func(t *testing.T) {
				var out buffer
				inst := start(t, b, sh(t, tt.script, &out))
				if tt.kill {
					waitFor(t, "ready", func() bool { return strings.Contains(out.String(), "ready") })
					inst.Kill()
				}
				wait(t, inst)
				err := inst.Err()
				if tt.wantCode == 0 {
					if err != nil {
						t.Errorf("Err() = %v, want nil", err)
					}
					return
				}
				var ee *exec.ExitError
				if !errors.As(err, &ee) {
					t.Fatalf("Err() = %v (%T), want an *exec.ExitError; output %q", err, err, out.String())
				}
				ws := ee.Sys().(syscall.WaitStatus)
				if tt.wantCode > 0 && ee.ExitCode() != tt.wantCode {
					t.Errorf("exit code = %d, want %d", ee.ExitCode(), tt.wantCode)
				}
				if tt.wantSignal != 0 && (!ws.Signaled() || ws.Signal() != tt.wantSignal) {
					t.Errorf("Err() = %v, want death by %v", err, tt.wantSignal)
				}
			})
		}
	}
}

func TestKill(t *testing.T) {
	const script = `sleep 86401 &
setsid sh -c 'sleep 86402 & exec sleep 86403' &
(setsid sleep 86404 &)
echo ready
wait`
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
			s := script
			if !tt.kill {
				s = strings.TrimSuffix(s, "wait") + "exec sleep 1"
			}
			var out buffer
			inst := start(t, b, sh(t, s, &out))
			// sh, its two sleeps, the setsid shell's two sleeps.
			waitFor(t, "5 processes", func() bool { return countUID(t, inst.uid) >= 5 })
			if tt.kill {
				inst.Kill()
				inst.Kill()
			}
			wait(t, inst)
			inst.Kill() // after exit: a no-op
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

func TestLimits(t *testing.T) {
	b := newBackend(t, Config{})
	requireController(t, b, ctlMemory)
	spec := sh(t, "exec sleep 60", nil)
	spec.MemoryMB, spec.PidsMax = 64, 50
	inst := startPooled(t, b, spec)
	want := map[string]string{}
	if b.cg.version == 1 {
		want["memory.limit_in_bytes"] = "67108864"
		if b.cg.swap {
			want["memory.memsw.limit_in_bytes"] = "67108864"
		}
		if b.cg.has(ctlCPU) {
			want["cpu.shares"] = "37" // 1024*64/1769
		}
	} else {
		want["memory.max"] = "67108864"
		if b.cg.swap {
			want["memory.swap.max"] = "0"
		}
		if b.cg.has(ctlCPU) {
			want["cpu.weight"] = "3"
		}
	}
	if b.cg.has(ctlPids) {
		want["pids.max"] = "50"
	}
	for file, w := range want {
		data, err := os.ReadFile(inst.cg.file(file))
		if got := strings.TrimSpace(string(data)); err != nil || got != w {
			t.Errorf("%s = %q (error %v), want %q", file, got, err, w)
		}
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

func TestOutOfMemory(t *testing.T) {
	b := newBackend(t, Config{})
	requireController(t, b, ctlMemory)
	if _, err := os.Stat(python); err != nil {
		t.Skipf("no %s: %v", python, err)
	}
	tests := []struct {
		name     string
		memoryMB int
		allocMB  int
		wantOOM  bool
	}{
		{"over the limit", 64, 300, true},
		{"under the limit", 128, 16, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out buffer
			spec := sh(t, fmt.Sprintf(`exec %s -c "b = b'x' * (%d << 20); print(len(b))"`, python, tt.allocMB), &out)
			spec.MemoryMB = tt.memoryMB
			inst := startPooled(t, b, spec)
			wait(t, inst)
			err := inst.Err()
			if got := errors.Is(err, sandbox.ErrOutOfMemory); got != tt.wantOOM {
				t.Fatalf("Err() = %v, want out of memory: %v; output %q", err, tt.wantOOM, out.String())
			}
			peak := inst.MaxMemoryBytes()
			if peak < int64(min(tt.allocMB, tt.memoryMB/2))<<20 || peak > int64(tt.memoryMB)<<20 {
				t.Errorf("MaxMemoryBytes() = %d, want between %d MB and the %d MB limit", peak, min(tt.allocMB, tt.memoryMB/2), tt.memoryMB)
			}
		})
	}
}

func TestForkBomb(t *testing.T) {
	for name, backend := range map[string]func(*testing.T, Config) *Backend{
		"namespaces": newBackend, "no namespaces": withoutNamespaces,
	} {
		t.Run(name, func(t *testing.T) {
			b := backend(t, Config{})
			requireController(t, b, ctlPids)
			var out buffer
			spec := sh(t, "f() { f | f & }; f; exec sleep 60", &out)
			spec.PidsMax = 64
			inst := start(t, b, spec)
			waitFor(t, "fork to fail", func() bool { return strings.Contains(out.String(), "fork") })
			data, err := os.ReadFile(inst.cg.file("pids.current"))
			if n, _ := strconv.Atoi(strings.TrimSpace(string(data))); err != nil || n > 64 {
				t.Errorf("pids.current = %q (error %v), want at most 64", data, err)
			}
			if err := exec.Command("/bin/true").Run(); err != nil {
				t.Errorf("host cannot start a process during the fork bomb: %v", err)
			}
			inst.Kill()
			wait(t, inst)
			if b.root {
				if n := countUID(t, inst.uid); n != 0 {
					t.Errorf("%d processes of the fork bomb survive", n)
				}
			}
			for _, dir := range inst.cg.dirs {
				if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
					t.Errorf("cgroup %s: stat error %v, want it removed", dir, err)
				}
			}
		})
	}
}

func TestTmp(t *testing.T) {
	b := newBackend(t, Config{})
	requireFlag(t, b, syscall.CLONE_NEWNS, "mount")

	t.Run("size limit", func(t *testing.T) {
		var out buffer
		spec := sh(t, `head -c 500000 /dev/zero > /tmp/small && echo small-ok
head -c 2000000 /dev/zero > /tmp/big`, &out)
		spec.TmpMB = 1
		inst := startPooled(t, b, spec)
		wait(t, inst)
		if !strings.Contains(out.String(), "small-ok") || !strings.Contains(out.String(), "No space left on device") {
			t.Errorf("output %q: want the small write to succeed and the big one to fail with ENOSPC", out.String())
		}
		if inst.Err() == nil {
			t.Errorf("Err() = nil, want the failed write's exit status")
		}
	})
	t.Run("private", func(t *testing.T) {
		var outA buffer
		a := startPooled(t, b, sh(t, "echo a > /tmp/a-marker; echo ready; exec sleep 60", &outA))
		waitFor(t, "ready", func() bool { return strings.Contains(outA.String(), "ready") })
		if data, err := os.ReadFile(filepath.Join(a.TmpDir(), "a-marker")); err != nil || string(data) != "a\n" {
			t.Errorf("host read of TmpDir()/a-marker = %q, %v; want %q", data, err, "a\n")
		}
		if _, err := os.Stat("/tmp/a-marker"); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("host /tmp/a-marker: stat error %v, want not found", err)
		}
		out, err := run(t, b, "ls -A /tmp; stat -c mode:%a /tmp")
		if err != nil || strings.Contains(out, "a-marker") || !strings.Contains(out, "mode:700") {
			t.Errorf("second instance: ls /tmp = %q, %v; want no a-marker and mode 700", out, err)
		}
	})
}

func TestTmpWithoutMountNamespace(t *testing.T) {
	b := withoutNamespaces(t, Config{})
	var out buffer
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

func TestHidePaths(t *testing.T) {
	data, root := hostDir(t), hostDir(t)
	tmpLib := t.TempDir() // under /tmp, which instances see as their own
	for name, content := range map[string]string{
		"secret.txt":         "top secret",
		"code/hello.txt":     "hello",
		"nested/inner/x.txt": "inner",
		"lib/lib.txt":        "lib",
		"rt/bootstrap":       "#!/bin/sh\necho from-bootstrap $1\n",
		"rt/other":           "not kept",
		tmpLib + "/t.txt":    "tmplib",
	} {
		p := filepath.Join(data, name)
		if filepath.IsAbs(name) {
			p = name
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	bootstrap := filepath.Join(data, "rt/bootstrap")
	readOnly := []string{filepath.Join(data, "lib"), bootstrap, tmpLib}
	codeDir := filepath.Join(data, "code")
	if err := os.Chmod(codeDir, 0o777); err != nil { // only the mount may stop writes
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "state"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	b := newBackend(t, Config{Root: root, HidePaths: []string{filepath.Join(data, "nested"), data}})
	requireFlag(t, b, syscall.CLONE_NEWNS, "mount")

	var out buffer
	spec := sh(t, strings.NewReplacer("DATA", data, "ROOT", root, "TMPLIB", tmpLib).Replace(`
cat DATA/secret.txt; echo "secret:$?"
echo "data:$(ls -A DATA | tr '\n' ' ')"
echo "cwd:$(cat hello.txt)"
echo "abs:$(cat DATA/code/hello.txt)"
touch DATA/code/new; echo "touch code:$?"
touch DATA/new; echo "touch hidden:$?"
echo "lib:$(cat DATA/lib/lib.txt)"
touch DATA/lib/new; echo "touch lib:$?"
echo "tmplib:$(cat TMPLIB/t.txt)"
echo "boot:$(DATA/rt/bootstrap x)"
echo "rt:$(ls -A DATA/rt)"
ls -A ROOT > /tmp/root.txt && echo "root:$(tr '\n' ' ' < /tmp/root.txt)"
`), &out)
	spec.CodeDir, spec.ReadOnlyPaths = codeDir, readOnly
	inst := startPooled(t, b, spec)
	wait(t, inst)
	got := out.String()
	for _, want := range []string{
		"secret:1", "data:code lib rt \n", "cwd:hello\n", "abs:hello\n", "touch code:1", "touch hidden:1", "root:\n",
		"lib:lib\n", "touch lib:1", "tmplib:tmplib\n", "boot:from-bootstrap x\n", "rt:bootstrap\n", "Read-only file system",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("output %q: want %q", got, want)
		}
	}
	if strings.Contains(got, "top secret") {
		t.Errorf("output %q: the hidden file was read", got)
	}
	if _, err := os.Stat(filepath.Join(codeDir, "new")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("code dir was written: stat error %v", err)
	}
	// A program outside CodeDir, under a hidden path, kept by ReadOnlyPaths.
	var bootOut buffer
	boot := startPooled(t, b, sandbox.Spec{
		ID: "boot", Path: bootstrap, Args: []string{"bootstrap", "arg"}, Env: testEnv,
		CodeDir: codeDir, ReadOnlyPaths: []string{bootstrap}, Stdout: &bootOut,
	})
	wait(t, boot)
	if got, want := bootOut.String(), "from-bootstrap arg\n"; got != want || boot.Err() != nil {
		t.Errorf("bootstrap under a hidden path: output %q, Err() %v; want %q", got, boot.Err(), want)
	}
	mounts, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil || strings.Contains(string(mounts), data) {
		t.Errorf("host mount table mentions %s (error %v): mounts leaked", data, err)
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
			var outA buffer
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
	codeDir := hostDir(t)
	notExec := filepath.Join(codeDir, "bootstrap")
	if err := os.WriteFile(notExec, []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	private := hostDir(t)
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
		{"not executable", nil, sandbox.Spec{Path: notExec}, false, fs.ErrPermission, "exec " + notExec + ": permission denied"},
		{"missing program", nil, sandbox.Spec{Path: "/nonexistent/bootstrap"}, false, fs.ErrNotExist, "exec /nonexistent/bootstrap: no such file or directory"},
		{"directory as program", nil, sandbox.Spec{Path: codeDir}, false, fs.ErrPermission, "permission denied"},
		{"code dir the user cannot enter", nil, sandbox.Spec{Path: "/bin/true", CodeDir: private}, true, fs.ErrPermission, "chdir " + private + ": permission denied"},
		{"cancelled", cancelled, sandbox.Spec{Path: "/bin/true"}, false, context.Canceled, ""},
		{"empty id", nil, sandbox.Spec{ID: "-", Path: "/bin/true"}, false, nimbus.ErrInvalid, "instance id"},
		{"id with slash", nil, sandbox.Spec{ID: "a/b", Path: "/bin/true"}, false, nimbus.ErrInvalid, "instance id"},
		{"id dot dot", nil, sandbox.Spec{ID: "..", Path: "/bin/true"}, false, nimbus.ErrInvalid, "instance id"},
		{"long id", nil, sandbox.Spec{ID: strings.Repeat("x", 129), Path: "/bin/true"}, false, nimbus.ErrInvalid, "instance id"},
		{"no program", nil, sandbox.Spec{}, false, nimbus.ErrInvalid, "no program"},
		{"relative code dir", nil, sandbox.Spec{Path: "/bin/true", CodeDir: "code"}, false, nimbus.ErrInvalid, "not an absolute path"},
		{"missing code dir", nil, sandbox.Spec{Path: "/bin/true", CodeDir: "/nonexistent"}, false, nimbus.ErrInvalid, "not a directory"},
		{"code dir is a file", nil, sandbox.Spec{Path: "/bin/true", CodeDir: notExec}, false, nimbus.ErrInvalid, "not a directory"},
		{"relative read-only path", nil, sandbox.Spec{Path: "/bin/true", ReadOnlyPaths: []string{"lib"}}, false, nimbus.ErrInvalid, "not an absolute path"},
		{"missing read-only path", nil, sandbox.Spec{Path: "/bin/true", ReadOnlyPaths: []string{"/nonexistent"}}, false, nimbus.ErrInvalid, "does not exist"},
		{"negative memory", nil, sandbox.Spec{Path: "/bin/true", MemoryMB: -1}, false, nimbus.ErrInvalid, "negative"},
		{"NUL in env", nil, sandbox.Spec{Path: "/bin/true", Env: []string{"A=\x00"}}, false, nimbus.ErrInvalid, "NUL"},
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
				if !errors.Is(err, tt.wantIs) || !strings.Contains(err.Error(), tt.wantMsg) {
					t.Errorf("Start: %v; want one matching %v and containing %q", err, tt.wantIs, tt.wantMsg)
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

func TestStartConflictAndCapacity(t *testing.T) {
	b := newBackend(t, Config{MaxInstances: 2})
	a := start(t, b, sh(t, "exec sleep 60", nil))
	dup := sh(t, "exit 0", nil)
	dup.ID = a.spec.ID
	if _, err := b.Start(t.Context(), dup); !errors.Is(err, nimbus.ErrConflict) {
		t.Errorf("Start with a running id: %v, want ErrConflict", err)
	}
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
	live, err := b.cg.create(b.cgroupName("live"), limits{memoryMB: 64})
	if err != nil {
		t.Fatal(err)
	}
	defer live.remove()
	if n := b.cg.sweep(); n != len(g.dirs) {
		t.Errorf("sweep() = %d, want %d", n, len(g.dirs))
	}
	for _, dir := range g.dirs {
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
	var out buffer
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

func TestConcurrentStarts(t *testing.T) {
	b := newBackend(t, Config{})
	const n = 8
	var wg sync.WaitGroup
	outs := make([]buffer, n)
	insts := make([]*instance, n)
	for k := range n {
		spec := sh(t, fmt.Sprintf("echo %d; id -u", k), &outs[k])
		wg.Go(func() {
			si, err := b.Start(t.Context(), spec)
			if err != nil {
				t.Errorf("Start %d: %v", k, err)
				return
			}
			insts[k] = si.(*instance)
		})
	}
	wg.Wait()
	uids := map[string]bool{}
	for k, inst := range insts {
		if inst == nil {
			continue
		}
		wait(t, inst)
		f := strings.Fields(outs[k].String())
		if err := inst.Err(); err != nil || len(f) != 2 || f[0] != strconv.Itoa(k) {
			t.Errorf("instance %d: output %q, Err() %v", k, outs[k].String(), err)
			continue
		}
		uids[f[1]] = true
	}
	if b.root && len(uids) != n {
		t.Errorf("%d distinct uids among %d concurrent instances, want %d", len(uids), n, n)
	}
}
