package process

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/sandbox"
)

// Log attribute keys.
const (
	logInstance = "instance"
	logError    = "error"
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
	// cg is nil when no cgroup controller can be used.
	cg *cgroups
	// missing lists the isolation features the host denies.
	missing []string

	mu    sync.Mutex
	slots []bool // in use, by slot
	next  int    // where the search for a free slot starts
	ids   map[string]bool
}

var _ sandbox.Backend = (*Backend)(nil)

// New checks the host and returns a Backend using whatever isolation it
// allows: it creates a probe cgroup in each hierarchy, tries each namespace
// and runs the init helper once. What is missing is logged once as a
// warning and shown by Describe; it is not an error. New fails if cfg is
// invalid, Root cannot be created, MaybeInit was not called in main, or the
// helper does not work even without namespaces.
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
	b := &Backend{
		cfg:   cfg,
		log:   cfg.Logger,
		exe:   exe,
		hide:  append(append([]string(nil), cfg.HidePaths...), cfg.Root),
		root:  os.Geteuid() == 0,
		slots: make([]bool, cfg.MaxInstances),
		ids:   make(map[string]bool),
	}
	if err := b.probe(); err != nil {
		return nil, fmt.Errorf("process: %w", err)
	}
	if len(b.missing) > 0 {
		b.log.Warn("sandbox isolation is incomplete", "missing", strings.Join(b.missing, "; "))
	}
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
	err := b.probeRun()
	if err != nil && b.flags != 0 {
		b.missing = append(b.missing, "namespaces (init helper: "+err.Error()+")")
		b.flags = 0
		err = b.probeRun()
	}
	if err != nil {
		return fmt.Errorf("init helper: %w", err)
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
	h, err := b.spawn(nil, w)
	_ = w.Close()
	if err == nil {
		if g != nil {
			if err := g.add(h.cmd.Process.Pid); err != nil {
				b.disableCgroups(err)
			}
		}
		err = h.run(ctx, b.probeConfig())
		if werr := h.cmd.Wait(); err == nil && werr != nil {
			err = fmt.Errorf("%w: %s", werr, bytes.TrimSpace(stderr.Bytes()))
		}
	}
	<-copied
	_ = r.Close()
	if g != nil {
		if rerr := g.remove(); rerr != nil {
			b.log.Warn("remove probe cgroup", logError, rerr)
		}
	}
	return err
}

// probeConfig has the helper do everything an instance needs, with Root as
// code directory.
func (b *Backend) probeConfig() *initConfig {
	ic := b.initConfig(sandbox.Spec{ID: "probe", CodeDir: b.cfg.Root, TmpMB: 1}, 0)
	ic.Probe = true
	return ic
}

// disableCgroups stops using cgroups after one could not be used.
func (b *Backend) disableCgroups(err error) {
	b.cg = nil
	b.missing = append(b.missing, "cgroups ("+err.Error()+")")
}

// cgroupName names an instance's cgroup, unique on the host: other
// processes may use the same instance ids.
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
	if b.mountNS() {
		parts = append(parts, "private /tmp, hidden paths")
	} else {
		parts = append(parts, "/tmp under Root without size limit, no hidden paths")
	}
	if b.root {
		parts = append(parts, fmt.Sprintf("uids %d-%d", b.cfg.UID, b.cfg.UID+b.cfg.MaxInstances-1))
	} else {
		parts = append(parts, fmt.Sprintf("every instance runs as uid %d", os.Geteuid()))
	}
	if len(b.missing) > 0 {
		parts = append(parts, "missing: "+strings.Join(b.missing, "; "))
	}
	return strings.Join(parts, "; ")
}

// mountNS reports whether instances get a mount namespace.
func (b *Backend) mountNS() bool { return b.flags&syscall.CLONE_NEWNS != 0 }

// Start starts an instance of spec and returns once its program is running
// (exec succeeded). Errors: nimbus.ErrInvalid for a bad spec (wrapped in a
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
	if !filepath.IsAbs(spec.CodeDir) {
		return nimbus.Invalidf("instance %s: code directory %q is not an absolute path", spec.ID, spec.CodeDir)
	}
	spec.CodeDir = filepath.Clean(spec.CodeDir)
	if fi, err := os.Stat(spec.CodeDir); err != nil || !fi.IsDir() {
		return nimbus.Invalidf("instance %s: code directory %q is not a directory", spec.ID, spec.CodeDir)
	}
	spec.ReadOnlyPaths = slices.Clone(spec.ReadOnlyPaths) // the caller's stays as it was
	for k, p := range spec.ReadOnlyPaths {
		if !filepath.IsAbs(p) {
			return nimbus.Invalidf("instance %s: read-only path %q is not an absolute path", spec.ID, p)
		}
		if _, err := os.Stat(p); err != nil {
			return nimbus.Invalidf("instance %s: read-only path %q does not exist", spec.ID, p)
		}
		spec.ReadOnlyPaths[k] = filepath.Clean(p)
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
// a uid is reused as late as possible.
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
			b.ids[id] = true
			return s, nil
		}
	}
	return 0, nimbus.Errorf(nimbus.ErrThrottled, "all %d instance slots are in use", len(b.slots))
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
		Path: spec.Path, Args: spec.Args, Env: spec.Env, Dir: spec.CodeDir,
		ReadOnly: spec.ReadOnlyPaths,
		TmpMB:    spec.TmpMB,
		Mount:    b.mountNS(),
		Proc:     b.mountNS() && b.flags&syscall.CLONE_NEWPID != 0,
		Drop:     b.root, UID: b.cfg.UID + slot, GID: b.cfg.GID + slot,
	}
	if ic.Mount {
		ic.Hide = b.hide
	}
	if b.flags&syscall.CLONE_NEWUTS != 0 {
		ic.Hostname = spec.ID[:min(len(spec.ID), 64)]
	}
	return ic
}

// helper is an init helper process, started and waiting for its config.
type helper struct {
	cmd    *exec.Cmd
	config *os.File // write end: the initConfig
	status *os.File // read end: an initError, or EOF once the helper execs
}

// spawn starts the helper in the namespaces in force, in a process group of
// its own, killed if this process dies. stdout and stderr may be nil
// (/dev/null).
func (b *Backend) spawn(stdout, stderr *os.File) (*helper, error) {
	cr, cw, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	sr, sw, err := os.Pipe()
	if err != nil {
		_, _ = cr.Close(), cw.Close()
		return nil, err
	}
	cmd := &exec.Cmd{
		Path:       b.exe,
		Args:       []string{initArg0},
		Env:        []string{initEnv + "=1"},
		ExtraFiles: []*os.File{cr, sw},
		SysProcAttr: &syscall.SysProcAttr{
			Setpgid:    true,
			Pdeathsig:  syscall.SIGKILL,
			Cloneflags: b.flags,
		},
	}
	if stdout != nil {
		cmd.Stdout = stdout
	}
	if stderr != nil {
		cmd.Stderr = stderr
	}
	err = cmd.Start()
	_, _ = cr.Close(), sw.Close()
	if err != nil {
		_, _ = cw.Close(), sr.Close()
		return nil, err
	}
	return &helper{cmd: cmd, config: cw, status: sr}, nil
}

// run sends the helper ic and waits until it has exec'd the function (or,
// in probe mode, exited), failed, or ctx ended (then it kills the helper).
func (h *helper) run(ctx context.Context, ic *initConfig) error {
	data, err := json.Marshal(ic)
	if err != nil {
		return err
	}
	result := make(chan error, 1)
	go func() {
		_, werr := h.config.Write(data)
		_ = h.config.Close()
		status, rerr := io.ReadAll(h.status)
		_ = h.status.Close()
		result <- helperResult(status, errors.Join(werr, rerr))
	}()
	select {
	case err := <-result:
		return err
	case <-ctx.Done():
		h.kill()
		<-result
		return ctx.Err()
	}
}

// helperResult interprets what the helper wrote to its status pipe.
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
