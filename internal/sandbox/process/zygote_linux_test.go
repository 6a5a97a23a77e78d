package process

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/nimbus-serverless/nimbus/internal/sandbox"
	"github.com/nimbus-serverless/nimbus/internal/sandbox/sandboxtest"
	"github.com/nimbus-serverless/nimbus/internal/testenv"
)

// launcher is a zygote for any instance: given its instance (see
// sandbox.Zygote), it execs the instance's program, so that the
// conformance suite runs in instances that began as zygotes.
var launcher = &sandbox.Zygote{
	Path: "/usr/bin/python3",
	Args: []string{"python3", "-c", `
import json, os, socket, sys
s = socket.socket(fileno=os.dup(0))
null = os.open("/dev/null", os.O_RDONLY)
os.dup2(null, 0)
os.close(null)
s.send(b"+")
data = b""
while len(data) < 4 or len(data) < 4 + int.from_bytes(data[:4], "big"):
    msg = s.recv(1 << 20)
    if not msg:
        sys.exit(1)
    data += msg
cfg = json.loads(data[4:])
s.send(b".")
try:
    os.chdir(cfg["dir"])
    os.execve(cfg["path"], cfg["args"], dict(kv.split("=", 1) for kv in cfg["env"]))
except Exception as e:
    s.send(json.dumps({"op": "exec " + cfg["path"], "errno": getattr(e, "errno", 0), "msg": str(e)}).encode())
    sys.exit(1)
`},
	Env: testEnv,
}

// zygoteBackend is a Backend with the launcher as its zygote, whose every
// spec may have one.
type zygoteBackend struct{ *Backend }

func (b zygoteBackend) Start(ctx context.Context, spec sandbox.Spec) (sandbox.Instance, error) {
	spec.Zygote = launcher
	return b.Backend.Start(ctx, spec)
}

// withZygotes returns a Backend that keeps a launcher zygote, skipping the
// test where the backend cannot.
func withZygotes(t *testing.T, cfg Config) *Backend {
	t.Helper()
	cfg.Zygotes = []*sandbox.Zygote{launcher}
	b := newBackend(t, cfg)
	if !b.zygotesOn() {
		t.Skipf("no zygotes here (they need root and a root of its own): %s", b.Describe())
	}
	return b
}

// TestConformanceZygotes runs the conformance suite in instances that
// began as zygotes where one was ready (and as any other where none was).
func TestConformanceZygotes(t *testing.T) {
	var assigned int
	sandboxtest.Run(t, func(t *testing.T, s sandboxtest.Setup) sandbox.Backend {
		b := withZygotes(t, Config{HidePaths: s.Hide})
		waitZygote(t, b)
		t.Cleanup(func() { assigned += int(b.zyg.assigned.Load()) })
		return zygoteBackend{b}
	})
	if assigned == 0 && !t.Skipped() {
		t.Error("no instance of the suite began as a zygote")
	}
}

// waitZygote waits until b has a zygote ready and returns the pid of the
// one Start takes next.
func waitZygote(t *testing.T, b *Backend) int {
	t.Helper()
	var pid int
	waitFor(t, "a ready zygote", func() bool {
		b.zyg.mu.Lock()
		defer b.zyg.mu.Unlock()
		if zs := b.zyg.ready[0]; len(zs) > 0 {
			pid = zs[0].h.cmd.Process.Pid // the next taken
		}
		return pid != 0
	})
	return pid
}

// TestZygote checks that an instance is the ready zygote, with its own
// spec's code, environment, limits and id, that the zygote is not used
// again, and which instances take the ordinary path.
func TestZygote(t *testing.T) {
	b := withZygotes(t, Config{})
	zb := zygoteBackend{b}
	pid := waitZygote(t, b)
	var out testenv.Buffer
	spec := sh(t, `cat code.txt; echo "$FOO $(id -u) $(pwd) $(hostname)"; df -m /tmp | tail -1`, &out)
	spec.Env = append(spec.Env, "FOO=bar")
	spec.TmpMB = 7
	if err := os.WriteFile(filepath.Join(spec.CodeDir, "code.txt"), []byte("the code\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	inst, err := zb.Start(t.Context(), spec)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	i := inst.(*instance)
	if i.h.cmd.Process.Pid != pid {
		t.Errorf("instance pid %d, want the zygote's, %d", i.h.cmd.Process.Pid, pid)
	}
	wait(t, i)
	lines := strings.Split(out.String(), "\n")
	want := "bar " + strconv.Itoa(i.uid) + " /var/task " + spec.ID
	if len(lines) < 3 || lines[0] != "the code" || lines[1] != want || !strings.Contains(lines[2], " 7 ") {
		t.Errorf("output %q, want the code, %q and a /tmp of 7 MB", out.String(), want)
	}
	next := waitZygote(t, b)
	if next == pid {
		t.Errorf("the next zygote is the used one, pid %d", pid)
	}

	// On the host's network an instance takes the ordinary path, leaving
	// the zygote ready.
	if b.netOn() {
		host := sh(t, "true", nil)
		host.Network = sandbox.NetworkHost
		i := start(t, b, host)
		wait(t, i)
		if i.h.cmd.Process.Pid == next || b.zyg.assigned.Load() != 1 {
			t.Errorf("a host-network instance was given the zygote")
		}
	}

	// A zygote that died while it waited is given up: the instance starts
	// as any other.
	_ = syscall.Kill(next, syscall.SIGKILL)
	var fine testenv.Buffer
	inst, err = zb.Start(t.Context(), sh(t, "echo fine", &fine))
	if err != nil {
		t.Fatalf("Start with a dead zygote: %v", err)
	}
	wait(t, inst.(*instance))
	if inst.Err() != nil || fine.String() != "fine\n" {
		t.Errorf("with a dead zygote: Err %v, output %q; want a clean exit and fine", inst.Err(), fine.String())
	}

	// A program the zygote cannot exec fails Start as it does without.
	waitZygote(t, b)
	bad := sh(t, "", nil)
	bad.Path = "/etc/passwd"
	if _, err := zb.Start(t.Context(), bad); !errors.Is(err, fs.ErrPermission) {
		t.Errorf("Start of a file that is not executable: %v, want permission denied", err)
	}
}

// TestZygoteClose checks that Close kills the ready zygote and frees its
// slot.
func TestZygoteClose(t *testing.T) {
	b := withZygotes(t, Config{})
	pid := waitZygote(t, b)
	if err := b.Close(t.Context()); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("zygote %d after Close: kill 0 = %v, want ESRCH", pid, err)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for s, used := range b.slots {
		if used {
			t.Errorf("slot %d in use after Close", s)
		}
	}
}

// TestZygotesEach checks that the backend keeps Config.ZygotesEach ready,
// so that two cold starts in a row both begin as zygotes, and refills
// them.
func TestZygotesEach(t *testing.T) {
	b := withZygotes(t, Config{ZygotesEach: 2})
	ready := func() int {
		b.zyg.mu.Lock()
		defer b.zyg.mu.Unlock()
		return len(b.zyg.ready[0])
	}
	waitFor(t, "two ready zygotes", func() bool { return ready() == 2 })
	zb := zygoteBackend{b}
	for range 2 {
		inst, err := zb.Start(t.Context(), sh(t, "true", nil))
		if err != nil {
			t.Fatalf("Start: %v", err)
		}
		wait(t, inst.(*instance))
	}
	if n := b.zyg.assigned.Load(); n != 2 {
		t.Errorf("%d of two instances in a row began as zygotes, want both", n)
	}
	waitFor(t, "two ready zygotes again", func() bool { return ready() == 2 })
	if _, err := (Config{ZygotesEach: -1}).withDefaults(); err == nil {
		t.Error("ZygotesEach -1 accepted")
	}
}

// TestZygoteCodeAlso: an instance whose spec shows its code at a second
// path too (Spec.CodeAlso) begins as the ready zygote, and sees its code
// there, read-only.
func TestZygoteCodeAlso(t *testing.T) {
	b := withZygotes(t, Config{})
	zb := zygoteBackend{b}
	pid := waitZygote(t, b)
	var out testenv.Buffer
	spec := sh(t, `cat /code/code.txt; touch /code/x 2>/dev/null && echo writable; ls / | grep -c '^code$'`, &out)
	spec.CodeAlso = "/code"
	if err := os.WriteFile(filepath.Join(spec.CodeDir, "code.txt"), []byte("the code\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	inst, err := zb.Start(t.Context(), spec)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	i := inst.(*instance)
	if i.h.cmd.Process.Pid != pid {
		t.Errorf("instance pid %d, want the zygote's, %d", i.h.cmd.Process.Pid, pid)
	}
	wait(t, i)
	if out.String() != "the code\n1\n" {
		t.Errorf("output %q, want the code at /code, read-only", out.String())
	}
}
