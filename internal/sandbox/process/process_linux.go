package process

import (
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/sandbox"
	"golang.org/x/sys/unix"
)

// probeTimeout bounds New's trial run of the init helper.
const probeTimeout = 30 * time.Second

// namespaces are the namespaces an instance gets where the host allows them.
var namespaces = []struct {
	flag uintptr
	name string
}{
	{syscall.CLONE_NEWPID, "pid"},
	{syscall.CLONE_NEWNS, "mount"},
	{syscall.CLONE_NEWIPC, "ipc"},
	{syscall.CLONE_NEWUTS, "uts"},
	{syscall.CLONE_NEWNET, "network"},
}

// Backend starts instances as processes. It is safe for concurrent use.
type Backend struct {
	cfg  Config
	log  *slog.Logger
	exe  string
	hide []string // cfg.HidePaths and cfg.Root
	// root: this process runs as root, so instances get ids of their own.
	root bool
	// flags are the clone flags in force.
	flags uintptr
	// mountPoints: sandbox.TaskRoot and sandbox.RuntimeRoot exist on the
	// host, so that instances with a mount namespace see their code and
	// runtime there.
	mountPoints bool
	// cg is nil when no cgroup controller can be used.
	cg *cgroups
	// seccomp: instances run under the system call filter
	// (seccomp_linux.go).
	seccomp bool
	// rootfs: instances get a root of their own (rootfs_linux.go); it
	// needs a mount namespace.
	rootfs bool
	// imageBinds: image instances' roots are built with a bind per entry
	// of the image, as where overlayfs is missing (initConfig.ImageBinds);
	// set by tests only.
	imageBinds bool
	// net is the network isolation; nil without (see netOn).
	net *network
	// missing lists the isolation features the host denies.
	missing []string

	mu    sync.Mutex
	slots []bool // in use, by slot
	next  int    // where the search for a free slot starts
	ids   map[string]bool

	pool pool
	zyg  zygotes

	// idLock holds this backend's claim on its uid range (see claimIDs)
	// until Close.
	idLock *os.File
}

// releaseIDs gives up the claim on the uid range.
func (b *Backend) releaseIDs() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.idLock != nil {
		b.idLock.Close()
		b.idLock = nil
	}
}

var (
	_ sandbox.Backend  = (*Backend)(nil)
	_ sandbox.Isolator = (*Backend)(nil)
	_ sandbox.Freezer  = (*instance)(nil)
)

// New checks the host and returns a Backend using whatever isolation it
// allows: it creates a probe cgroup in each hierarchy, tries each namespace
// and runs the init helper once. What is missing is logged once as a
// warning and shown by Describe; it is not an error. New fails if cfg is
// invalid, Root cannot be created, MaybeInit was not called in main, or the
// helper does not work even without namespaces. New starts filling the pool
// of pre-started helpers in the background; Close stops it.
func New(cfg Config) (*Backend, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if !initCalled.Load() {
		return nil, errors.New("process: MaybeInit must be called at the start of main (and TestMain)")
	}
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("process: find own executable: %w", err)
	}
	if err := os.MkdirAll(cfg.Root, 0o711); err != nil {
		return nil, fmt.Errorf("process: create root: %w", err)
	}
	// Instances without a mount namespace reach their tmp dir through it.
	if err := os.Chmod(cfg.Root, 0o711); err != nil {
		return nil, fmt.Errorf("process: create root: %w", err)
	}
	var idLock *os.File
	if os.Geteuid() == 0 {
		if idLock, err = claimIDs(&cfg); err != nil {
			return nil, fmt.Errorf("process: %w", err)
		}
	}
	b := &Backend{
		idLock: idLock,
		cfg:    cfg,
		log:    cfg.Logger,
		exe:    exe,
		hide:   append(append([]string(nil), cfg.HidePaths...), cfg.Root),
		root:   os.Geteuid() == 0,
		slots:  make([]bool, cfg.MaxInstances),
		ids:    make(map[string]bool),
	}
	if err := b.probe(); err != nil {
		b.releaseIDs()
		return nil, fmt.Errorf("process: %w", err)
	}
	if len(b.missing) > 0 {
		b.log.Warn("sandbox isolation is incomplete", "missing", strings.Join(b.missing, "; "))
	}
	b.pool.size = cfg.PoolSize
	b.pool.mu.Lock()
	b.fillLocked()
	b.pool.mu.Unlock()
	b.zyg.mu.Lock()
	b.fillZygotesLocked()
	b.zyg.mu.Unlock()
	return b, nil
}

// probe finds the cgroups and namespaces that work and runs the helper once
// with them.
func (b *Backend) probe() error {
	if !b.root {
		b.missing = append(b.missing, "a uid per instance (not root)")
	}
	cg := detectCgroups(b.cgroupName("probe"))
	b.missing = append(b.missing, cg.missing...)
	if cg.version != 0 {
		b.cg = cg
		if n := cg.sweep(); n > 0 {
			b.log.Info("removed cgroups left by an earlier run", "count", n)
		}
	}
	for _, ns := range namespaces {
		if err := probeCloneflag(ns.flag); err != nil {
			b.missing = append(b.missing, ns.name+" namespace ("+err.Error()+")")
			continue
		}
		b.flags |= ns.flag
	}
	b.probeNetwork()
	if b.mountNS() {
		if err := makeMountPoints(sandbox.TaskRoot, sandbox.RuntimeRoot); err != nil {
			b.missing = append(b.missing, "code at "+sandbox.TaskRoot+" ("+err.Error()+")")
		} else {
			b.mountPoints = true
		}
	}
	b.seccomp, b.rootfs = true, b.mountNS()
	if _, err := buildSeccomp(); err != nil {
		b.seccomp = false
		b.missing = append(b.missing, "seccomp filter ("+err.Error()+")")
	}
	err := b.probeRun()
	if errors.Is(err, errNetwork) {
		b.dropNetwork(err)
		err = b.probeRun()
	}
	for _, f := range []struct {
		on   *bool
		name string
	}{{&b.rootfs, "a root of its own"}, {&b.seccomp, "seccomp filter"}} {
		if err != nil && *f.on {
			*f.on = false
			b.missing = append(b.missing, f.name+" (init helper: "+err.Error()+")")
			err = b.probeRun()
		}
	}
	if err != nil && b.flags != 0 {
		b.missing = append(b.missing, "namespaces (init helper: "+err.Error()+")")
		b.flags, b.rootfs = 0, false
		b.dropNetwork(nil)
		err = b.probeRun()
	}
	if err != nil {
		return fmt.Errorf("init helper: %w", err)
	}
	return nil
}

// makeMountPoints makes sure each path (sandbox.TaskRoot and
// sandbox.RuntimeRoot) is a directory on the host, not a symbolic link,
// making empty ones where there are none, for instances' mount namespaces to
// bind their code and runtime on.
func makeMountPoints(paths ...string) error {
	for _, p := range paths {
		fi, err := os.Lstat(p)
		if errors.Is(err, fs.ErrNotExist) {
			err = os.MkdirAll(p, 0o755)
			fi, _ = os.Lstat(p)
		}
		if err != nil {
			return err
		}
		if fi == nil || !fi.IsDir() {
			return fmt.Errorf("%s is not a directory", p)
		}
	}
	return nil
}

// probeCloneflag reports whether this process may create a child in a new
// namespace of the given kind. The child execs a path that does not exist:
// ENOENT means the clone itself worked.
func probeCloneflag(flag uintptr) error {
	attr := &syscall.ProcAttr{Sys: &syscall.SysProcAttr{Cloneflags: flag}}
	pid, err := syscall.ForkExec("/nonexistent/nimbus-namespace-probe", []string{"probe"}, attr)
	if err == nil { // cannot happen; do not leave it running
		_ = syscall.Kill(pid, syscall.SIGKILL)
		_, _ = syscall.Wait4(pid, nil, 0, nil)
		return nil
	}
	if errors.Is(err, syscall.ENOENT) {
		return nil
	}
	return err
}

// probeRun starts the helper in probe mode, in a probe cgroup, with every
// feature in force, and waits for it. A cgroup that cannot take the helper
// disables cgroups.
func (b *Backend) probeRun() error {
	ctx, cancel := context.WithTimeout(context.Background(), probeTimeout)
	defer cancel()
	var g *cgroup
	if b.cg != nil {
		var err error
		if g, err = b.cg.create(b.cgroupName("probe"), limits{memoryMB: 256, pids: 64}); err != nil {
			b.disableCgroups(err)
		}
	}
	var stderr bytes.Buffer
	r, w, err := os.Pipe()
	if err != nil {
		return err
	}
	copied := make(chan struct{})
	go func() {
		_, _ = io.Copy(&stderr, io.LimitReader(r, 4096))
		_, _ = io.Copy(io.Discard, r)
		close(copied)
	}()
	h, err := b.spawn(w)
	_ = w.Close()
	if err == nil {
		if g != nil {
			if err := g.add(h.cmd.Process.Pid); err != nil {
				b.disableCgroups(err)
			}
		}
		err = b.probeLink(h)
		if err == nil {
			err = h.run(ctx, b.probeConfig(), nil)
		}
		if err != nil {
			h.kill()
		}
		if werr := h.cmd.Wait(); err == nil && werr != nil {
			err = fmt.Errorf("%w: %s", werr, bytes.TrimSpace(stderr.Bytes()))
		}
	}
	<-copied
	_ = r.Close()
	if g != nil {
		if rerr := g.remove(); rerr != nil {
			b.log.Warn("remove probe cgroup", nimbus.LogErr, rerr)
		}
	}
	return err
}

// probeConfig has the helper do everything an instance needs, with Root as
// code directory.
func (b *Backend) probeConfig() *initConfig {
	ic := b.initConfig(sandbox.Spec{ID: "probe", CodeDir: b.cfg.Root, RuntimeDir: b.cfg.Root, TmpMB: 1}, 0)
	ic.Probe = true
	ic.Stdio = [2]int{-1, -1}
	return ic
}

// disableCgroups stops using cgroups after one could not be used.
func (b *Backend) disableCgroups(err error) {
	b.cg = nil
	b.missing = append(b.missing, "cgroups ("+err.Error()+")")
}

// cgroupName names an instance's cgroup, unique on the host: other
// processes may use the same instance ids. An instance given a pre-started
// helper keeps the helper's cgroup, named for the pool ("~pool7").
func (b *Backend) cgroupName(id string) string {
	return fmt.Sprintf("nimbus.%d.%s", os.Getpid(), id)
}

// Describe says in one line which isolation features are in force.
func (b *Backend) Describe() string {
	parts := []string{"process sandbox", b.cg.describe()}
	var ns []string
	for _, n := range namespaces {
		if b.flags&n.flag != 0 {
			ns = append(ns, n.name)
		}
	}
	if len(ns) > 0 {
		parts = append(parts, "namespaces "+strings.Join(ns, ", "))
	} else {
		parts = append(parts, "no namespaces")
	}
	switch {
	case b.ownRoot():
		parts = append(parts, "a root of its own (read-only system directories, minimal /etc and /dev, private /tmp)")
	case b.mountNS():
		parts = append(parts, "private /tmp, hidden paths")
	default:
		parts = append(parts, "/tmp under Root without size limit, no hidden paths")
	}
	if b.netOn() {
		parts = append(parts, b.net.describe())
	} else {
		parts = append(parts, "every instance on the host's network")
	}
	if b.fixedPaths() {
		parts = append(parts, "code at "+sandbox.TaskRoot+", runtime at "+sandbox.RuntimeRoot)
	} else {
		parts = append(parts, "code and runtime at their host paths")
	}
	if b.root {
		parts = append(parts, fmt.Sprintf("uids %d-%d", b.cfg.UID, b.cfg.UID+b.cfg.MaxInstances-1))
	} else {
		parts = append(parts, fmt.Sprintf("every instance runs as uid %d", os.Geteuid()))
	}
	if b.cg != nil && b.cg.freeze {
		parts = append(parts, "frozen between invocations")
	}
	parts = append(parts, "no capabilities, no_new_privs")
	if b.seccomp {
		parts = append(parts, "seccomp filter")
	}
	if len(b.missing) > 0 {
		parts = append(parts, "missing: "+strings.Join(b.missing, "; "))
	}
	return strings.Join(parts, "; ")
}

// mountNS reports whether instances get a mount namespace.
func (b *Backend) mountNS() bool { return b.flags&syscall.CLONE_NEWNS != 0 }

// fixedPaths reports whether instances see their code at sandbox.TaskRoot
// and their runtime at sandbox.RuntimeRoot.
func (b *Backend) fixedPaths() bool { return b.mountNS() && (b.mountPoints || b.rootfs) }

// ownRoot reports whether instances get a root of their own.
func (b *Backend) ownRoot() bool { return b.mountNS() && b.rootfs }

// Isolation says what the backend enforces, given what New found the host
// allows (see Describe).
func (b *Backend) Isolation() sandbox.Isolation {
	mem := b.cg != nil && b.cg.has(ctlMemory)
	return sandbox.Isolation{
		FixedPaths:    b.fixedPaths(),
		ReadOnlyCode:  b.mountNS(),
		PrivateTmp:    b.mountNS(),
		HiddenPaths:   b.mountNS(),
		MemoryLimit:   mem,
		PidsLimit:     b.cg != nil && b.cg.has(ctlPids),
		OwnUser:       b.root,
		MinimalRoot:   b.ownRoot(),
		ImageRoot:     b.ownRoot(),
		Freeze:        b.cg != nil && b.cg.freeze,
		NoPrivileges:  true,
		SyscallFilter: b.seccomp,
		// A cgroup, a uid or a pid namespace finds every process.
		KillAll:          b.cg != nil || b.root || b.flags&syscall.CLONE_NEWPID != 0,
		NetworkIsolation: b.netOn(),
	}
}

// Start starts an instance of spec and returns once its program is running
// (exec succeeded). It gives the instance a pre-started helper if one is
// idle, else starts one. Errors: nimbus.ErrInvalid for a bad spec (wrapped in a
// *nimbus.UserError), nimbus.ErrConflict if an instance with spec.ID is
// running, nimbus.ErrThrottled if every uid slot is in use, ctx's error if
// ctx ends first. A program that cannot be executed gives an error naming
// the step and wrapping its errno ("exec /code/bootstrap: permission
// denied", matching fs.ErrPermission).
func (b *Backend) Start(ctx context.Context, spec sandbox.Spec) (sandbox.Instance, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := checkSpec(&spec); err != nil {
		return nil, err
	}
	if spec.RootFS != "" && !b.ownRoot() {
		return nil, fmt.Errorf("start instance %s: this sandbox cannot give an instance an image's root (it needs a mount namespace and a root of its own: %s): %w",
			spec.ID, b.Describe(), errors.ErrUnsupported)
	}
	if z := b.takeZygote(&spec); z != nil {
		inst, err := b.fromZygote(ctx, spec, z)
		if !errors.Is(err, errLost) || ctx.Err() != nil {
			return inst, err
		}
		b.log.Warn("zygote failed; starting the instance without", nimbus.LogInstance, spec.ID, nimbus.LogErr, err)
	}
	slot, err := b.acquire(spec.ID)
	if err != nil {
		return nil, err
	}
	i := &instance{
		b: b, spec: spec, slot: slot, uid: os.Geteuid(), gid: os.Getegid(),
		done: make(chan struct{}),
	}
	if b.root {
		i.uid, i.gid = b.cfg.UID+slot, b.cfg.GID+slot
	}
	if err := i.start(ctx); err != nil {
		return nil, fmt.Errorf("start instance %s: %w", spec.ID, err)
	}
	return i, nil
}

// checkSpec validates spec and fills in its defaults.
func checkSpec(spec *sandbox.Spec) error {
	if !validID(spec.ID) {
		return nimbus.Invalidf("instance id %q: want 1 to 128 letters, digits, '.', '-' or '_'", spec.ID)
	}
	if spec.Path == "" {
		return nimbus.Invalidf("instance %s: no program path", spec.ID)
	}
	var err error
	if spec.RootFS != "" {
		if spec.RootFS, err = checkDir(spec.ID, "image root", spec.RootFS); err != nil {
			return err
		}
		if spec.WorkDir == "" && spec.CodeDir == "" {
			spec.WorkDir = "/"
		}
	}
	if spec.WorkDir != "" && (!filepath.IsAbs(spec.WorkDir) || filepath.Clean(spec.WorkDir) != spec.WorkDir) {
		return nimbus.Invalidf("instance %s: working directory %q is not a clean absolute path", spec.ID, spec.WorkDir)
	}
	if spec.CodeDir != "" || spec.RootFS == "" {
		if spec.CodeDir, err = checkDir(spec.ID, "code", spec.CodeDir); err != nil {
			return err
		}
	}
	if spec.CodeAlso != "" && !validCodeAlso(spec.CodeAlso) {
		return nimbus.Invalidf("instance %s: second code path %q is not one clean component below / apart from the root's own directories", spec.ID, spec.CodeAlso)
	}
	if spec.RuntimeDir != "" {
		if spec.RuntimeDir, err = checkDir(spec.ID, "runtime", spec.RuntimeDir); err != nil {
			return err
		}
	}
	if spec.OptDir != "" {
		if spec.OptDir, err = checkDir(spec.ID, "layers", spec.OptDir); err != nil {
			return err
		}
	}
	if spec.Network, err = sandbox.ParseNetwork(string(spec.Network)); err != nil {
		return nimbus.Invalidf("instance %s: %v", spec.ID, err)
	}
	if spec.MemoryMB < 0 || spec.PidsMax < 0 || spec.TmpMB < 0 {
		return nimbus.Invalidf("instance %s: negative limit", spec.ID)
	}
	for _, s := range append(append([]string{spec.Path}, spec.Args...), spec.Env...) {
		if strings.IndexByte(s, 0) >= 0 {
			return nimbus.Invalidf("instance %s: NUL byte in path, argument or environment", spec.ID)
		}
	}
	if len(spec.Args) == 0 {
		spec.Args = []string{spec.Path}
	}
	if spec.PidsMax == 0 {
		spec.PidsMax = DefaultPidsMax
	}
	if spec.TmpMB == 0 {
		spec.TmpMB = DefaultTmpMB
	}
	return nil
}

// validCodeAlso reports whether p may be Spec.CodeAlso: one clean
// component below / that is not a directory the instance's root has of its
// own.
func validCodeAlso(p string) bool {
	name, ok := strings.CutPrefix(p, "/")
	if !ok || name == "" || strings.Contains(name, "/") || filepath.Clean(p) != p || name == "." || name == ".." {
		return false
	}
	for _, own := range append([]string{"etc", "dev", "proc", "tmp", "opt", "var", "sys", "run", "home", "root"}, systemDirs...) {
		if name == strings.TrimPrefix(own, "/") {
			return false
		}
	}
	return true
}

// checkDir checks that dir, the instance's code or runtime directory, is
// an absolute path to a directory other than /, and returns it cleaned.
func checkDir(id, what, dir string) (string, error) {
	if !filepath.IsAbs(dir) {
		return "", nimbus.Invalidf("instance %s: %s directory %q is not an absolute path", id, what, dir)
	}
	dir = filepath.Clean(dir)
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() || dir == "/" {
		return "", nimbus.Invalidf("instance %s: %s directory %q is not a directory below /", id, what, dir)
	}
	return dir, nil
}

// validID reports whether id can name a directory and a cgroup.
func validID(id string) bool {
	if id == "" || len(id) > 128 || id == "." || id == ".." {
		return false
	}
	for _, c := range id {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// acquire reserves id and a uid slot. Slots are handed out round robin, so
// a uid is reused as late as possible. A zygote's slot has no id ("")
// until claim gives it its instance's.
func (b *Backend) acquire(id string) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.ids[id] {
		return 0, nimbus.Errorf(nimbus.ErrConflict, "instance %s is running already", id)
	}
	for n := range len(b.slots) {
		s := (b.next + n) % len(b.slots)
		if !b.slots[s] {
			b.slots[s] = true
			b.next = s + 1
			if id != "" {
				b.ids[id] = true
			}
			return s, nil
		}
	}
	return 0, nimbus.Errorf(nimbus.ErrThrottled, "all %d instance slots are in use", len(b.slots))
}

// claim reserves id for the instance a zygote becomes.
func (b *Backend) claim(id string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.ids[id] {
		return nimbus.Errorf(nimbus.ErrConflict, "instance %s is running already", id)
	}
	b.ids[id] = true
	return nil
}

// release frees what acquire reserved.
func (b *Backend) release(slot int, id string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.slots[slot] = false
	delete(b.ids, id)
}

// initConfig is what the helper of an instance of spec, in slot, is told.
func (b *Backend) initConfig(spec sandbox.Spec, slot int) *initConfig {
	ic := &initConfig{
		Path: spec.Path, Args: spec.Args, Env: spec.Env,
		Dir:   cmp.Or(spec.WorkDir, sandbox.PathsOf(b, spec).TaskRoot),
		TmpMB: spec.TmpMB,
		Mount: b.mountNS(),
		Drop:  b.root, UID: b.cfg.UID + slot, GID: b.cfg.GID + slot,
		Seccomp: b.seccomp,
		Stdin:   -1,
		NetNS:   -1,
	}
	if ic.Mount {
		ic.Hide, ic.Binds = b.mounts(spec)
	}
	if b.ownRoot() {
		ic.Root = b.cfg.Root
		ic.Image, ic.ImageUser = spec.RootFS, spec.User
		ic.ImageBinds = spec.RootFS != "" && b.imageBinds
	}
	if b.flags&syscall.CLONE_NEWUTS != 0 {
		ic.Hostname = spec.ID[:min(len(spec.ID), 64)]
	}
	return ic
}

// mounts returns what an instance of spec with a mount namespace hides
// and binds: Config.HidePaths and Root; the code, runtime and layers
// directories, bound at sandbox.TaskRoot, sandbox.RuntimeRoot and
// sandbox.OptRoot (their host paths hidden), or bound back at their own paths without fixedPaths (so
// that they stay visible under a hidden path).
func (b *Backend) mounts(spec sandbox.Spec) (hide []string, binds []bind) {
	hide = slices.Clone(b.hide)
	in := sandbox.PathsOf(b, spec)
	for _, d := range []bind{{spec.CodeDir, in.TaskRoot}, {spec.RuntimeDir, in.RuntimeDir}, {spec.OptDir, in.Opt}} {
		if d.Source == "" {
			continue
		}
		binds = append(binds, d)
		if d.Target != d.Source {
			hide = append(hide, d.Source)
		}
	}
	if spec.CodeAlso != "" && spec.CodeDir != "" && b.ownRoot() {
		binds = append(binds, bind{spec.CodeDir, spec.CodeAlso})
	}
	if r := b.resolvFor(spec.Network); r != "" {
		binds = append(binds, bind{r, "/etc/resolv.conf"})
	}
	return hide, binds
}

// errLost marks a helper that died before it had its initConfig: the
// instance can be given another.
var errLost = errors.New("init helper failed before taking its config")

// helper is an init helper process, started and waiting for its config.
type helper struct {
	cmd *exec.Cmd
	ctl *net.UnixConn // this end of the control socket (see ctlFD)
	cg  *cgroup       // the cgroup it was placed in; nil without cgroups
	// link is its network namespace's veth pair; nil without network
	// isolation.
	link *nsLink
	// pooled: it came from the pool of pre-started helpers.
	pooled bool
}

// spawn starts the helper in the namespaces in force, in a process group of
// its own, killed if this process dies, and sends it its prepareConfig.
// stderr may be nil (/dev/null) until the helper gets the function's.
//
// The helper runs with GOMAXPROCS=1: it does one thing at a time, and its
// exec of the function must end its other threads first, each woken and
// scheduled to exit (4-5 threads against 6-7; a Go no-op's sandbox start,
// 30 cold starts each interleaved, median 3.27 against 3.71 ms). The
// function's environment is its own (TestEnvironment).
func (b *Backend) spawn(stderr *os.File) (*helper, error) {
	conn, child, err := socketPair("init-ctl")
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	defer child.Close() // the helper has its copy
	cmd := &exec.Cmd{
		Path:       b.exe,
		Args:       []string{initArg0},
		Env:        []string{initEnv + "=1", "GOMAXPROCS=1"},
		ExtraFiles: []*os.File{child},
		SysProcAttr: &syscall.SysProcAttr{
			Setpgid:    true,
			Pdeathsig:  syscall.SIGKILL,
			Cloneflags: b.flags,
		},
	}
	if stderr != nil {
		cmd.Stderr = stderr
	}
	if err := cmd.Start(); err != nil {
		_ = conn.Close()
		return nil, err
	}
	h := &helper{cmd: cmd, ctl: conn}
	prep := prepareConfig{Mount: b.mountNS(), Proc: b.mountNS() && b.flags&syscall.CLONE_NEWPID != 0, Seccomp: b.seccomp}
	if b.ownRoot() {
		prep.Root = &rootSpec{Dir: b.cfg.Root, System: rootPaths(b.cfg.SystemPaths), Proc: prep.Proc}
	}
	if err := h.send(prep, nil); err != nil {
		return nil, errors.Join(fmt.Errorf("send config: %w", err), h.destroy())
	}
	return h, nil
}

// socketPair returns the ends of a new unix stream socket pair, this
// process's and a child's, both close-on-exec.
func socketPair(name string) (*net.UnixConn, *os.File, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, err
	}
	own := os.NewFile(uintptr(fds[0]), name)
	conn, err := net.FileConn(own)
	_ = own.Close()
	if err != nil {
		_ = unix.Close(fds[1])
		return nil, nil, err
	}
	return conn.(*net.UnixConn), os.NewFile(uintptr(fds[1]), name), nil
}

// newHelper spawns a helper and places it in a new cgroup named name, with
// limits lim (when cgroups are in force).
func (b *Backend) newHelper(name string, lim limits) (*helper, error) {
	var g *cgroup
	if b.cg != nil {
		var err error
		if g, err = b.cg.create(name, lim); err != nil {
			return nil, fmt.Errorf("create cgroup: %w", err)
		}
	}
	h, err := b.spawn(nil)
	if err != nil {
		if g != nil {
			err = errors.Join(err, g.remove())
		}
		return nil, fmt.Errorf("start init helper: %w", err)
	}
	h.cg = g
	if g != nil {
		if err := g.add(h.cmd.Process.Pid); err != nil {
			return nil, errors.Join(fmt.Errorf("join cgroup: %w", err), h.destroy())
		}
	}
	if b.netOn() {
		if h.link, err = b.net.attach(h.cmd.Process.Pid); err != nil {
			return nil, errors.Join(fmt.Errorf("network: %w", err), h.destroy())
		}
	}
	return h, nil
}

// run waits until the helper is prepared, sends it ic with files (which
// ic.Stdio refers to) and waits until it has exec'd the function (or, in
// probe mode, exited), failed, or ctx ended; then it closes the control
// socket. The caller kills the helper on failure. An error wrapping errLost
// means the helper never acted on ic: it died, or failed to prepare, before
// it acknowledged it.
func (h *helper) run(ctx context.Context, ic *initConfig, files []*os.File) error {
	stop := context.AfterFunc(ctx, func() { _ = h.ctl.SetDeadline(time.Unix(1, 0)) })
	err := h.exchange(ic, files)
	stop()
	_ = h.ctl.Close()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

// exchange is run's conversation with the helper (see ctlFD).
func (h *helper) exchange(ic *initConfig, files []*os.File) error {
	if err := h.expect(readyByte); err != nil {
		return lost(err)
	}
	if err := h.send(ic, files); err != nil {
		return lost(fmt.Errorf("send config: %w", err))
	}
	if err := h.expect(ackByte); err != nil {
		return lost(err)
	}
	status, err := io.ReadAll(h.ctl)
	return helperResult(status, err)
}

// send sends the helper v, framed as readMsg reads it, with files.
func (h *helper) send(v any, files []*os.File) error { return sendMsg(h.ctl, v, files) }

// sendMsg sends v on c, framed as readMsg reads it, with files.
func sendMsg(c *net.UnixConn, v any, files []*os.File) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	msg := binary.BigEndian.AppendUint32(make([]byte, 0, 4+len(data)), uint32(len(data)))
	msg = append(msg, data...)
	var oob []byte
	if len(files) > 0 {
		fds := make([]int, len(files))
		for k, f := range files {
			fds[k] = int(f.Fd())
		}
		oob = unix.UnixRights(fds...)
	}
	n, _, err := c.WriteMsgUnix(msg, oob, nil)
	for _, f := range files {
		runtime.KeepAlive(f)
	}
	if err == nil && n < len(msg) { // larger than the socket buffer
		_, err = c.Write(msg[n:])
	}
	return err
}

// expect reads the helper's next progress byte, want. A failure report
// instead is returned as an error, and so is the end of the stream
// (errLost).
func (h *helper) expect(want byte) error {
	var b [1]byte
	n, err := h.ctl.Read(b[:])
	switch {
	case n == 1 && b[0] == want:
		return nil
	case n == 1:
		rest, err := io.ReadAll(h.ctl)
		if err := helperResult(append(b[:], rest...), err); err != nil {
			return err
		}
		return fmt.Errorf("init helper: unexpected %q", b[0])
	case err == io.EOF:
		return errLost
	default:
		return fmt.Errorf("talk to init helper: %w", err)
	}
}

// lost marks err as the failure of a helper that never acted on its
// initConfig.
func lost(err error) error {
	if errors.Is(err, errLost) {
		return err
	}
	return fmt.Errorf("%w: %w", errLost, err)
}

// helperResult interprets what the helper wrote to its control socket
// after a progress byte: an initError, or nothing (end of stream) once it
// has exec'd the function.
func helperResult(status []byte, ioErr error) error {
	if len(status) > 0 {
		var ie initError
		if err := json.Unmarshal(status, &ie); err != nil {
			return fmt.Errorf("init helper: %s", status)
		}
		return ie.err()
	}
	if ioErr != nil {
		return fmt.Errorf("talk to init helper: %w", ioErr)
	}
	return nil
}

// kill kills the helper and its process group. It must not be called once
// the helper has been reaped.
func (h *helper) kill() {
	_ = syscall.Kill(-h.cmd.Process.Pid, syscall.SIGKILL)
	_ = h.cmd.Process.Kill()
}

// destroy kills and reaps a helper that runs no instance, closes its
// control socket (if run has not) and removes its cgroup.
func (h *helper) destroy() error {
	h.kill()
	_ = h.cmd.Wait()
	_ = h.ctl.Close()
	if h.link != nil {
		h.link.release()
	}
	if h.cg != nil {
		return h.cg.remove()
	}
	return nil
}
