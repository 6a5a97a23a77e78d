package process

import (
	"bufio"
	"context"
	"errors"
	"fmt"
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
	"go.uber.org/goleak"
)

// fakeNodeEnv makes the test binary act as a node that dies with idle
// helpers (see TestPoolHelpersDieWithParent).
const fakeNodeEnv = "NIMBUS_PROCESS_TEST_FAKE_NODE"

// settle waits until b's pool is full and no helper is being started.
func settle(t testing.TB, b *Backend) {
	t.Helper()
	waitFor(t, "a full pool", func() bool {
		b.pool.mu.Lock()
		defer b.pool.mu.Unlock()
		return len(b.pool.idle) == b.pool.size && !b.pool.filling
	})
}

// ownCgroups lists the cgroup directories this process made, sorted.
func ownCgroups(t *testing.T, b *Backend) []string {
	t.Helper()
	var dirs []string
	if b.cg == nil {
		return nil
	}
	prefix := b.cgroupName("")
	for _, parent := range b.cg.parents {
		ents, err := os.ReadDir(parent)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ents {
			if e.IsDir() && strings.HasPrefix(e.Name(), prefix) {
				dirs = append(dirs, filepath.Join(parent, e.Name()))
			}
		}
	}
	slices.Sort(dirs)
	return dirs
}

// idleCgroups lists the cgroup directories of b's idle helpers, sorted.
func idleCgroups(b *Backend) []string {
	b.pool.mu.Lock()
	defer b.pool.mu.Unlock()
	var dirs []string
	for _, h := range b.pool.idle {
		if h.cg != nil {
			for _, d := range h.cg.dirs {
				dirs = append(dirs, d)
			}
		}
	}
	slices.Sort(dirs)
	return dirs
}

// helperPids lists the processes that are children of this process and
// still init helpers (they have not exec'd a function).
func helperPids(t *testing.T) []int {
	t.Helper()
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err1 := os.ReadFile("/proc/" + e.Name() + "/stat")
		cmdline, err2 := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err1 != nil || err2 != nil {
			continue
		}
		// pid (comm) state ppid ...
		_, after, _ := strings.Cut(string(stat), ") ")
		f := strings.Fields(after)
		if len(f) > 1 && f[1] == strconv.Itoa(os.Getpid()) && strings.HasPrefix(string(cmdline), initArg0+"\x00") {
			pids = append(pids, pid)
		}
	}
	return pids
}

// alive reports whether process pid exists and is not a zombie.
func alive(pid int) bool {
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	_, after, _ := strings.Cut(string(stat), ") ")
	return !strings.HasPrefix(after, "Z") && !strings.HasPrefix(after, "X")
}

func TestPoolStartUsesPreStartedHelper(t *testing.T) {
	tests := []struct {
		name    string
		backend func(*testing.T, Config) *Backend
	}{
		{"namespaces", newBackend},
		{"no namespaces", withoutNamespaces},
		{"no namespaces or cgroups", withoutCgroups},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := tt.backend(t, Config{PoolSize: 2})
			settle(t, b)
			idle := idlePids(b)
			if len(idle) != 2 {
				t.Fatalf("idle helpers %v, want 2", idle)
			}
			var out testenv.Buffer
			inst := start(t, b, sh(t, "echo $0 ran", &out))
			if !inst.h.pooled || inst.h.cmd.Process.Pid != idle[0] {
				t.Errorf("instance helper %d (pooled %v), want the oldest idle helper %d", inst.h.cmd.Process.Pid, inst.h.pooled, idle[0])
			}
			wait(t, inst)
			if got, want := out.String(), "sh ran\n"; got != want || inst.Err() != nil {
				t.Errorf("output %q, Err() %v; want %q and nil", got, inst.Err(), want)
			}
			// Refilled: the other helper is still there, and a new one.
			settle(t, b)
			refilled := idlePids(b)
			if len(refilled) != 2 || refilled[0] != idle[1] || slices.Contains(idle, refilled[1]) {
				t.Errorf("idle helpers after a start: %v, want %d and a new one", refilled, idle[1])
			}
		})
	}
}

func TestPoolClose(t *testing.T) {
	ignore := goleak.IgnoreCurrent()
	b, err := New(Config{Root: sandboxtest.HostDir(t), PoolSize: 3})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close(context.Background()) }) // if the test fails early
	settle(t, b)
	pids, cgroups := idlePids(b), idleCgroups(b)
	if len(pids) != 3 {
		t.Fatalf("idle helpers %v, want 3", pids)
	}
	if ready, target := b.Helpers(); ready != 3 || target != 3 {
		t.Errorf("Helpers() = %d, %d; want 3 ready of 3", ready, target)
	}
	if err := b.Close(context.Background()); err != nil {
		t.Errorf("Close: %v", err)
	}
	if ready, _ := b.Helpers(); ready != 0 {
		t.Errorf("Helpers() after Close: %d ready, want 0", ready)
	}
	for _, pid := range pids {
		if _, err := os.Stat("/proc/" + strconv.Itoa(pid)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("helper %d after Close: stat error %v, want it reaped", pid, err)
		}
	}
	for _, dir := range cgroups {
		if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("cgroup %s after Close: stat error %v, want it removed", dir, err)
		}
	}
	if got := helperPids(t); len(got) != 0 {
		t.Errorf("helpers %v left after Close", got)
	}
	goleak.VerifyNone(t, ignore)
	if err := b.Close(context.Background()); err != nil {
		t.Errorf("second Close: %v", err)
	}

	// Start still works, without a pool, and does not refill it.
	var out testenv.Buffer
	inst := start(t, b, sh(t, "echo after-close", &out))
	wait(t, inst)
	if inst.h.pooled || out.String() != "after-close\n" {
		t.Errorf("Start after Close: pooled %v, output %q; want a new helper and %q", inst.h.pooled, out.String(), "after-close\n")
	}
	b.pool.mu.Lock()
	n, filling := len(b.pool.idle), b.pool.filling
	b.pool.mu.Unlock()
	if n != 0 || filling {
		t.Errorf("after Close and Start: %d idle helpers, filling %v; want none", n, filling)
	}
}

func TestPoolCloseWhileFilling(t *testing.T) {
	ignore := goleak.IgnoreCurrent()
	for range 3 {
		b, err := New(Config{Root: sandboxtest.HostDir(t), PoolSize: 4})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = b.Close(context.Background()) }) // if the test fails early
		if err := b.Close(context.Background()); err != nil {
			t.Errorf("Close: %v", err)
		}
		if got := helperPids(t); len(got) != 0 {
			t.Errorf("helpers %v left after Close", got)
		}
		if got := ownCgroups(t, b); len(got) != 0 {
			t.Errorf("cgroups %v left after Close", got)
		}
	}
	goleak.VerifyNone(t, ignore)
}

func TestPoolReplacesDeadHelper(t *testing.T) {
	tests := []struct {
		name     string
		waitDead bool // else Start races with the helper's death
	}{
		{"dead before Start", true},
		{"killed just before Start", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newBackend(t, Config{PoolSize: 1})
			settle(t, b)
			dead := idlePids(b)[0]
			if err := syscall.Kill(dead, syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			if tt.waitDead {
				waitFor(t, "the helper to die", func() bool { return !alive(dead) })
			}
			var out testenv.Buffer
			inst := start(t, b, sh(t, "echo replaced", &out))
			wait(t, inst)
			if got, want := out.String(), "replaced\n"; got != want || inst.Err() != nil {
				t.Errorf("output %q, Err() %v; want %q and nil", got, inst.Err(), want)
			}
			if pid := inst.h.cmd.Process.Pid; pid == dead {
				t.Errorf("instance ran on the killed helper %d", dead)
			}
			if _, err := os.Stat("/proc/" + strconv.Itoa(dead)); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("killed helper %d: stat error %v, want it reaped", dead, err)
			}
			// The pool is refilled with a live helper, which the next
			// start uses.
			settle(t, b)
			if idle := idlePids(b); len(idle) != 1 || !alive(idle[0]) {
				t.Errorf("idle helpers %v, want one live", idle)
			}
			inst = startPooled(t, b, sh(t, "exit 0", nil))
			wait(t, inst)
			settle(t, b)
			if got, want := ownCgroups(t, b), idleCgroups(b); !slices.Equal(got, want) {
				t.Errorf("cgroups %v, want only the idle helper's %v", got, want)
			}
		})
	}
}

// TestPoolHelpersDieWithParent checks that idle helpers die with their
// node: the test binary, as a fake node, fills a pool, reports the helpers
// and is killed. (Two things kill them: the parent-death signal, and the end
// of their control socket, which they are reading.)
func TestPoolHelpersDieWithParent(t *testing.T) {
	b := withoutPool(t, Config{}) // to sweep the fake node's cgroups
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), fakeNodeEnv+"="+sandboxtest.HostDir(t))
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = t.Output()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		t.Fatalf("fake node: %v", err)
	}
	var pids []int
	for _, f := range strings.Fields(line) {
		pid, _ := strconv.Atoi(f)
		pids = append(pids, pid)
	}
	if len(pids) != 2 || !alive(pids[0]) || !alive(pids[1]) {
		t.Errorf("fake node's helpers %q, want 2 live pids", line)
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	for _, pid := range pids {
		waitFor(t, fmt.Sprintf("helper %d to die", pid), func() bool { return !alive(pid) })
	}
	if b.cg != nil {
		waitFor(t, "the fake node's cgroups to go", func() bool {
			b.cg.sweep()
			for _, parent := range b.cg.parents {
				if m, _ := filepath.Glob(filepath.Join(parent, fmt.Sprintf("nimbus.%d.*", cmd.Process.Pid))); len(m) > 0 {
					return false
				}
			}
			return true
		})
	}
}

// fakeNode fills a pool of 2 helpers, prints their pids and waits to be
// killed.
func fakeNode(root string) {
	b, err := New(Config{Root: root, PoolSize: 2})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		b.pool.mu.Lock()
		n := len(b.pool.idle)
		b.pool.mu.Unlock()
		if n == 2 || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	pids := idlePids(b)
	fmt.Println(strings.Trim(fmt.Sprint(pids), "[]"))
	time.Sleep(time.Minute)
	os.Exit(1)
}

// openFDs counts this process's open descriptors.
func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

func TestStartLeaksNoDescriptor(t *testing.T) {
	b := newBackend(t, Config{PoolSize: 1})
	settle(t, b)
	before := openFDs(t)
	for k := range 4 {
		spec := sh(t, "echo hi; echo err >&2", &testenv.Buffer{})
		if k%2 == 1 {
			spec.Stderr = &testenv.Buffer{} // a pipe of its own
		}
		if k == 3 {
			spec.Path = "/nonexistent/bootstrap" // fails in the helper
		}
		si, err := b.Start(t.Context(), spec)
		if err == nil {
			wait(t, si.(*instance))
		}
		settle(t, b)
	}
	// Fewer is no leak: descriptors of earlier tests' goroutines may
	// close meanwhile.
	if after := openFDs(t); after > before {
		t.Errorf("%d open descriptors after 4 starts, want at most %d as before", after, before)
	}
}

// BenchmarkStart measures Start until the program runs (its exec done),
// with the pool full before each start, and without a pool. The helper is
// this test binary, smaller than nimbus: without a pool the figure
// understates a node's.
func BenchmarkStart(b *testing.B) {
	for _, size := range []int{DefaultPoolSize, -1} {
		name := "pool"
		if size < 0 {
			name = "no pool"
		}
		b.Run(name, func(b *testing.B) {
			be := newAdjusted(b, Config{PoolSize: size}, nil)
			code := sandboxtest.HostDir(b)
			for k := 0; k < b.N; k++ {
				b.StopTimer()
				settle(b, be)
				time.Sleep(20 * time.Millisecond) // let the refill's cgroup move pass
				spec := sandbox.Spec{ID: fmt.Sprintf("bench%d", k), Path: "/bin/true", CodeDir: code}
				b.StartTimer()
				inst, err := be.Start(b.Context(), spec)
				b.StopTimer()
				if err != nil {
					b.Fatal(err)
				}
				<-inst.Done()
			}
		})
	}
}

// BenchmarkStartNetwork times Start of a pooled helper in each network, the
// Runtime API's listener made by Prepare as the engine makes it, host being
// the baseline. The networks take turns in each iteration, so that a
// change of the machine's load hits them alike; each reports its median
// (ms, p50-<network>).
func BenchmarkStartNetwork(b *testing.B) {
	be := newAdjusted(b, Config{PoolSize: 1}, nil)
	if !be.netOn() {
		b.Skipf("no network isolation: %s", be.Describe())
	}
	code := sandboxtest.HostDir(b)
	networks := []sandbox.Network{sandbox.NetworkHost, sandbox.NetworkEgress, sandbox.NetworkNone}
	lat := map[sandbox.Network][]time.Duration{}
	k := 0
	for range b.N {
		for _, n := range networks {
			b.StopTimer()
			settle(b, be)
			time.Sleep(20 * time.Millisecond) // let the refill's cgroup move pass
			k++
			spec := sandbox.Spec{ID: fmt.Sprintf("bench%d", k), Path: "/bin/true", CodeDir: code, Network: n,
				Prepare: func(in sandbox.Net) ([]string, error) {
					ln, err := in.Listen("tcp4", "127.0.0.1:0")
					if err != nil {
						return nil, err
					}
					b.Cleanup(func() { ln.Close() })
					return []string{"AWS_LAMBDA_RUNTIME_API=" + ln.Addr().String()}, nil
				}}
			b.StartTimer()
			began := time.Now()
			inst, err := be.Start(b.Context(), spec)
			lat[n] = append(lat[n], time.Since(began))
			b.StopTimer()
			if err != nil {
				b.Fatal(err)
			}
			<-inst.Done()
		}
	}
	for _, n := range networks {
		d := lat[n]
		slices.Sort(d)
		b.ReportMetric(float64(d[len(d)/2].Microseconds())/1000, "p50-"+string(n)+"-ms")
	}
}

// TestPoolReady: Ready says no while the pool has never been full or its
// last helper start failed (a probe retries the start), and yes once it is
// full; a backend without a pool is ready; a closed one is not.
func TestPoolReady(t *testing.T) {
	exe := ""
	b := newAdjusted(t, Config{PoolSize: 2}, func(b *Backend) { exe, b.exe = b.exe, "/nonexistent/nimbus-helper" })
	idle := func() bool {
		b.pool.mu.Lock()
		defer b.pool.mu.Unlock()
		return !b.pool.filling
	}
	waitFor(t, "the failed fill to end", idle)
	err := b.Ready()
	if err == nil || !strings.Contains(err.Error(), "pre-starting a helper failed") {
		t.Fatalf("Ready with helpers that cannot start: %v, want the start's failure", err)
	}
	waitFor(t, "the retried fill to end", idle) // Ready started it
	b.exe = exe
	if err := b.Ready(); err == nil {
		t.Fatal("Ready before a start succeeded: nil")
	}
	waitFor(t, "Ready", func() bool { return b.Ready() == nil })
	settle(t, b)

	// Ready once full stays ready while instances take helpers.
	h := b.take()
	if h == nil {
		t.Fatal("no idle helper")
	}
	if err := h.destroy(); err != nil {
		t.Error(err)
	}
	if err := b.Ready(); err != nil {
		t.Errorf("Ready after a take: %v", err)
	}
	settle(t, b)
	if err := b.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := b.Ready(); err == nil || !strings.Contains(err.Error(), "closed") {
		t.Errorf("Ready after Close: %v, want closed", err)
	}

	if err := withoutPool(t, Config{}).Ready(); err != nil {
		t.Errorf("Ready without a pool: %v", err)
	}
}

// TestPoolReadyBeforeFull: a pool that has not been full yet is not ready.
func TestPoolReadyBeforeFull(t *testing.T) {
	b := withoutPool(t, Config{})
	b.pool.mu.Lock()
	b.pool.size = 2 // no fill has run: as just after New
	b.pool.mu.Unlock()
	if err := b.Ready(); err == nil || !strings.Contains(err.Error(), "0 of 2 ready") {
		t.Errorf("Ready of an empty pool: %v, want 0 of 2 ready", err)
	}
	waitFor(t, "Ready", func() bool { return b.Ready() == nil })
	settle(t, b)
}

// TestPoolRefillWaitsForFirstAnswer: a start that leaves another helper
// idle has the pool refilled only once its instance has answered its first
// request (Served), not while the function starts nor while it answers
// (InitDone refills nothing); the start that takes the last idle helper
// has it refilled at once.
func TestPoolRefillWaitsForFirstAnswer(t *testing.T) {
	old := refillDelay
	refillDelay = time.Hour // only Served refills
	t.Cleanup(func() { refillDelay = old })
	b := newBackend(t, Config{PoolSize: 2})
	settle(t, b)

	filling := func() (int, bool) {
		b.pool.mu.Lock()
		defer b.pool.mu.Unlock()
		return len(b.pool.idle), b.pool.filling
	}
	first := startPooled(t, b, sh(t, "sleep 60", nil))
	time.Sleep(200 * time.Millisecond) // a refill started at once would be under way
	if n, f := filling(); n != 1 || f {
		t.Fatalf("before InitDone: %d idle, filling %v; want 1 and no refill yet", n, f)
	}
	if err := first.InitDone(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	if n, f := filling(); n != 1 || f {
		t.Fatalf("after InitDone: %d idle, filling %v; want 1 and no refill before Served", n, f)
	}
	first.Served()
	first.Served() // a second call changes nothing
	settle(t, b)   // refilled

	// Two starts: the first leaves one helper idle (deferred), the second
	// takes it, the last, and the pool refills without any InitDone.
	startPooled(t, b, sh(t, "sleep 60", nil))
	startPooled(t, b, sh(t, "sleep 60", nil))
	settle(t, b)
}
