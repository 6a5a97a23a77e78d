package process

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/sandbox"
	"golang.org/x/sys/unix"
)

// Zygotes (sandbox.Zygote): for each of Config.Zygotes the backend keeps
// Config.ZygotesEach started ahead of demand. A zygote is a pre-started helper that was
// given a uid slot and an initConfig as any instance's, without code or
// layers, for the egress network, with the default /tmp size and a
// placeholder hostname; it set up the root, dropped to the slot's uid,
// installed the seccomp filter and exec'd the zygote's program, which
// waits on its standard input for its instance.
//
// Start gives an instance whose Spec.Zygote equals a ready zygote's
// program that zygote, unless the instance runs on the host's network (a
// zygote's network namespace is its own for good) or its code or layers
// are visible in the root (under a system directory, where a zygote would
// not hide them). Then, before the zygote hears of its instance, the
// backend sets its cgroup's limits, readies its network (egress or none)
// and calls Spec.Prepare as for any instance, and finishes its sandbox
// from a thread of its own that joins the zygote's mount and UTS
// namespaces (enterZygote): the code (and layers) bound read-only at
// /var/task (and /opt) as detached clones of their host directories, /tmp
// and /dev/shm resized to Spec.TmpMB, an /etc/hostname and /etc/hosts
// of its own bound over the zygote's (files made under Root, removed
// once bound), the code also at Spec.CodeAlso when set (its mount point
// made in the root, read-only again at once), and the hostname set to the
// instance's. Only the zygote's own program has run
// there, and it may not mount, so that namespace holds nothing the
// function made. A zygote is used once: it becomes its instance and dies
// with it; the next is started behind it.

// zygote is a ready zygote.
type zygote struct {
	h    *helper
	in   *net.UnixConn // this end of its standard input
	out  *os.File      // the read end of its stdout and stderr, one pipe
	slot int
}

// zygotes holds the ready zygotes of a Backend.
type zygotes struct {
	mu      sync.Mutex
	ready   [][]*zygote // by index in Config.Zygotes, oldest first
	filling []bool      // by index: a fill goroutine runs
	closed  bool
	wg      sync.WaitGroup // the fill goroutines
	// assigned counts the zygotes that became instances.
	assigned atomic.Int64
}

// zygotesOn reports whether the backend keeps zygotes: it has some to
// keep, gives instances a root of their own and runs as root (so that it
// may join their namespaces).
func (b *Backend) zygotesOn() bool {
	return len(b.cfg.Zygotes) > 0 && b.ownRoot() && b.root
}

// fillZygotesLocked starts a fill goroutine for each zygote of which
// fewer than Config.ZygotesEach are ready and none is being started: one
// start at a time per program, so that refilling after a burst of cold
// starts does not compete with them for the CPU all at once. b.zyg.mu
// must be held.
func (b *Backend) fillZygotesLocked() {
	zs := &b.zyg
	if zs.closed || !b.zygotesOn() {
		return
	}
	if zs.ready == nil {
		zs.ready = make([][]*zygote, len(b.cfg.Zygotes))
		zs.filling = make([]bool, len(b.cfg.Zygotes))
	}
	for k := range b.cfg.Zygotes {
		if len(zs.ready[k]) < b.cfg.ZygotesEach && !zs.filling[k] {
			zs.filling[k] = true
			zs.wg.Add(1)
			go b.fillZygote(k)
		}
	}
}

// fillZygote starts a zygote of Config.Zygotes[k]. A failure is logged;
// the next take tries again.
func (b *Backend) fillZygote(k int) {
	zs := &b.zyg
	defer zs.wg.Done()
	z, err := b.startZygote(b.cfg.Zygotes[k])
	zs.mu.Lock()
	zs.filling[k] = false
	closed := zs.closed
	if err == nil && !closed {
		zs.ready[k] = append(zs.ready[k], z)
		b.fillZygotesLocked() // the next, up to ZygotesEach
	}
	zs.mu.Unlock()
	switch {
	case err != nil:
		b.log.Warn("pre-start zygote", "path", b.cfg.Zygotes[k].Path, nimbus.LogErr, err)
	case closed:
		b.discard(z)
	}
}

// takeZygote returns a ready zygote for spec, or nil if the spec names
// none, may not have one, or none is ready; it has the zygotes refilled.
// A zygote's stdout and stderr are one pipe: a spec with two writers
// takes the ordinary path.
func (b *Backend) takeZygote(spec *sandbox.Spec) *zygote {
	oneOutput := spec.Stdout == nil || spec.Stderr == nil || sameWriter(spec.Stdout, spec.Stderr)
	if spec.Zygote == nil || spec.RootFS != "" || spec.RuntimeDir != spec.Zygote.RuntimeDir || !b.zygotesOn() || !oneOutput ||
		b.netOn() && spec.Network == sandbox.NetworkHost ||
		b.inRoot(spec.CodeDir) || b.inRoot(spec.OptDir) {
		return nil
	}
	zs := &b.zyg
	zs.mu.Lock()
	defer zs.mu.Unlock()
	defer b.fillZygotesLocked()
	for k, z := range b.cfg.Zygotes {
		if z.Equal(spec.Zygote) && zs.ready != nil && len(zs.ready[k]) > 0 {
			got := zs.ready[k][0]
			zs.ready[k] = zs.ready[k][1:]
			return got
		}
	}
	return nil
}

// inRoot reports whether host path dir is visible in an instance's root:
// under one of the system directories bound there.
func (b *Backend) inRoot(dir string) bool {
	for _, p := range rootPaths(b.cfg.SystemPaths) {
		if dir != "" && within(dir, p) {
			return true
		}
	}
	return false
}

// closeZygotes kills the ready zygotes and waits for those being started.
func (b *Backend) closeZygotes(ctx context.Context) error {
	zs := &b.zyg
	zs.mu.Lock()
	zs.closed = true
	ready := zs.ready
	zs.ready = nil
	zs.mu.Unlock()
	var errs []error
	for _, zs := range ready {
		for _, z := range zs {
			errs = append(errs, b.discard(z))
		}
	}
	if err := waitGroup(ctx, &zs.wg); err != nil {
		errs = append(errs, fmt.Errorf("sandbox close: a zygote was still starting: %w", err))
	}
	return errors.Join(errs...)
}

// startZygote starts a zygote of z in a new helper and slot, and waits
// until it has exec'd z's program.
func (b *Backend) startZygote(z *sandbox.Zygote) (_ *zygote, err error) {
	slot, err := b.acquire("")
	if err != nil {
		return nil, err
	}
	h, err := b.newHelper(b.cgroupName("~zygote"+strconv.FormatInt(poolSeq.Add(1), 10)), limits{})
	if err != nil {
		b.release(slot, "")
		return nil, err
	}
	zg := &zygote{h: h, slot: slot}
	defer func() {
		if err != nil {
			err = errors.Join(err, b.discard(zg))
		}
	}()
	in, theirs, err := socketPair("zygote-in")
	if err != nil {
		return nil, fmt.Errorf("zygote socket: %w", err)
	}
	defer theirs.Close()
	zg.in = in
	// Its output goes to a pipe from the start: its instance's output is
	// drained from there, so that no file need be passed to it.
	out, w, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("zygote output: %w", err)
	}
	defer w.Close()
	zg.out = out
	ic := b.initConfig(sandbox.Spec{ID: "zygote", Path: z.Path, Args: z.Args, Env: z.Env, RuntimeDir: z.RuntimeDir, TmpMB: DefaultTmpMB}, slot)
	ic.Stdio, ic.Stdin = [2]int{1, 1}, 0
	ctx, cancel := context.WithTimeout(context.Background(), probeTimeout)
	defer cancel()
	if err := h.run(ctx, ic, []*os.File{theirs, w}); err != nil {
		return nil, err
	}
	// Until it is initialised, it reads its files (and their directories'
	// access times change): the root could not be made read-only again.
	_ = in.SetReadDeadline(time.Now().Add(probeTimeout))
	var ready [1]byte
	if _, err := io.ReadFull(in, ready[:]); err != nil || ready[0] != readyByte {
		return nil, fmt.Errorf("zygote did not report ready: %q, %v", ready[0], err)
	}
	_ = in.SetReadDeadline(time.Time{})
	return zg, nil
}

// discard kills zygote z and frees what it held.
func (b *Backend) discard(z *zygote) error {
	err := z.h.destroy()
	if z.in != nil {
		_ = z.in.Close()
	}
	if z.out != nil {
		_ = z.out.Close()
	}
	b.release(z.slot, "")
	return err
}

// fromZygote starts the instance of spec in zygote z. An error wrapping
// errLost means z died before it had the instance: Start may start it
// otherwise.
func (b *Backend) fromZygote(ctx context.Context, spec sandbox.Spec, z *zygote) (sandbox.Instance, error) {
	if err := b.claim(spec.ID); err != nil {
		if derr := b.discard(z); derr != nil {
			b.log.Warn("discard zygote", nimbus.LogErr, derr)
		}
		return nil, err
	}
	i := &instance{
		b: b, spec: spec, slot: z.slot, uid: b.cfg.UID + z.slot, gid: b.cfg.GID + z.slot,
		done: make(chan struct{}),
	}
	if err := i.assign(ctx, z); err != nil {
		return nil, fmt.Errorf("start instance %s: %w", spec.ID, err)
	}
	b.zyg.assigned.Add(1)
	return i, nil
}

// assign makes zygote z the instance (see the comment at the top). On
// failure it undoes everything and releases the slot.
func (i *instance) assign(ctx context.Context, z *zygote) (err error) {
	i.h, i.cg = z.h, z.h.cg
	defer z.in.Close()
	defer func() {
		if err != nil {
			i.abort()
		}
	}()
	stop := context.AfterFunc(ctx, func() { _ = z.in.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	lim := i.startLimits()
	if i.cg != nil {
		if err := i.cg.assign(lim); err != nil {
			return fmt.Errorf("set cgroup limits: %w", err)
		}
	}
	// takeZygote gave it a spec with one writer for both (or none).
	if i.spec.TakeOutput {
		i.taken, z.out = z.out, nil
	} else if err := i.drainTo(z.out, cmp.Or(i.spec.Stdout, i.spec.Stderr)); err != nil {
		return err
	}
	ic, files, err := i.prepareNet(&initConfig{Env: i.spec.Env}, nil)
	if err != nil {
		return err
	}
	if err := i.b.enterZygote(i.h.cmd.Process.Pid, i.spec, i.slot); err != nil {
		// It has not heard of the instance: another start path may do.
		return lost(fmt.Errorf("finish zygote's sandbox: %w", err))
	}
	zc := sandbox.ZygoteConfig{
		Path: i.spec.Path, Args: i.spec.Args, Env: append([]string{}, ic.Env...), // [], not null
		Dir: sandbox.PathsOf(i.b, i.spec).TaskRoot,
	}
	if err := sendMsg(z.in, zc, files); err != nil {
		return lost(fmt.Errorf("send zygote its instance: %w", err))
	}
	status, err := io.ReadAll(z.in)
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if err := zygoteResult(status, err); err != nil {
		return err
	}
	go i.reap()
	return nil
}

// zygoteResult interprets what a zygote wrote after it was sent its
// instance: ackByte once it had it, then nothing (it runs as the
// instance) or an initError.
func zygoteResult(status []byte, ioErr error) error {
	rest, acked := bytes.CutPrefix(status, []byte{ackByte})
	if !acked {
		if err := helperResult(status, ioErr); err != nil {
			return lost(err)
		}
		return lost(errors.New("zygote exited before it had its instance"))
	}
	return helperResult(rest, ioErr)
}

// enterZygote finishes the sandbox of zygote pid for the instance of
// spec, in slot, from within its namespaces (see the comment at the top).
func (b *Backend) enterZygote(pid int, spec sandbox.Spec, slot int) error {
	in := sandbox.PathsOf(b, spec)
	var trees []kept // fd: a detached clone of Source, to be bound at Target
	defer func() {
		for _, t := range trees {
			_ = unix.Close(t.fd)
		}
	}()
	codeAlso := ""
	if spec.CodeAlso != "" && spec.CodeDir != "" {
		codeAlso = spec.CodeAlso
	}
	for _, d := range []bind{{spec.CodeDir, in.TaskRoot}, {spec.OptDir, in.Opt}, {spec.CodeDir, codeAlso}} {
		if d.Source == "" || d.Target == "" {
			continue
		}
		fd, err := cloneReadOnly(d.Source)
		if err != nil {
			return err
		}
		trees = append(trees, kept{bind: d, fd: fd})
	}
	ic := b.initConfig(spec, slot)
	for _, name := range []string{"hosts", "hostname"} {
		// A mount of an unlinked file cannot be moved: it is removed once bound.
		path, err := b.etcFile(etcFiles(ic)[name])
		if err != nil {
			return err
		}
		defer os.Remove(path)
		fd, err := cloneReadOnly(path)
		if err != nil {
			return err
		}
		trees = append(trees, kept{bind: bind{Source: "/etc/" + name, Target: "/etc/" + name}, fd: fd})
	}
	return inNamespaces(pid, func() error {
		if codeAlso != "" {
			// The zygote's root has no mount point there: it is made
			// in the root, read-only again at once (only the zygote's own
			// program has run, and it waits for its instance).
			if err := unix.Mount("", "/", "", unix.MS_REMOUNT|unix.MS_NOSUID|unix.MS_NODEV, ""); err != nil {
				return op("remount the root to make "+codeAlso, err)
			}
			err := os.Mkdir(codeAlso, 0o755)
			if rerr := remountReadOnly("/", unix.MS_NOSUID|unix.MS_NODEV); rerr != nil {
				return rerr
			}
			if err != nil && !errors.Is(err, fs.ErrExist) {
				return op("make "+codeAlso, err)
			}
		}
		for _, t := range trees {
			if err := unix.MoveMount(t.fd, "", unix.AT_FDCWD, t.Target, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
				return op("bind "+t.Source+" at "+t.Target, err)
			}
		}
		if spec.Network == sandbox.NetworkNone && b.resolvFor(sandbox.NetworkEgress) != "" {
			// The egress resolv.conf covers the host's, which none has.
			if err := unix.Unmount("/etc/resolv.conf", unix.MNT_DETACH); err != nil {
				return op("unmount /etc/resolv.conf", err)
			}
		}
		if err := resizeTmp(spec.TmpMB); err != nil {
			return err
		}
		if ic.Hostname != "" {
			return op("set hostname", unix.Sethostname([]byte(ic.Hostname)))
		}
		return nil
	})
}

// etcFile writes content to a new file under Root, readable by all, and
// returns its path.
func (b *Backend) etcFile(content string) (string, error) {
	f, err := os.CreateTemp(b.cfg.Root, "etc-")
	if err != nil {
		return "", op("write etc file", err)
	}
	_, err = f.WriteString(content)
	err = errors.Join(err, f.Chmod(0o644), f.Close())
	if err != nil {
		_ = os.Remove(f.Name())
		return "", op("write etc file", err)
	}
	return f.Name(), nil
}

// cloneReadOnly returns a detached clone of the mount at host path src
// (open_tree), read-only, nosuid and nodev.
func cloneReadOnly(src string) (int, error) {
	fd, err := unix.OpenTree(unix.AT_FDCWD, src, unix.OPEN_TREE_CLONE|unix.O_CLOEXEC)
	if err != nil {
		return -1, op("clone "+src, err)
	}
	attr := unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY | unix.MOUNT_ATTR_NOSUID | unix.MOUNT_ATTR_NODEV}
	if err := unix.MountSetattr(fd, "", unix.AT_EMPTY_PATH, &attr); err != nil {
		_ = unix.Close(fd)
		return -1, op("make "+src+" read-only", err)
	}
	return fd, nil
}

// nsKind is a kind of namespace: its name in /proc/<pid>/ns and its flag.
type nsKind struct {
	name string
	flag int
}

// nsKinds are the namespaces inNamespaces joins.
var nsKinds = []nsKind{{"mnt", unix.CLONE_NEWNS}, {"uts", unix.CLONE_NEWUTS}}

// nsJob is a function to run in the namespaces of a process.
type nsJob struct {
	ns   []*os.File // by nsKinds
	f    func() error
	done chan error
}

var (
	nsOnce sync.Once
	nsJobs chan nsJob
)

// inNamespaces runs f on a thread that has joined the mount and UTS
// namespaces of process pid, and returns its error.
//
// That thread is one for the whole process, locked to a goroutine that
// never ends (nsWorker): a thread that ends sends the parent-death signal
// to every process it forked, and the runtime may have forked helpers of
// running instances on the thread a goroutine locks; so none is ever
// left to end.
func inNamespaces(pid int, f func() error) error {
	nsOnce.Do(func() {
		nsJobs = make(chan nsJob)
		ready := make(chan struct{})
		go nsWorker(ready)
		<-ready
	})
	job := nsJob{f: f, done: make(chan error, 1)}
	defer func() {
		for _, ns := range job.ns {
			_ = ns.Close()
		}
	}()
	for _, k := range nsKinds {
		ns, err := os.Open("/proc/" + strconv.Itoa(pid) + "/ns/" + k.name)
		if err != nil {
			return op("open namespace", err)
		}
		job.ns = append(job.ns, ns)
	}
	nsJobs <- job
	return <-job.done
}

// nsWorker runs the jobs of inNamespaces on its locked thread, forever:
// it joins a job's namespaces, runs it and returns to its own. A thread
// that cannot return stops taking jobs (they fail).
func nsWorker(ready chan<- struct{}) {
	runtime.LockOSThread() // never unlocked (see inNamespaces)
	home, err := ownNamespaces()
	close(ready)
	for job := range nsJobs {
		if err != nil {
			job.done <- fmt.Errorf("namespace thread: %w", err)
			continue
		}
		var ferr error
		for n, k := range nsKinds {
			if ferr = unix.Setns(int(job.ns[n].Fd()), k.flag); ferr != nil {
				ferr = op("join "+k.name+" namespace", ferr)
				break
			}
		}
		if ferr == nil {
			ferr = job.f()
		}
		for n, k := range nsKinds {
			if serr := unix.Setns(int(home[n].Fd()), k.flag); serr != nil && err == nil {
				err = op("return to own "+k.name+" namespace", serr)
			}
		}
		job.done <- ferr
	}
}

// ownNamespaces unshares the calling thread's root and working directory
// (a thread that shares them may not join a mount namespace) and returns
// its namespaces, by nsKinds.
func ownNamespaces() ([]*os.File, error) {
	if err := unix.Unshare(unix.CLONE_FS); err != nil {
		return nil, op("unshare fs", err)
	}
	var home []*os.File
	for _, k := range nsKinds {
		ns, err := os.Open("/proc/thread-self/ns/" + k.name)
		if err != nil {
			return nil, op("open own namespace", err)
		}
		home = append(home, ns)
	}
	return home, nil
}
