// Package sandboxtest is the conformance suite of sandbox.Backend: what
// every backend must do, and must enforce where it claims to (its
// sandbox.Isolation). Each backend runs it from its own tests, in every mode
// it has (Run).
//
// The suite runs /bin/sh scripts using coreutils (id, stat, head, sleep,
// setsid) in the instances, and /usr/bin/python3 where it needs to allocate
// memory; it makes its host directories under /var/tmp.
package sandboxtest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/sandbox"
	"github.com/nimbus-serverless/nimbus/internal/testenv"
)

// Setup is what the suite asks of a backend it has made.
type Setup struct {
	// Hide are host directories instances must not see (where the backend
	// claims HiddenPaths).
	Hide []string
}

// NewBackend makes a backend configured as s, and closes it when t ends.
type NewBackend func(t *testing.T, s Setup) sandbox.Backend

// python allocates memory in the memory tests; it must be runnable by any
// user.
const python = "/usr/bin/python3"

// Run runs the suite against backends made by newBackend, one per test.
// What a backend's sandbox.IsolationOf does not claim is not tested (the
// test says so and is skipped); what it claims, it is held to.
func Run(t *testing.T, newBackend NewBackend) {
	tests := []struct {
		name string
		fn   func(t *testing.T, nb NewBackend)
	}{
		{"ExitStatus", testExitStatus},
		{"Kill", testKill},
		{"Output", testOutput},
		{"OutputBeforeDone", testOutputBeforeDone},
		{"ArgsAndEnv", testArgsAndEnv},
		{"StartErrors", testStartErrors},
		{"Conflict", testConflict},
		{"ConcurrentStarts", testConcurrentStarts},
		{"Code", testCode},
		{"ReadOnlyCode", testReadOnlyCode},
		{"FixedPaths", testFixedPaths},
		{"CodeAlso", testCodeAlso},
		{"Layers", testLayers},
		{"TmpWritable", testTmpWritable},
		{"TmpPrivate", testTmpPrivate},
		{"TmpSize", testTmpSize},
		{"TmpFull", testTmpFull},
		{"HiddenPaths", testHiddenPaths},
		{"OwnUser", testOwnUser},
		{"MemoryLimit", testMemoryLimit},
		{"PidsLimit", testPidsLimit},
		{"KillAll", testKillAll},
		{"NoPrivileges", testNoPrivileges},
		{"SyscallFilter", testSyscallFilter},
		{"MinimalRoot", testMinimalRoot},
		{"Neighbour", testNeighbour},
		{"Freeze", testFreeze},
		{"NetworkHostLoopback", testNetworkHostLoopback},
		{"NetworkHostAddresses", testNetworkHostAddresses},
		{"NetworkPrepare", testNetworkPrepare},
		{"NetworkNeighbours", testNetworkNeighbours},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.fn(t, newBackend) })
	}
}

// require skips the test unless b claims what has says.
func require(t *testing.T, b sandbox.Backend, what string, has func(sandbox.Isolation) bool) {
	t.Helper()
	if !has(sandbox.IsolationOf(b)) {
		t.Skipf("the backend does not claim %s: %s", what, b.Describe())
	}
}

// HostDir returns a new directory under /var/tmp that every user may read
// and traverse, removed when the test ends.
func HostDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("/var/tmp", "nimbus-sandboxtest-")
	if err == nil {
		err = os.Chmod(dir, 0o755)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := os.RemoveAll(dir); err != nil {
			t.Errorf("remove %s: %v", dir, err)
		}
	})
	return dir
}

// writeFile writes a file every user may read.
func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

var lastID atomic.Int64

// sh returns a spec running script with /bin/sh in a new code directory
// holding code.txt, its output (both streams) in out.
func sh(t *testing.T, script string, out *testenv.Buffer) sandbox.Spec {
	t.Helper()
	code := HostDir(t)
	writeFile(t, filepath.Join(code, "code.txt"), "the code\n")
	spec := sandbox.Spec{
		ID:   fmt.Sprintf("st%d", lastID.Add(1)),
		Path: "/bin/sh", Args: []string{"sh", "-c", script},
		Env:     []string{"PATH=/usr/bin:/bin"},
		CodeDir: code,
	}
	if out != nil {
		spec.Stdout, spec.Stderr = out, out
	}
	return spec
}

// Start starts spec on b; the instance is killed and waited for when the
// test ends.
func Start(t *testing.T, b sandbox.Backend, spec sandbox.Spec) sandbox.Instance {
	t.Helper()
	inst, err := b.Start(t.Context(), spec)
	if err != nil {
		t.Fatalf("Start %s: %v", spec.ID, err)
	}
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
func wait(t *testing.T, inst sandbox.Instance) {
	t.Helper()
	select {
	case <-inst.Done():
	case <-time.After(30 * time.Second):
		t.Fatal("instance did not exit")
	}
}

// run runs script to its end and returns its output and Err.
func run(t *testing.T, b sandbox.Backend, script string) (string, error) {
	t.Helper()
	var out testenv.Buffer
	inst := Start(t, b, sh(t, script, &out))
	wait(t, inst)
	return out.String(), inst.Err()
}

// waitFor polls cond until it holds, failing the test after 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// running starts script, which must print "ready" once set up, and waits
// for that.
func running(t *testing.T, b sandbox.Backend, spec sandbox.Spec, out *testenv.Buffer) sandbox.Instance {
	t.Helper()
	inst := Start(t, b, spec)
	waitFor(t, "ready", func() bool {
		select {
		case <-inst.Done():
			t.Fatalf("instance exited (%v) before it was ready; output %q", inst.Err(), out.String())
		default:
		}
		return strings.Contains(out.String(), "ready")
	})
	return inst
}

func testExitStatus(t *testing.T, nb NewBackend) {
	b := nb(t, Setup{})
	tests := []struct {
		name, script string
		wantErr      bool
	}{
		{"clean exit", "exit 0", false},
		{"exit code", "exit 3", true},
		{"crash", "exec " + python + ` -c "import ctypes; ctypes.string_at(0)"`, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := run(t, b, tt.script)
			if (err != nil) != tt.wantErr || errors.Is(err, sandbox.ErrOutOfMemory) {
				t.Errorf("Err() = %v, want an error: %v (and not out of memory); output %q", err, tt.wantErr, out)
			}
			if tt.name == "exit code" && (err == nil || !strings.Contains(err.Error(), "3")) {
				t.Errorf("Err() = %v, want it to name the exit status 3", err)
			}
		})
	}
}

func testKill(t *testing.T, nb NewBackend) {
	b := nb(t, Setup{})
	var out testenv.Buffer
	inst := running(t, b, sh(t, "echo ready; exec sleep 60", &out), &out)
	select {
	case <-inst.Done():
		t.Fatal("Done closed before the instance exited")
	default:
	}
	inst.Kill()
	inst.Kill() // twice: harmless
	wait(t, inst)
	err := inst.Err()
	if err == nil || errors.Is(err, sandbox.ErrOutOfMemory) {
		t.Errorf("Err() after Kill = %v, want the kill's signal", err)
	}
	inst.Kill() // after exit: a no-op
	if again := inst.Err(); again != err {
		t.Errorf("Err() changed after exit: %v, then %v", err, again)
	}
}

func testOutput(t *testing.T, nb NewBackend) {
	b := nb(t, Setup{})
	t.Run("separate writers", func(t *testing.T) {
		var stdout, stderr testenv.Buffer
		spec := sh(t, "echo out; echo err >&2; echo out2", nil)
		spec.Stdout, spec.Stderr = &stdout, &stderr
		inst := Start(t, b, spec)
		wait(t, inst)
		if stdout.String() != "out\nout2\n" || stderr.String() != "err\n" || inst.Err() != nil {
			t.Errorf("stdout %q, stderr %q, Err() %v; want %q, %q, nil", stdout.String(), stderr.String(), inst.Err(), "out\nout2\n", "err\n")
		}
	})
	t.Run("one writer for both", func(t *testing.T) {
		out, err := run(t, b, "echo 1; echo 2 >&2; echo 3")
		if out != "1\n2\n3\n" || err != nil {
			t.Errorf("output %q, Err() %v; want %q in order, nil", out, err, "1\n2\n3\n")
		}
	})
	t.Run("file", func(t *testing.T) {
		f, err := os.Create(filepath.Join(t.TempDir(), "out"))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		spec := sh(t, "echo to-file; echo err-to-file >&2", nil)
		spec.Stdout, spec.Stderr = f, f
		wait(t, Start(t, b, spec))
		if data, _ := os.ReadFile(f.Name()); string(data) != "to-file\nerr-to-file\n" {
			t.Errorf("file holds %q, want %q", data, "to-file\nerr-to-file\n")
		}
	})
	t.Run("no writers", func(t *testing.T) {
		inst := Start(t, b, sh(t, "echo discarded; echo discarded >&2", nil))
		wait(t, inst)
		if err := inst.Err(); err != nil {
			t.Errorf("Err() = %v, want nil", err)
		}
	})
	t.Run("failing writer", func(t *testing.T) {
		var errOut testenv.Buffer
		spec := sh(t, "head -c 1000000 /dev/zero; echo done >&2", nil)
		spec.Stdout, spec.Stderr = failingWriter{}, &errOut
		inst := Start(t, b, spec)
		wait(t, inst)
		if err := inst.Err(); err != nil || errOut.String() != "done\n" {
			t.Errorf("Err() = %v, stderr %q; want nil and %q: a failing writer must not block the instance", err, errOut.String(), "done\n")
		}
	})
}

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

// testOutputBeforeDone checks that everything an instance wrote has reached
// its writers when Done is closed.
func testOutputBeforeDone(t *testing.T, nb NewBackend) {
	b := nb(t, Setup{})
	var out testenv.Buffer
	inst := Start(t, b, sh(t, "head -c 3000000 /dev/zero | tr '\\0' x; echo; echo end", &out))
	wait(t, inst)
	if got := out.String(); len(got) != 3000005 || !strings.HasSuffix(got, "\nend\n") {
		t.Errorf("output of %d bytes when Done closed, want 3000005 ending in end", len(got))
	}
}

func testArgsAndEnv(t *testing.T, nb NewBackend) {
	b := nb(t, Setup{})
	var out testenv.Buffer
	// 400 KB of environment: more than a socket or pipe buffer holds.
	spec := sh(t, `echo "$0|$1|$FOO|${#A}|${#B}|${#C}|${#D}"`, &out)
	spec.Args = append(spec.Args, "a0", "a 1")
	spec.Env = append(spec.Env, "FOO=bar baz")
	for _, k := range "ABCD" {
		spec.Env = append(spec.Env, string(k)+"="+strings.Repeat("x", 100_000))
	}
	wait(t, Start(t, b, spec))
	if got, want := out.String(), "a0|a 1|bar baz|100000|100000|100000|100000\n"; got != want {
		t.Errorf("output %q, want %q", got, want)
	}
}

func testStartErrors(t *testing.T, nb NewBackend) {
	b := nb(t, Setup{})
	code := HostDir(t)
	notExec := filepath.Join(code, "bootstrap")
	writeFile(t, notExec, "#!/bin/sh\n")
	cancelled, cancel := context.WithCancel(t.Context())
	cancel()
	tests := []struct {
		name   string
		ctx    context.Context
		spec   sandbox.Spec
		wantIs error
	}{
		{"empty id", nil, sandbox.Spec{ID: "-", Path: "/bin/true"}, nimbus.ErrInvalid},
		{"id with slash", nil, sandbox.Spec{ID: "a/b", Path: "/bin/true"}, nimbus.ErrInvalid},
		{"id dot dot", nil, sandbox.Spec{ID: "..", Path: "/bin/true"}, nimbus.ErrInvalid},
		{"no program", nil, sandbox.Spec{}, nimbus.ErrInvalid},
		{"relative code dir", nil, sandbox.Spec{Path: "/bin/true", CodeDir: "code"}, nimbus.ErrInvalid},
		{"missing code dir", nil, sandbox.Spec{Path: "/bin/true", CodeDir: "/nonexistent"}, nimbus.ErrInvalid},
		{"code dir is a file", nil, sandbox.Spec{Path: "/bin/true", CodeDir: notExec}, nimbus.ErrInvalid},
		{"missing runtime dir", nil, sandbox.Spec{Path: "/bin/true", RuntimeDir: "/nonexistent"}, nimbus.ErrInvalid},
		{"relative runtime dir", nil, sandbox.Spec{Path: "/bin/true", RuntimeDir: "rt"}, nimbus.ErrInvalid},
		{"negative memory", nil, sandbox.Spec{Path: "/bin/true", MemoryMB: -1}, nimbus.ErrInvalid},
		{"negative tmp", nil, sandbox.Spec{Path: "/bin/true", TmpMB: -1}, nimbus.ErrInvalid},
		{"NUL in env", nil, sandbox.Spec{Path: "/bin/true", Env: []string{"A=\x00"}}, nimbus.ErrInvalid},
		{"cancelled", cancelled, sandbox.Spec{Path: "/bin/true"}, context.Canceled},
		{"missing program", nil, sandbox.Spec{Path: "/nonexistent/bootstrap"}, os.ErrNotExist},
		{"program not executable", nil, sandbox.Spec{Path: notExec}, os.ErrPermission},
	}
	for n, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := tt.spec
			switch spec.ID {
			case "":
				spec.ID = fmt.Sprintf("bad%d", n)
			case "-":
				spec.ID = ""
			}
			if spec.CodeDir == "" {
				spec.CodeDir = code
			}
			if spec.Path == notExec { // as the instance sees it
				spec.Path = filepath.Join(sandbox.PathsOf(b, spec).TaskRoot, "bootstrap")
			}
			ctx := tt.ctx
			if ctx == nil {
				ctx = t.Context()
			}
			inst, err := b.Start(ctx, spec)
			if err == nil {
				inst.Kill()
				<-inst.Done()
				t.Fatal("Start succeeded, want an error")
			}
			if !errors.Is(err, tt.wantIs) {
				t.Errorf("Start: %v; want an error matching %v", err, tt.wantIs)
			}
		})
	}
	// Nothing is left reserved: the ids can be used.
	for n := range tests {
		if out, err := run(t, b, "echo ok"); out != "ok\n" || err != nil {
			t.Fatalf("start after failed starts (%d): output %q, Err() %v", n, out, err)
		}
	}
}

func testConflict(t *testing.T, nb NewBackend) {
	b := nb(t, Setup{})
	var out testenv.Buffer
	first := sh(t, "echo ready; exec sleep 60", &out)
	a := running(t, b, first, &out)
	dup := sh(t, "exit 0", nil)
	dup.ID = first.ID
	if _, err := b.Start(t.Context(), dup); !errors.Is(err, nimbus.ErrConflict) {
		t.Errorf("Start with the id of a running instance: %v, want ErrConflict", err)
	}
	a.Kill()
	wait(t, a)
	// Once it has exited, its id is free.
	inst := Start(t, b, dup)
	wait(t, inst)
	if err := inst.Err(); err != nil {
		t.Errorf("start with the id of an exited instance: Err() %v, want nil", err)
	}
}
