package process

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/sandbox"
	"golang.org/x/sys/unix"
)

// outputGrace is how long an exited instance's output may keep flowing
// (from processes no kill could reach) before its pipes are closed.
const outputGrace = 2 * time.Second

// instance is a started instance: the helper's process, which became the
// function by exec, and what was made for it.
type instance struct {
	b        *Backend
	spec     sandbox.Spec
	slot     int
	uid, gid int
	dir      string  // Root/<id>, when there is no mount namespace
	cg       *cgroup // nil without cgroups
	h        *helper
	copiers  sync.WaitGroup
	readers  []*os.File // read ends of the output pipes
	// taken is the read end of a zygote's output pipe, which the caller
	// reads (Spec.TakeOutput); nil otherwise.
	taken *os.File
	done  chan struct{}

	mu     sync.Mutex
	exited bool // the function has exited; Kill has nothing left to do
	killed bool // Kill was called: Freeze must not stop the dying
	err    error
	peak   int64 // MaxMemoryBytes once the cgroup is gone
	cgGone bool
	// initCPU: the cgroup has one CPU's weight until InitDone.
	initCPU bool
}

// start prepares the instance, gives it a pre-started helper (or starts
// one) and waits for the exec. On failure it undoes everything and releases
// the slot.
func (i *instance) start(ctx context.Context) (err error) {
	defer func() {
		if err != nil {
			i.abort()
		}
	}()
	ic := i.b.initConfig(i.spec, i.slot)
	if !i.b.mountNS() {
		tmp, err := i.makeTmp()
		if err != nil {
			return fmt.Errorf("create tmp dir: %w", err)
		}
		ic.Env = withEnv(ic.Env, "TMPDIR", tmp)
	}
	stdout, stderr, childEnds, err := i.outputs()
	defer func() {
		for _, f := range childEnds { // the helper has its copies
			_ = f.Close()
		}
	}()
	if err != nil {
		return fmt.Errorf("create output pipes: %w", err)
	}
	files := stdioFiles(ic, stdout, stderr)
	lim := i.startLimits()
	if h := i.b.take(); h != nil {
		err := i.startPooled(ctx, h, lim, ic, files)
		if err == nil || !errors.Is(err, errLost) || ctx.Err() != nil {
			return err
		}
		// It died while idle (or could not prepare): start one as if there
		// were no pool.
		i.b.log.Warn("pre-started sandbox helper failed; starting another", nimbus.LogInstance, i.spec.ID, nimbus.LogErr, err)
		if derr := h.destroy(); derr != nil {
			i.b.log.Warn("discard sandbox helper", nimbus.LogErr, derr)
		}
		i.h, i.cg = nil, nil
	}
	if i.h, err = i.b.newHelper(i.b.cgroupName(i.spec.ID), lim); err != nil {
		return err
	}
	i.cg = i.h.cg
	if err := i.run(ctx, ic, files); err != nil {
		return err
	}
	go i.reap()
	return nil
}

// run readies the network of the instance's helper and has it set up and
// exec the function (see helper.run).
func (i *instance) run(ctx context.Context, ic *initConfig, files []*os.File) error {
	ic, files, err := i.prepareNet(ic, files)
	if err != nil {
		return err
	}
	return i.h.run(ctx, ic, files)
}

// startPooled gives the instance h, taken from the pool, with its cgroup
// set to lim. An error wrapping errLost means h died before it had ic;
// the caller may try another helper (i.h and i.cg are left set for abort).
func (i *instance) startPooled(ctx context.Context, h *helper, lim limits, ic *initConfig, files []*os.File) error {
	i.h, i.cg = h, h.cg
	if i.cg != nil {
		if err := i.cg.assign(lim); err != nil {
			return fmt.Errorf("set cgroup limits: %w", err)
		}
	}
	if err := i.run(ctx, ic, files); err != nil {
		return err
	}
	go i.reap()
	return nil
}

// stdioFiles returns the files to send the helper for stdout and stderr
// (nil: /dev/null) and sets ic.Stdio to match.
func stdioFiles(ic *initConfig, stdout, stderr *os.File) []*os.File {
	var files []*os.File
	for k, f := range []*os.File{stdout, stderr} {
		ic.Stdio[k] = -1
		switch {
		case f == nil:
		case k == 1 && f == stdout:
			ic.Stdio[1] = ic.Stdio[0]
		default:
			ic.Stdio[k] = len(files)
			files = append(files, f)
		}
	}
	return files
}

// abort undoes a failed start.
func (i *instance) abort() {
	if i.h != nil {
		i.h.kill()
		i.killRest()
		_ = i.h.cmd.Wait()
	}
	i.waitOutput()
	if i.taken != nil { // the caller never had it
		_ = i.taken.Close()
		i.taken = nil
	}
	i.cleanup()
}

// makeTmp creates Root/<id>/tmp, private to the instance's uid.
func (i *instance) makeTmp() (string, error) {
	i.dir = filepath.Join(i.b.cfg.Root, i.spec.ID)
	tmp := filepath.Join(i.dir, "tmp")
	if err := os.RemoveAll(i.dir); err != nil { // left by a crash
		return "", err
	}
	if err := os.Mkdir(i.dir, 0o711); err != nil {
		return "", err
	}
	if err := os.Mkdir(tmp, 0o700); err != nil {
		return "", err
	}
	if i.b.root {
		if err := os.Chown(tmp, i.uid, i.gid); err != nil {
			return "", err
		}
	}
	return tmp, nil
}

// withEnv returns env with key set to value.
func withEnv(env []string, key, value string) []string {
	out := make([]string, 0, len(env)+1)
	for _, kv := range env {
		if !strings.HasPrefix(kv, key+"=") {
			out = append(out, kv)
		}
	}
	return append(out, key+"="+value)
}

// outputs returns the files the helper gets as stdout and stderr: the
// spec's own when they are *os.File (or nil for nil), else pipes that
// copier goroutines drain into the spec's writers. One writer given for
// both gets one pipe, so it is never written concurrently. childEnds are
// to be closed once the helper has started.
func (i *instance) outputs() (stdout, stderr *os.File, childEnds []*os.File, err error) {
	stdout, err = i.output(i.spec.Stdout, &childEnds)
	if err != nil {
		return nil, nil, childEnds, err
	}
	if sameWriter(i.spec.Stdout, i.spec.Stderr) {
		return stdout, stdout, childEnds, nil
	}
	stderr, err = i.output(i.spec.Stderr, &childEnds)
	return stdout, stderr, childEnds, err
}

// output returns the child's file for w.
func (i *instance) output(w io.Writer, childEnds *[]*os.File) (*os.File, error) {
	switch f := w.(type) {
	case nil:
		return nil, nil
	case *os.File:
		return f, nil
	}
	r, pw, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	*childEnds = append(*childEnds, pw)
	i.drain(r, w)
	return pw, nil
}

// drainTo copies a zygote's output from r, the read end of its pipe, to
// w (nil: discarded), as drain does; a file is written through a copy of
// its own, since the caller may close w once Start returned (the file is
// what the child writes, on the ordinary path).
func (i *instance) drainTo(r *os.File, w io.Writer) error {
	if f, ok := w.(*os.File); ok {
		fd, err := unix.FcntlInt(f.Fd(), unix.F_DUPFD_CLOEXEC, 0)
		if err != nil {
			_ = r.Close()
			return op("copy output file", err)
		}
		own := os.NewFile(uintptr(fd), f.Name())
		i.drain(r, own)
		i.readers = append(i.readers, own) // closed with the pipes
		return nil
	}
	i.drain(r, w)
	return nil
}

// Output implements sandbox.OutputSource.
func (i *instance) Output() *os.File { return i.taken }

// drain copies the instance's output from r, the read end of a pipe, to w
// (nil: discarded) until the pipe's last writer closes it; the instance
// owns r from now on.
func (i *instance) drain(r *os.File, w io.Writer) {
	if w == nil {
		w = io.Discard
	}
	i.readers = append(i.readers, r)
	i.copiers.Add(1)
	go func() {
		defer i.copiers.Done()
		if _, err := io.Copy(w, r); err != nil {
			_, _ = io.Copy(io.Discard, r) // a failing writer must not block the function
		}
	}()
}

// sameWriter reports whether a and b are the same writer.
func sameWriter(a, b io.Writer) bool {
	if a == nil || b == nil {
		return false
	}
	t := reflect.TypeOf(a)
	return t == reflect.TypeOf(b) && t.Comparable() && a == b
}

// waitOutput waits for the copiers to drain the output pipes, closing them
// after outputGrace, and closes them.
func (i *instance) waitOutput() {
	drained := make(chan struct{})
	go func() {
		i.copiers.Wait()
		close(drained)
	}()
	select {
	case <-drained:
	case <-time.After(outputGrace):
		i.b.log.Warn("instance output still open after exit; closing it", nimbus.LogInstance, i.spec.ID)
		for _, r := range i.readers {
			_ = r.Close()
		}
		<-drained
	}
	for _, r := range i.readers {
		_ = r.Close()
	}
}

// reap waits for the function to exit, kills whatever it left, collects
// the exit reason and releases the instance's resources.
func (i *instance) reap() {
	pid := i.h.cmd.Process.Pid
	waitExited(pid)
	i.mu.Lock()
	i.exited = true
	i.mu.Unlock()
	// The function is a zombie until Wait: its pid and process group cannot
	// be reused while the rest is killed.
	_ = syscall.Kill(-pid, syscall.SIGKILL)
	i.killRest()
	err := i.reason(i.h.cmd.Wait())
	i.waitOutput()
	i.cleanup()
	i.mu.Lock()
	i.err = err
	i.mu.Unlock()
	close(i.done)
}

// waitExited waits until process pid has exited, without reaping it.
func waitExited(pid int) {
	var info unix.Siginfo
	for {
		err := unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOWAIT, nil)
		if err != unix.EINTR {
			return
		}
	}
}

// killRest kills the processes the function left behind, until none is
// left: through the cgroup, or by uid without one.
func (i *instance) killRest() {
	switch {
	case i.cg != nil:
		if !i.cg.killAll() {
			i.b.log.Warn("instance processes survive kill", nimbus.LogInstance, i.spec.ID)
		}
	case i.b.root:
		deadline := time.Now().Add(drainTimeout)
		for killUID(i.uid) && time.Now().Before(deadline) {
			time.Sleep(drainPoll)
		}
	}
}

// reason turns the function's exit into Err's value.
func (i *instance) reason(waitErr error) error {
	var ee *exec.ExitError
	if waitErr == nil {
		return nil
	}
	if !errors.As(waitErr, &ee) {
		return fmt.Errorf("wait: %w", waitErr)
	}
	ws, _ := ee.Sys().(syscall.WaitStatus)
	if i.cg != nil && i.cg.oomKilled(ws.Signaled() && ws.Signal() == syscall.SIGKILL) {
		return fmt.Errorf("%w (limit %d MB)", sandbox.ErrOutOfMemory, i.spec.MemoryMB)
	}
	return ee
}

// cleanup removes the cgroup, the network and the tmp dir and frees the
// slot.
func (i *instance) cleanup() {
	if i.h != nil && i.h.link != nil {
		i.h.link.release()
	}
	if i.cg != nil {
		i.mu.Lock() // peak reads through a shared file handle
		i.peak, i.cgGone = i.cg.peak(), true
		i.mu.Unlock()
		if err := i.cg.remove(); err != nil {
			i.b.log.Warn("remove instance cgroup", nimbus.LogInstance, i.spec.ID, nimbus.LogErr, err)
		}
	}
	if i.dir != "" {
		if err := os.RemoveAll(i.dir); err != nil {
			i.b.log.Warn("remove instance dir", nimbus.LogInstance, i.spec.ID, nimbus.LogErr, err)
		}
	}
	i.b.release(i.slot, i.spec.ID)
}

// Done is closed when the instance has exited, everything it started is
// dead and its resources are released.
func (i *instance) Done() <-chan struct{} { return i.done }

// Err is the exit reason once Done is closed: nil for exit status 0, an
// error wrapping sandbox.ErrOutOfMemory if the kernel killed a process of
// the instance for exceeding the memory limit, else an *exec.ExitError
// ("exit status 3", "signal: killed").
func (i *instance) Err() error {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.err
}

// Kill sends SIGKILL to every process of the instance. It is safe to call
// more than once and after exit; it does not wait for Done.
// Signal implements sandbox.Signaler: sig goes to the function's process
// (the program the instance exec'd), not to what it started.
func (i *instance) Signal(sig syscall.Signal) error {
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.exited {
		return nil
	}
	// The function has not been reaped: its pid is still its own.
	return i.h.cmd.Process.Signal(sig)
}

func (i *instance) Kill() {
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.exited {
		return
	}
	i.killed = true
	// The function has not been reaped: its pid and group are still its own.
	pid := i.h.cmd.Process.Pid
	_ = syscall.Kill(-pid, syscall.SIGKILL)
	_ = i.h.cmd.Process.Kill() // with a pid namespace, this kills it all
	switch {
	case i.cg != nil:
		i.cg.signal()
	case i.b.root:
		killUID(i.uid)
	}
}

// Freeze stops every process of the instance, through its cgroup's
// freezer, until Thaw (sandbox.Freezer). It returns errors.ErrUnsupported
// without a freezer, and nil once the instance has exited or is being
// killed.
func (i *instance) Freeze() error { return i.setFrozen(true) }

// Thaw lets the processes Freeze stopped run again.
func (i *instance) Thaw() error { return i.setFrozen(false) }

func (i *instance) setFrozen(frozen bool) error {
	i.mu.Lock()
	defer i.mu.Unlock()
	switch {
	case i.cg == nil || !i.cg.cg.freeze:
		return errors.ErrUnsupported
	case i.exited || i.killed || i.cgGone:
		return nil
	}
	return i.cg.setFrozen(frozen)
}

// startLimits are the limits the instance's cgroup starts with: its own,
// at one CPU's weight until InitDone.
func (i *instance) startLimits() limits {
	i.initCPU = true
	return limits{memoryMB: i.spec.MemoryMB, pids: i.spec.PidsMax, initCPU: true}
}

// InitDone gives the instance the CPU weight of its memory, after its
// initialisation ran at one CPU's (sandbox.Initializer).
func (i *instance) InitDone() error {
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.cg == nil || !i.initCPU || i.exited || i.cgGone || i.spec.MemoryMB == 0 {
		return nil
	}
	i.initCPU = false
	return i.cg.setCPU(i.spec.MemoryMB)
}

// Served has the pool refilled, if take deferred it, once an instance on
// a pre-started helper has answered its first request
// (sandbox.Initializer): the new helper's start no longer competes with
// that request. The engine calls it once per instance; another call only
// asks again for a refill, which does nothing while the pool is full or
// filling.
func (i *instance) Served() {
	if i.h != nil && i.h.pooled {
		i.b.refill()
	}
}

// MaxMemoryBytes reports the peak memory of the instance's cgroup (0
// without a memory cgroup).
func (i *instance) MaxMemoryBytes() int64 {
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.cg == nil || i.cgGone {
		return i.peak
	}
	return i.cg.peak()
}

// UID implements sandbox.Instance.
func (i *instance) UID() int {
	if !i.b.root {
		return -1
	}
	return i.uid
}

// TmpDir is the host path of the instance's /tmp. With a mount namespace it
// is reached through /proc/<pid>/root and valid only until Done is closed.
func (i *instance) TmpDir() string {
	if i.b.mountNS() {
		return fmt.Sprintf("/proc/%d/root/tmp", i.h.cmd.Process.Pid)
	}
	return filepath.Join(i.dir, "tmp")
}

// killUID sends SIGKILL to every live process whose real, effective or saved
// uid is uid, and reports whether it found any.
func killUID(uid int) bool {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return false
	}
	found := false
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		status, err := os.ReadFile("/proc/" + e.Name() + "/status")
		if err != nil || !statusMatches(string(status), uid) {
			continue
		}
		_ = syscall.Kill(pid, syscall.SIGKILL)
		found = true
	}
	return found
}

// statusMatches reports whether a /proc/<pid>/status describes a live (not
// zombie) process with uid among its real, effective and saved uids.
func statusMatches(status string, uid int) bool {
	live, match := true, false
	for line := range strings.Lines(status) {
		k, v, _ := strings.Cut(strings.TrimSpace(line), ":")
		f := strings.Fields(v)
		switch {
		case k == "State" && len(f) > 0:
			live = f[0] != "Z" && f[0] != "X"
		case k == "Uid" && len(f) >= 3:
			for _, s := range f[:3] {
				if n, err := strconv.Atoi(s); err == nil && n == uid {
					match = true
				}
			}
		}
	}
	return live && match
}
