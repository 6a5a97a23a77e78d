package sandboxtest

import (
	_ "embed"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/nimbus-serverless/nimbus/internal/sandbox"
	"github.com/nimbus-serverless/nimbus/internal/testenv"
)

// escapeScript tries, from inside an instance, the system calls a function
// must not make; see its doc string.
//
//go:embed escape.py
var escapeScript string

// escapes runs escape.py (with the named checks, or all) in an instance
// of b and returns what it printed, as a map from check to result.
func escapes(t *testing.T, b sandbox.Backend, checks ...string) map[string]string {
	t.Helper()
	var out testenv.Buffer
	spec := sh(t, "", &out)
	writeFile(t, filepath.Join(spec.CodeDir, "escape.py"), escapeScript)
	spec.Path, spec.Args = python, append([]string{"python3", "escape.py"}, checks...)
	inst := Start(t, b, spec)
	wait(t, inst)
	if err := inst.Err(); err != nil {
		t.Fatalf("escape.py: %v; output %q", err, out.String())
	}
	got := make(map[string]string)
	for line := range strings.Lines(out.String()) {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), "="); ok {
			got[k] = v
		}
	}
	// What a function needs keeps working.
	for _, k := range []string{"fork", "thread", "personality-query"} {
		if got[k] != "allowed" {
			t.Errorf("%s: %q, want allowed; output %q", k, got[k], out.String())
		}
	}
	return got
}

// testNoPrivileges checks that an instance has no capability and
// no_new_privs, and that a set-uid-root binary gives it neither root nor a
// capability.
func testNoPrivileges(t *testing.T, nb NewBackend) {
	b := nb(t, Setup{})
	require(t, b, "no privileges", func(i sandbox.Isolation) bool { return i.NoPrivileges })
	got := escapes(t, b, "mount")
	zero := "0000000000000000"
	want := map[string]string{"CapInh": zero, "CapPrm": zero, "CapEff": zero, "CapAmb": zero, "NoNewPrivs": "1"}
	if os.Geteuid() == 0 { // the backend may empty the bounding set
		want["CapBnd"] = zero
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
	if os.Geteuid() != 0 {
		t.Skip("making a set-uid-root binary needs root")
	}
	var out testenv.Buffer
	spec := sh(t, `./suid-cat /proc/self/status | grep -E '^(Uid|CapEff):'`, &out)
	cat, err := os.ReadFile("/bin/cat")
	if err != nil {
		t.Fatal(err)
	}
	suid := filepath.Join(spec.CodeDir, "suid-cat")
	if err := os.WriteFile(suid, cat, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(suid, 0o4755); err != nil { // after the write: a write clears set-uid
		t.Fatal(err)
	}
	inst := Start(t, b, spec)
	wait(t, inst)
	var uids []string
	for line := range strings.Lines(out.String()) {
		f := strings.Fields(line)
		switch {
		case len(f) >= 3 && f[0] == "Uid:":
			uids = f[1:3]
		case len(f) == 2 && f[0] == "CapEff:" && f[1] != zero:
			t.Errorf("a set-uid-root binary ran with capabilities %s", f[1])
		}
	}
	if len(uids) != 2 || uids[0] != uids[1] || inst.Err() != nil {
		t.Errorf("a set-uid-root binary: real and effective uid %v, Err() %v; want the instance's own for both; output %q", uids, inst.Err(), out.String())
	}
}

// seccompOnly are the escapes an unprivileged process may make on a common
// host (unprivileged user namespaces, ptrace of its own child, keyrings,
// perf events of its own, userfaultfd in user mode, io_uring, file
// handles): only the filter refuses them, with EPERM (clone3 with ENOSYS,
// so that the C library falls back to clone, which is checked).
var seccompOnly = map[string]string{
	"unshare-user": "EPERM", "clone-user": "EPERM", "clone3": "ENOSYS",
	"ptrace": "EPERM", "process_vm_readv": "EPERM",
	"keyctl": "EPERM", "add_key": "EPERM", "perf_event_open": "EPERM", "userfaultfd": "EPERM",
	"personality": "EPERM", "io_uring_setup": "EPERM", "name_to_handle_at": "EPERM",
}

// testSyscallFilter tries the escapes of escape.py: each must be refused,
// and the instance must run under a seccomp filter.
func testSyscallFilter(t *testing.T, nb NewBackend) {
	b := nb(t, Setup{})
	require(t, b, "a system call filter", func(i sandbox.Isolation) bool { return i.SyscallFilter })
	got := escapes(t, b)
	if got["Seccomp"] != "2" {
		t.Errorf("Seccomp = %q in /proc/self/status, want 2 (filter)", got["Seccomp"])
	}
	checks := []string{"mount", "umount2", "pivot_root", "unshare-user", "unshare-mount", "clone-user", "clone3",
		"setns", "ptrace", "process_vm_readv", "init_module", "finit_module", "kexec_load", "bpf", "keyctl",
		"add_key", "perf_event_open", "userfaultfd", "personality", "io_uring_setup", "name_to_handle_at",
		"settimeofday", "syslog"}
	for _, c := range checks {
		v, ok := got[c]
		switch want, only := seccompOnly[c]; {
		case !ok:
			t.Errorf("%s: not tried", c)
		case v == "allowed":
			t.Errorf("%s: allowed, want refused", c)
		case only && v != want:
			t.Errorf("%s: %s, want %s", c, v, want)
		}
	}
}

// rootEntries are what may be in an instance's / when it has a root of
// its own.
var rootEntries = []string{"bin", "dev", "etc", "lib", "lib32", "lib64", "libx32", "opt", "proc", "sbin", "tmp", "usr", "var"}

// testMinimalRoot checks what an instance with a root of its own sees and
// can write: only the system directories, a minimal /dev and /etc, its
// code and runtime; no host path is writable but its /tmp and /dev/shm,
// and nothing it tries to write outside them reaches the host.
func testMinimalRoot(t *testing.T, nb NewBackend) {
	b := nb(t, Setup{})
	require(t, b, "a root of its own", func(i sandbox.Isolation) bool { return i.MinimalRoot })
	mark := fmt.Sprintf("nimbus-escape-%d-%d", os.Getpid(), lastID.Add(1))
	writable := []string{"/", "/etc", "/usr", "/usr/bin", "/var", "/var/task", "/var/runtime", "/opt", "/dev", "/proc/sys/kernel",
		"/var/tmp", "/home", "/root", "/srv", "/run", "/run/lock", "/mnt", "/media", "/boot", "/sys/fs/cgroup", "/var/lib"}
	var out testenv.Buffer
	spec := sh(t, `echo "root:$(ls -A / | tr '\n' ' ')"
echo "var:$(ls -A /var | tr '\n' ' ')"
echo "dev:$(ls -A /dev | tr '\n' ' ')"
echo "opt:$(ls -A /opt | tr '\n' ' ')"
for p in `+strings.Join(writable, " ")+`; do
  if (head -c 1000000 /dev/zero > "$p/$MARK") 2>/dev/null; then echo "write $p:written"; else echo "write $p:refused"; fi
done
echo x > /tmp/ok && echo "tmp:written"
echo x > /dev/shm/ok && echo "shm:written"
echo null > /dev/null && head -c 4 /dev/urandom | wc -c | sed 's/^/urandom:/'
if ls /sys/fs/cgroup >/dev/null 2>&1; then echo "cgroups:listed"; else echo "cgroups:hidden"; fi
if cat /proc/$HOSTPID/environ >/dev/null 2>&1; then echo "host environ:read"; else echo "host environ:refused"; fi
grep -c '^sbx_user:' /etc/passwd | sed 's/^/passwd:/'
if [ -e /etc/shadow ]; then echo "shadow:there"; else echo "shadow:absent"; fi
mkdir /tmp/x && echo "mkdir tmp:ok"`, &out)
	withRuntime(t, &spec)
	spec.Env = append(spec.Env, "MARK="+mark, fmt.Sprintf("HOSTPID=%d", os.Getpid()))
	inst := Start(t, b, spec)
	wait(t, inst)
	got := out.String()
	lines := make(map[string]string)
	for line := range strings.Lines(got) {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), ":"); ok {
			lines[k] = strings.TrimSpace(v)
		}
	}
	for _, e := range strings.Fields(lines["root"]) {
		if !slices.Contains(rootEntries, e) {
			t.Errorf("/ holds %q; want only %v", e, rootEntries)
		}
	}
	for k, want := range map[string]string{
		"var": "runtime task", "opt": "", "dev": "fd full null random shm stderr stdin stdout tty urandom zero",
		"tmp": "written", "shm": "written", "urandom": "4", "cgroups": "hidden", "host environ": "refused",
		"passwd": "1", "shadow": "absent", "mkdir tmp": "ok",
	} {
		if lines[k] != want {
			t.Errorf("%s: %q, want %q", k, lines[k], want)
		}
	}
	for _, p := range writable {
		if v := lines["write "+p]; v != "refused" {
			t.Errorf("writing %s: %q, want refused", p, v)
		}
		if _, err := os.Stat(filepath.Join(p, mark)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("the host has %s/%s (stat error %v): an instance wrote it", p, mark, err)
			_ = os.Remove(filepath.Join(p, mark))
		}
	}
	if t.Failed() {
		t.Logf("output: %q", got)
	}
}

// testNeighbour checks what an instance can do to another one: read its
// environment (/proc/<pid>/environ) or signal it (with a uid of its own),
// read its code by its host path (with a root of its own).
func testNeighbour(t *testing.T, nb NewBackend) {
	b := nb(t, Setup{})
	iso := sandbox.IsolationOf(b)
	if !iso.OwnUser {
		t.Skipf("the backend does not claim a user per instance: %s", b.Describe())
	}
	if os.Geteuid() != 0 {
		t.Skip("finding the neighbour's host pid needs root")
	}
	mark := fmt.Sprintf("NIMBUS_NEIGHBOUR=%d-%d", os.Getpid(), lastID.Add(1))
	var outA testenv.Buffer
	specA := sh(t, "echo ready; exec sleep 60", &outA)
	specA.Env = append(specA.Env, mark)
	a := running(t, b, specA, &outA)
	pid := pidWithEnv(t, mark)
	got, _ := run(t, b, fmt.Sprintf(`if cat /proc/%[1]d/environ 2>/dev/null | grep -q NIMBUS_NEIGHBOUR; then echo "environ:read"; else echo "environ:refused"; fi
if kill -KILL %[1]d 2>/dev/null; then echo "kill:sent"; else echo "kill:refused"; fi
if cat %[2]s/code.txt >/dev/null 2>&1; then echo "code:read"; else echo "code:refused"; fi`, pid, specA.CodeDir))
	want := []string{"environ:refused", "kill:refused"}
	if iso.MinimalRoot {
		want = append(want, "code:refused")
	}
	for _, w := range want {
		if !strings.Contains(got, w) {
			t.Errorf("output %q: want %q", got, w)
		}
	}
	select {
	case <-a.Done():
		t.Errorf("the neighbour died: %v", a.Err())
	default:
	}
}

// pidWithEnv returns the host pid of a process whose environment holds
// kv.
func pidWithEnv(t *testing.T, kv string) int {
	t.Helper()
	found := 0
	waitFor(t, "a process with "+kv, func() bool {
		ents, _ := os.ReadDir("/proc")
		for _, e := range ents {
			pid, err := strconv.Atoi(e.Name())
			if err != nil {
				continue
			}
			env, _ := os.ReadFile("/proc/" + e.Name() + "/environ")
			if slices.Contains(strings.Split(string(env), "\x00"), kv) {
				found = pid
				return true
			}
		}
		return false
	})
	return found
}
