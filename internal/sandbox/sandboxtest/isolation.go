package sandboxtest

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/sandbox"
	"github.com/nimbus-serverless/nimbus/internal/testenv"
)

func testConcurrentStarts(t *testing.T, nb NewBackend) {
	b := nb(t, Setup{})
	const n = 8
	var wg sync.WaitGroup
	outs := make([]testenv.Buffer, n)
	insts := make([]sandbox.Instance, n)
	for k := range n {
		spec := sh(t, fmt.Sprintf("echo %d", k), &outs[k])
		wg.Go(func() {
			inst, err := b.Start(t.Context(), spec)
			if err != nil {
				t.Errorf("Start %d: %v", k, err)
				return
			}
			insts[k] = inst
		})
	}
	wg.Wait()
	for k, inst := range insts {
		if inst == nil {
			continue
		}
		wait(t, inst)
		if got, want := outs[k].String(), strconv.Itoa(k)+"\n"; got != want || inst.Err() != nil {
			t.Errorf("instance %d: output %q, Err() %v; want %q, nil", k, got, inst.Err(), want)
		}
	}
}

// withRuntime adds a runtime directory holding rt.txt to spec.
func withRuntime(t *testing.T, spec *sandbox.Spec) {
	t.Helper()
	spec.RuntimeDir = HostDir(t)
	writeFile(t, filepath.Join(spec.RuntimeDir, "rt.txt"), "the runtime\n")
}

// testCode checks that an instance starts in its code directory and reads
// its code and runtime where PathsOf says it sees them.
func testCode(t *testing.T, nb NewBackend) {
	b := nb(t, Setup{})
	var out testenv.Buffer
	spec := sh(t, `pwd; cat code.txt; cat "$TASK/code.txt"; cat "$RT/rt.txt"`, &out)
	withRuntime(t, &spec)
	in := sandbox.PathsOf(b, spec)
	spec.Env = append(spec.Env, "TASK="+in.TaskRoot, "RT="+in.RuntimeDir)
	inst := Start(t, b, spec)
	wait(t, inst)
	want := in.TaskRoot + "\nthe code\nthe code\nthe runtime\n"
	if got := out.String(); got != want || inst.Err() != nil {
		t.Errorf("output %q, Err() %v; want %q, nil", got, inst.Err(), want)
	}
	if in.RuntimeDir == "" || in.TaskRoot == "" {
		t.Errorf("PathsOf = %+v, want both directories", in)
	}
	spec.RuntimeDir = ""
	if in := sandbox.PathsOf(b, spec); in.RuntimeDir != "" {
		t.Errorf("PathsOf without a runtime directory = %+v, want no runtime directory", in)
	}
}

// testReadOnlyCode checks that neither the code nor the runtime directory
// can be written, even when their modes would let anyone.
func testReadOnlyCode(t *testing.T, nb NewBackend) {
	b := nb(t, Setup{})
	require(t, b, "read-only code", func(i sandbox.Isolation) bool { return i.ReadOnlyCode })
	var out testenv.Buffer
	spec := sh(t, `try() { if (eval "$2") 2>/dev/null; then echo "$1:written"; else echo "$1:refused"; fi; }
try "code file" 'echo changed > "$TASK/code.txt"'
try "code dir" 'touch "$TASK/new"'
try "runtime file" 'echo changed > "$RT/rt.txt"'
try "runtime dir" 'touch "$RT/new"'`, &out)
	withRuntime(t, &spec)
	for _, p := range []string{spec.CodeDir, spec.RuntimeDir} {
		if err := errors.Join(os.Chmod(p, 0o777), os.Chmod(filepath.Join(p, "code.txt"), 0o666),
			os.Chmod(filepath.Join(p, "rt.txt"), 0o666)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			t.Fatal(err)
		}
	}
	in := sandbox.PathsOf(b, spec)
	spec.Env = append(spec.Env, "TASK="+in.TaskRoot, "RT="+in.RuntimeDir)
	wait(t, Start(t, b, spec))
	if want := "code file:refused\ncode dir:refused\nruntime file:refused\nruntime dir:refused\n"; out.String() != want {
		t.Errorf("output %q, want %q", out.String(), want)
	}
	for _, f := range []string{filepath.Join(spec.CodeDir, "new"), filepath.Join(spec.RuntimeDir, "new")} {
		if _, err := os.Stat(f); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s: stat error %v, want it not created", f, err)
		}
	}
	if data, _ := os.ReadFile(filepath.Join(spec.CodeDir, "code.txt")); string(data) != "the code\n" {
		t.Errorf("code.txt = %q after the instance ran, want it unchanged", data)
	}
}

// testFixedPaths checks that the code and runtime are at /var/task and
// /var/runtime, as on Lambda, and not at their host paths.
func testFixedPaths(t *testing.T, nb NewBackend) {
	b := nb(t, Setup{})
	require(t, b, "fixed paths", func(i sandbox.Isolation) bool { return i.FixedPaths })
	var out testenv.Buffer
	spec := sh(t, `pwd; cat /var/task/code.txt /var/runtime/rt.txt
cat "$HOST_CODE/code.txt"; echo "host code:$?"
cat "$HOST_RT/rt.txt"; echo "host runtime:$?"`, &out)
	withRuntime(t, &spec)
	spec.Env = append(spec.Env, "HOST_CODE="+spec.CodeDir, "HOST_RT="+spec.RuntimeDir)
	if in := sandbox.PathsOf(b, spec); in.TaskRoot != sandbox.TaskRoot || in.RuntimeDir != sandbox.RuntimeRoot {
		t.Errorf("PathsOf = %+v, want %s and %s", in, sandbox.TaskRoot, sandbox.RuntimeRoot)
	}
	wait(t, Start(t, b, spec))
	got := out.String()
	for _, want := range []string{"/var/task\nthe code\nthe runtime\n", "host code:1", "host runtime:1"} {
		if !strings.Contains(got, want) {
			t.Errorf("output %q: want %q", got, want)
		}
	}
	if strings.Contains(strings.ReplaceAll(got, "the code\nthe runtime", ""), "the ") {
		t.Errorf("output %q: the host paths were read", got)
	}
}

// testCodeAlso checks that a backend with a root of its own shows the code
// at Spec.CodeAlso as well, read-only, the working directory staying
// TaskRoot, and that a bad CodeAlso is refused.
func testCodeAlso(t *testing.T, nb NewBackend) {
	b := nb(t, Setup{})
	for _, bad := range []string{"code", "/", "/etc", "/usr", "/var", "/tmp", "/code/x", "/code/", "/.."} {
		spec := sh(t, "true", nil)
		spec.CodeAlso = bad
		if inst, err := b.Start(t.Context(), spec); !errors.Is(err, nimbus.ErrInvalid) {
			if err == nil {
				inst.Kill()
				<-inst.Done()
			}
			t.Errorf("CodeAlso %q: Start error %v, want ErrInvalid", bad, err)
		}
	}
	require(t, b, "a minimal root", func(i sandbox.Isolation) bool { return i.MinimalRoot })
	var out testenv.Buffer
	spec := sh(t, `pwd; cat /code/code.txt
if (echo changed > /code/code.txt) 2>/dev/null; then echo "file:written"; else echo "file:refused"; fi
if (touch /code/new) 2>/dev/null; then echo "dir:written"; else echo "dir:refused"; fi
if (mkdir /other) 2>/dev/null; then echo "root:written"; else echo "root:refused"; fi
cat "$HOST_CODE/code.txt" 2>/dev/null; echo "host code:$?"`, &out)
	spec.CodeAlso = "/code"
	spec.Env = append(spec.Env, "HOST_CODE="+spec.CodeDir)
	if err := os.Chmod(filepath.Join(spec.CodeDir, "code.txt"), 0o666); err != nil {
		t.Fatal(err)
	}
	wait(t, Start(t, b, spec))
	if want := sandbox.TaskRoot + "\nthe code\nfile:refused\ndir:refused\nroot:refused\nhost code:1\n"; out.String() != want {
		t.Errorf("output %q, want %q", out.String(), want)
	}
	if _, err := os.Stat(filepath.Join(spec.CodeDir, "new")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("stat error %v, want the file not created", err)
	}
}

// testTmpWritable checks that an instance can write its temporary
// directory, /tmp or $TMPDIR, and that the host finds it at TmpDir.
func testTmpWritable(t *testing.T, nb NewBackend) {
	b := nb(t, Setup{})
	var out testenv.Buffer
	inst := running(t, b, sh(t, `echo x > "${TMPDIR:-/tmp}/f" && echo ready; exec sleep 60`, &out), &out)
	if data, err := os.ReadFile(filepath.Join(inst.TmpDir(), "f")); err != nil || string(data) != "x\n" {
		t.Errorf("TmpDir()/f = %q, %v; want %q", data, err, "x\n")
	}
}

func testTmpPrivate(t *testing.T, nb NewBackend) {
	b := nb(t, Setup{})
	require(t, b, "a private /tmp", func(i sandbox.Isolation) bool { return i.PrivateTmp })
	marker := fmt.Sprintf("marker-%d-%d", os.Getpid(), lastID.Add(1))
	var out testenv.Buffer
	a := running(t, b, sh(t, "echo a > /tmp/"+marker+" && echo ready; exec sleep 60", &out), &out)
	if data, err := os.ReadFile(filepath.Join(a.TmpDir(), marker)); err != nil || string(data) != "a\n" {
		t.Errorf("host read of TmpDir()/%s = %q, %v; want %q", marker, data, err, "a\n")
	}
	if _, err := os.Stat("/tmp/" + marker); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("host /tmp/%s: stat error %v, want not found", marker, err)
	}
	got, err := run(t, b, "ls -A /tmp; echo listed")
	if err != nil || strings.Contains(got, marker) || !strings.Contains(got, "listed") {
		t.Errorf("another instance's ls /tmp = %q, %v; want no %s", got, err, marker)
	}
}

// testTmpSize checks /tmp's size for sizes Lambda allows (512 to 10240
// MB).
func testTmpSize(t *testing.T, nb NewBackend) {
	b := nb(t, Setup{})
	require(t, b, "a private /tmp", func(i sandbox.Isolation) bool { return i.PrivateTmp })
	for _, mb := range []int{512, 1000, 4096, 10240} {
		var out testenv.Buffer
		spec := sh(t, `stat -f -c '%b %S' /tmp`, &out)
		spec.TmpMB = mb
		inst := Start(t, b, spec)
		wait(t, inst)
		f := strings.Fields(out.String())
		var blocks, size int64
		if len(f) == 2 {
			blocks, _ = strconv.ParseInt(f[0], 10, 64)
			size, _ = strconv.ParseInt(f[1], 10, 64)
		}
		if got := blocks * size; got != int64(mb)<<20 || inst.Err() != nil {
			t.Errorf("TmpMB %d: statfs /tmp says %q (%d bytes), Err() %v; want %d bytes", mb, out.String(), got, inst.Err(), int64(mb)<<20)
		}
	}
}

func testTmpFull(t *testing.T, nb NewBackend) {
	b := nb(t, Setup{})
	require(t, b, "a private /tmp", func(i sandbox.Isolation) bool { return i.PrivateTmp })
	var out testenv.Buffer
	spec := sh(t, `head -c 500000 /dev/zero > /tmp/small && echo small-ok
head -c 2000000 /dev/zero > /tmp/big`, &out)
	spec.TmpMB = 1
	inst := Start(t, b, spec)
	wait(t, inst)
	if !strings.Contains(out.String(), "small-ok") || !strings.Contains(out.String(), "No space left on device") {
		t.Errorf("output %q: want the small write to succeed and the big one to fail with ENOSPC", out.String())
	}
	if inst.Err() == nil {
		t.Errorf("Err() = nil, want the failed write's exit status")
	}
}

func testHiddenPaths(t *testing.T, nb NewBackend) {
	hidden := HostDir(t)
	writeFile(t, filepath.Join(hidden, "secret.txt"), "top secret\n")
	writeFile(t, filepath.Join(hidden, "sub", "inner.txt"), "inner secret\n")
	b := nb(t, Setup{Hide: []string{hidden}})
	require(t, b, "hidden paths", func(i sandbox.Isolation) bool { return i.HiddenPaths })
	out, _ := run(t, b, strings.ReplaceAll(`cat HIDDEN/secret.txt; echo "secret:$?"
cat HIDDEN/sub/inner.txt; echo "inner:$?"
echo "listing:$(ls -A HIDDEN)."
touch HIDDEN/new; echo "touch:$?"`, "HIDDEN", hidden))
	for _, want := range []string{"secret:1", "inner:1", "listing:.", "touch:1"} {
		if !strings.Contains(out, want) {
			t.Errorf("output %q: want %q", out, want)
		}
	}
	if strings.Contains(out, "secret\n") {
		t.Errorf("output %q: a hidden file was read", out)
	}
}

func testOwnUser(t *testing.T, nb NewBackend) {
	b := nb(t, Setup{})
	if !sandbox.IsolationOf(b).OwnUser {
		inst := Start(t, b, sh(t, "exit 0", nil))
		if uid := inst.UID(); uid != -1 {
			t.Errorf("UID() = %d without a user per instance, want -1", uid)
		}
		t.Skipf("the backend does not claim a user per instance: %s", b.Describe())
	}
	var outA, outB testenv.Buffer
	a := running(t, b, sh(t, "id -u; echo ready; exec sleep 60", &outA), &outA)
	c := running(t, b, sh(t, "id -u; echo ready; exec sleep 60", &outB), &outB)
	for _, x := range []struct {
		inst sandbox.Instance
		out  *testenv.Buffer
	}{{a, &outA}, {c, &outB}} {
		uid := x.inst.UID()
		if uid < 0 || uid == os.Geteuid() || strings.Fields(x.out.String())[0] != strconv.Itoa(uid) {
			t.Errorf("UID() = %d, id -u says %q; want the same uid, not ours (%d)", uid, x.out.String(), os.Geteuid())
		}
	}
	if a.UID() == c.UID() {
		t.Errorf("two running instances share uid %d", a.UID())
	}
}

func testMemoryLimit(t *testing.T, nb NewBackend) {
	b := nb(t, Setup{})
	require(t, b, "a memory limit", func(i sandbox.Isolation) bool { return i.MemoryLimit })
	tests := []struct {
		name              string
		memoryMB, allocMB int
		wantOOM           bool
	}{
		{"over the limit", 64, 300, true},
		{"under the limit", 128, 16, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out testenv.Buffer
			spec := sh(t, fmt.Sprintf(`exec %s -c "b = b'x' * (%d << 20); print(len(b))"`, python, tt.allocMB), &out)
			spec.MemoryMB = tt.memoryMB
			inst := Start(t, b, spec)
			wait(t, inst)
			err := inst.Err()
			if got := errors.Is(err, sandbox.ErrOutOfMemory); got != tt.wantOOM || (!tt.wantOOM && err != nil) {
				t.Fatalf("Err() = %v, want out of memory: %v; output %q", err, tt.wantOOM, out.String())
			}
			peak := inst.MaxMemoryBytes()
			if lo := int64(min(tt.allocMB, tt.memoryMB/2)) << 20; peak < lo || peak > int64(tt.memoryMB)<<20 {
				t.Errorf("MaxMemoryBytes() = %d, want between %d and the %d MB limit", peak, lo, tt.memoryMB)
			}
		})
	}
}

func testPidsLimit(t *testing.T, nb NewBackend) {
	b := nb(t, Setup{})
	require(t, b, "a pids limit", func(i sandbox.Isolation) bool { return i.PidsLimit })
	var out testenv.Buffer
	spec := sh(t, "f() { f | f & }; f; exec sleep 60", &out)
	spec.PidsMax = 64
	inst := Start(t, b, spec)
	waitFor(t, "fork to fail", func() bool { return strings.Contains(out.String(), "fork") })
	if err := exec.Command("/bin/true").Run(); err != nil {
		t.Errorf("the host cannot start a process during the fork bomb: %v", err)
	}
	inst.Kill()
	wait(t, inst)
}

// testKillAll checks that Kill, and the exit of the first process, leave
// nothing running: not a child in the background, nor a grandchild in a
// session of its own. Each writes to a file every 20 ms, which must stop
// growing once Done is closed.
func testKillAll(t *testing.T, nb NewBackend) {
	const script = `tick() { while :; do echo "$1"; sleep 0.02; done; }
tick child &
setsid sh -c 'tick() { while :; do echo "$1"; sleep 0.02; done; }; tick grandchild' &
(setsid sh -c 'while :; do echo orphan; sleep 0.02; done' &)
echo ready
`
	b := nb(t, Setup{})
	require(t, b, "killing every process", func(i sandbox.Isolation) bool { return i.KillAll })
	for _, kill := range []bool{true, false} {
		t.Run(map[bool]string{true: "kill", false: "exit"}[kill], func(t *testing.T) {
			f, err := os.Create(filepath.Join(t.TempDir(), "out"))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			s := script + "exec sleep 60"
			if !kill {
				s = script + "sleep 0.3"
			}
			spec := sh(t, s, nil)
			spec.Stdout, spec.Stderr = f, f
			inst := Start(t, b, spec)
			waitFor(t, "every writer", func() bool {
				data, _ := os.ReadFile(f.Name())
				return strings.Contains(string(data), "child") && strings.Contains(string(data), "grandchild") &&
					strings.Contains(string(data), "orphan")
			})
			if kill {
				inst.Kill()
			}
			wait(t, inst)
			before, _ := f.Stat()
			time.Sleep(300 * time.Millisecond)
			after, _ := f.Stat()
			if after.Size() != before.Size() {
				t.Errorf("output grew from %d to %d bytes after Done: a process survived", before.Size(), after.Size())
			}
		})
	}
}
