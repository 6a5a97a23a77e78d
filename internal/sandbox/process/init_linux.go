package process

import (
	"cmp"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"
)

// initEnv marks a process started as the init helper; the helper's
// environment holds nothing else (the function's comes in initConfig).
const initEnv = "_NIMBUS_SANDBOX_INIT"

// initArg0 is the helper's argv[0], as ps shows it until it execs.
const initArg0 = "nimbus-sandbox-init"

// ctlFD is the helper's end of its control socket (exec.Cmd.ExtraFiles).
// Messages from the parent are framed JSON (see readMsg); the exchange:
//
//	parent: prepareConfig, at once
//	helper: readyByte once prepared (or an initError, then exit)
//	parent: initConfig, with the stdio files (SCM_RIGHTS)
//	helper: ackByte, then an initError if setting up fails; a successful
//	        exec closes the socket (close-on-exec), which the parent sees
//	        as end of file
const ctlFD = 3

// Bytes the helper sends to mark its progress.
const (
	readyByte = '+' // prepared; waiting for its initConfig
	ackByte   = '.' // has its initConfig; nothing is set up for it yet
)

// maxFDs is the most files an initConfig comes with (stdout, stderr and
// a network namespace).
const maxFDs = 3

// maxMsg bounds a message on the control socket (the kernel allows an exec
// a few MB of arguments and environment).
const maxMsg = 64 << 20

// hideSize is the size of the empty tmpfs that hides a path.
const hideSize = "16k"

// initCalled records that MaybeInit ran and returned, so that this binary
// can serve as the init helper.
var initCalled atomic.Bool

// prepareConfig tells the helper what it can do before it knows its
// instance.
type prepareConfig struct {
	// Mount: the helper is in a mount namespace of its own; stop mounts
	// from propagating to the host.
	Mount bool `json:"mount"`
	// Proc: mount a /proc for the helper's pid namespace.
	Proc bool `json:"proc"`
	// Seccomp: assemble the system call filter (see seccomp_linux.go),
	// which initConfig.Seccomp installs.
	Seccomp bool `json:"seccomp,omitempty"`
	// Root: build the instance's root (see rootfs_linux.go); nil keeps the
	// host's, with hidden paths.
	Root *rootSpec `json:"root,omitempty"`
}

// initConfig tells the helper what to set up and run.
type initConfig struct {
	Path string   `json:"path"`
	Args []string `json:"args"`
	Env  []string `json:"env"`
	// Dir is the working directory, as the function sees it.
	Dir      string `json:"dir"`
	Hostname string `json:"hostname,omitempty"`
	TmpMB    int    `json:"tmpMB"`
	// Mount: the helper is in a mount namespace of its own; set up /tmp,
	// /dev/shm, the hidden paths and the binds.
	Mount bool `json:"mount"`
	// Root is the directory of the root prepareConfig.Root built, which
	// the helper finishes and pivots into; "" keeps the host's root.
	Root string `json:"root,omitempty"`
	// Image is the host directory of an image's root file system, which
	// the root shows instead of the host's system directories (see
	// image_linux.go); ImageUser is the image's USER.
	Image     string `json:"image,omitempty"`
	ImageUser string `json:"imageUser,omitempty"`
	// ImageBinds: build the image's root with a bind per entry (bindRoot),
	// as where overlayfs is missing, not as an overlay; for tests.
	ImageBinds bool     `json:"imageBinds,omitempty"`
	Hide       []string `json:"hide,omitempty"`
	// Binds are host directories to show read-only at another path (or at
	// their own, under a hidden path).
	Binds []bind `json:"binds,omitempty"`
	// Stdio are the indexes, among the files that came with the config, of
	// the function's stdout and stderr; -1 keeps the helper's own
	// (/dev/null, unless the parent gave another at start).
	Stdio [2]int `json:"stdio"`
	// Stdin is the index, among the files that came with the config, of
	// the function's standard input (a zygote's socket, see
	// sandbox.Zygote); -1 keeps the helper's own (/dev/null).
	Stdin int `json:"stdin"`
	// Drop: change to UID and GID (the helper runs as root).
	Drop bool `json:"drop"`
	UID  int  `json:"uid"`
	GID  int  `json:"gid"`
	// Seccomp: install the system call filter last, just before the exec.
	Seccomp bool `json:"seccomp,omitempty"`
	// NetNS is the index, among the files that came with the config, of a
	// network namespace to join (sandbox.NetworkHost); -1 for none.
	NetNS int `json:"netns"`
	// Probe: set everything up, then exit 0 instead of exec.
	Probe bool `json:"probe,omitempty"`
}

// bind shows host directory Source, read-only, at Target.
type bind struct {
	Source string `json:"source"`
	Target string `json:"target"`
}

// initError is what the helper reports when setting up fails.
type initError struct {
	Op    string `json:"op"`
	Errno int    `json:"errno,omitempty"`
	Msg   string `json:"msg,omitempty"`
}

// err turns the report back into an error that errors.Is matches against
// the errno (and so against fs.ErrPermission, fs.ErrNotExist).
func (e *initError) err() error {
	if e.Errno != 0 {
		return fmt.Errorf("%s: %w", e.Op, syscall.Errno(e.Errno))
	}
	return errors.New(e.Op + ": " + e.Msg)
}

// opError is a failed step of the helper.
type opError struct {
	op  string
	err error
}

func (e *opError) Error() string { return e.op + ": " + e.err.Error() }
func (e *opError) Unwrap() error { return e.err }

func op(name string, err error) error {
	if err == nil {
		return nil
	}
	return &opError{name, err}
}

// MaybeInit must be called first thing in main (and in TestMain of packages
// that start instances). When the process was started by Backend.Start as
// the sandbox's init helper, it sets up the sandbox and execs the function,
// never returning; otherwise it returns at once.
func MaybeInit() {
	if os.Getenv(initEnv) != "1" {
		initCalled.Store(true)
		return
	}
	// no_new_privs, the parent-death signal and execve belong to one thread.
	runtime.LockOSThread()
	// syscall.Exit, not os.Exit: the helper has nothing to flush, and a
	// race-enabled binary would linger a second in os.Exit.
	if err := runInit(); err != nil {
		reportInit(err)
		syscall.Exit(1)
	}
	syscall.Exit(0)
}

// reportInit sends err to the parent through ctlFD.
func reportInit(err error) {
	ie := initError{Op: "init", Msg: err.Error()}
	var oe *opError
	if errors.As(err, &oe) {
		ie.Op, ie.Msg = oe.op, oe.err.Error()
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		ie.Errno = int(errno)
	}
	data, _ := json.Marshal(ie)
	_ = writeAll(ctlFD, data)
}

// runInit is the helper: it prepares what does not depend on the instance,
// waits for its initConfig, sets up the sandbox and execs the function. It
// returns only on failure, or after a probe.
func runInit() error {
	var prep prepareConfig
	if _, err := readMsg(ctlFD, &prep); err != nil {
		return op("read config", err)
	}
	if err := prepare(&prep); err != nil {
		return err
	}
	if err := writeAll(ctlFD, []byte{readyByte}); err != nil {
		return op("report ready", err)
	}
	var cfg initConfig
	fds, err := readMsg(ctlFD, &cfg)
	if err != nil {
		return op("read config", err)
	}
	if err := writeAll(ctlFD, []byte{ackByte}); err != nil {
		return op("acknowledge config", err)
	}
	if err := setStdio(cfg.Stdin, cfg.Stdio, fds); err != nil {
		return err
	}
	if err := joinNetNS(cfg.NetNS, fds); err != nil {
		return err
	}
	// Nothing but the function's stdio may survive the exec; a successful
	// exec closes ctlFD, which tells the parent.
	unix.CloseOnExec(ctlFD)
	_ = unix.CloseRange(ctlFD+1, ^uint(0), unix.CLOSE_RANGE_CLOEXEC)
	if cfg.Mount {
		if err := setupMounts(&cfg); err != nil {
			return err
		}
	}
	if cfg.Hostname != "" {
		if err := unix.Sethostname([]byte(cfg.Hostname)); err != nil {
			return op("set hostname", err)
		}
	}
	if err := dropPrivileges(&cfg); err != nil {
		return err
	}
	if err := os.Chdir(cfg.Dir); err != nil {
		return op("chdir "+cfg.Dir, errors.Unwrap(err))
	}
	if cfg.Seccomp {
		if filter == nil {
			return op("install seccomp filter", errors.New("not prepared"))
		}
		if err := loadSeccomp(filter); err != nil {
			return op("install seccomp filter", err)
		}
	}
	if cfg.Probe {
		return nil
	}
	path := cfg.Path
	if !strings.Contains(path, "/") {
		var err error
		if path, err = lookPath(path, cfg.Env); err != nil {
			return op("exec "+cfg.Path, err)
		}
	}
	return op("exec "+cfg.Path, syscall.Exec(path, cfg.Args, cfg.Env))
}

// defaultPath is where lookPath looks when env has no PATH.
const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// lookPath finds the program name (no slash in it) in the PATH of env, as
// execvp does: the first regular file the instance's user may execute.
func lookPath(name string, env []string) (string, error) {
	dirs := defaultPath
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			dirs = v
		}
	}
	for dir := range strings.SplitSeq(dirs, ":") {
		p := filepath.Join(cmp.Or(dir, "."), name)
		var st unix.Stat_t
		if unix.Stat(p, &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFREG && unix.Access(p, unix.X_OK) == nil {
			return p, nil
		}
	}
	return "", unix.ENOENT
}

// filter is the seccomp filter prepare assembled.
var filter []unix.SockFilter

// prepare does what needs no initConfig: it stops mounts from propagating
// to the host and mounts the pid namespace's /proc.
func prepare(prep *prepareConfig) error {
	if prep.Seccomp {
		var err error
		if filter, err = buildSeccomp(); err != nil {
			return op("assemble seccomp filter", err)
		}
	}
	if prep.Mount {
		if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
			return op("make mounts private", err)
		}
	}
	if prep.Mount && prep.Proc {
		if err := unix.Mount("proc", "/proc", "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
			return op("mount /proc", err)
		}
	}
	if prep.Mount && prep.Root != nil {
		prepared = prep.Root
		return buildRoot(prep.Root)
	}
	return nil
}

// setStdio makes the files that came with the config (close-on-exec) the
// helper's stdin, stdout and stderr as stdin and stdio say.
func setStdio(stdin int, stdio [2]int, fds []int) error {
	for k, idx := range []int{stdin, stdio[0], stdio[1]} {
		if idx < 0 {
			continue
		}
		if idx >= len(fds) {
			return op("set stdio", fmt.Errorf("file %d of %d", idx, len(fds)))
		}
		if err := unix.Dup3(fds[idx], k, 0); err != nil {
			return op("set stdio", err)
		}
	}
	return nil
}

// readMsg reads the next message from the control socket fd into v and
// returns the descriptors that came with it (close-on-exec). A message is
// its JSON's length (4 bytes, big-endian) and the JSON; reading exactly
// that much keeps the next message's descriptors out of this one's.
func readMsg(fd int, v any) ([]int, error) {
	var hdr [4]byte
	fds, err := readFull(fd, hdr[:], nil)
	if err != nil {
		return fds, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n > maxMsg {
		return fds, fmt.Errorf("message of %d bytes", n)
	}
	data := make([]byte, n)
	if fds, err = readFull(fd, data, fds); err != nil {
		return fds, err
	}
	return fds, json.Unmarshal(data, v)
}

// readFull fills buf from fd, appending the descriptors that come with
// the data to fds.
func readFull(fd int, buf []byte, fds []int) ([]int, error) {
	oob := make([]byte, unix.CmsgSpace(maxFDs*4))
	for len(buf) > 0 {
		n, oobn, _, _, err := unix.Recvmsg(fd, buf, oob, unix.MSG_CMSG_CLOEXEC)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return fds, err
		}
		if oobn > 0 {
			got, err := parseRights(oob[:oobn])
			fds = append(fds, got...)
			if err != nil {
				return fds, err
			}
		}
		if n == 0 {
			return fds, io.ErrUnexpectedEOF
		}
		buf = buf[n:]
	}
	return fds, nil
}

// parseRights returns the descriptors of SCM_RIGHTS control messages.
func parseRights(oob []byte) ([]int, error) {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil, err
	}
	var fds []int
	for _, m := range msgs {
		got, err := unix.ParseUnixRights(&m)
		if err != nil {
			continue // not SCM_RIGHTS
		}
		fds = append(fds, got...)
	}
	return fds, nil
}

// writeAll writes data to fd.
func writeAll(fd int, data []byte) error {
	for len(data) > 0 {
		n, err := unix.Write(fd, data)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		data = data[n:]
	}
	return nil
}

// dropPrivileges empties the capability bounding set (when the helper may)
// and the ambient set, changes to the instance's uid and gid, clears every
// remaining capability, forbids gaining privileges through set-uid or
// file-capability binaries (no_new_privs) and re-arms the parent-death
// signal, which a change of credentials clears. All of it applies to the
// calling thread only, which MaybeInit locked and which execs the function:
// the exec ends the runtime's other threads. (syscall.Setuid and its kin
// change every thread, signalling each in turn: a quarter of a millisecond
// on the start path.)
func dropPrivileges(cfg *initConfig) error {
	if err := dropBoundingSet(); err != nil {
		return err
	}
	if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0); err != nil && err != unix.EINVAL {
		return op("clear ambient capabilities", err)
	}
	if cfg.Drop {
		if _, _, e := unix.RawSyscall(unix.SYS_SETGROUPS, 0, 0, 0); e != 0 {
			return op("setgroups", e)
		}
		gid := uintptr(cfg.GID)
		if _, _, e := unix.RawSyscall(unix.SYS_SETRESGID, gid, gid, gid); e != 0 {
			return op("setgid", e)
		}
		uid := uintptr(cfg.UID)
		if _, _, e := unix.RawSyscall(unix.SYS_SETRESUID, uid, uid, uid); e != 0 {
			return op("setuid", e)
		}
	}
	if err := clearCapabilities(); err != nil {
		return err
	}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return op("set no_new_privs", err)
	}
	if err := unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(unix.SIGKILL), 0, 0, 0); err != nil {
		return op("set parent-death signal", err)
	}
	return nil
}

// setupMounts prepares the helper's mount namespace, made private by
// prepare: with a root of its own (cfg.Root), it finishes that root and
// pivots into it (finishRoot); else /tmp and /dev/shm become private tmpfs
// and each bind's source is shown read-only at its target. Then each
// hidden path still visible is covered by an empty read-only tmpfs.
func setupMounts(cfg *initConfig) error {
	// Hold the sources before anything covers them.
	keep, err := openKept(cfg.Binds)
	defer func() {
		for _, k := range keep {
			_ = unix.Close(k.fd)
		}
	}()
	if err != nil {
		return err
	}
	binds := keep // to bind after hiding, in the host's root
	if cfg.Root != "" {
		if err := finishRoot(cfg, keep); err != nil {
			return err
		}
		binds = nil
	} else if err := mountTmp(cfg, ""); err != nil {
		return err
	}
	hidden, err := hide(cfg.Hide)
	if err != nil {
		return err
	}
	for _, k := range binds {
		if err := bindReadOnly(k); err != nil {
			return err
		}
	}
	for _, p := range hidden {
		const ro = unix.MS_REMOUNT | unix.MS_BIND | unix.MS_RDONLY | unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC
		if err := unix.Mount("", p, "", ro, ""); err != nil {
			return op("remount "+p+" read-only", err)
		}
	}
	return nil
}

// mountTmp mounts the private tmpfs on root's /tmp (owned by the
// function's user) and /dev/shm, each of cfg.TmpMB.
func mountTmp(cfg *initConfig, root string) error {
	uid, gid := os.Getuid(), os.Getgid()
	if cfg.Drop {
		uid, gid = cfg.UID, cfg.GID
	}
	opts := fmt.Sprintf("size=%dm,mode=0700,uid=%d,gid=%d", cfg.TmpMB, uid, gid)
	if err := unix.Mount("tmpfs", root+"/tmp", "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, opts); err != nil {
		return op("mount /tmp", err)
	}
	if fi, err := os.Stat(root + "/dev/shm"); err == nil && fi.IsDir() {
		opts := fmt.Sprintf("size=%dm,mode=1777", cfg.TmpMB)
		if err := unix.Mount("tmpfs", root+"/dev/shm", "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, opts); err != nil {
			return op("mount /dev/shm", err)
		}
	}
	return nil
}

// resizeTmp sets the size of the private tmpfs on /tmp and /dev/shm that
// mountTmp made to mb.
func resizeTmp(mb int) error {
	size := fmt.Sprintf("size=%dm", mb)
	if err := unix.Mount("", "/tmp", "", unix.MS_REMOUNT|unix.MS_NOSUID|unix.MS_NODEV, size); err != nil {
		return op("resize /tmp", err)
	}
	if err := unix.Mount("", "/dev/shm", "", unix.MS_REMOUNT|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, size); err != nil {
		return op("resize /dev/shm", err)
	}
	return nil
}

// hide covers each existing directory of paths with an empty tmpfs, writable
// until the caller remounts it read-only, and returns the covered paths.
// Paths inside one already covered (or no longer visible) are skipped.
func hide(paths []string) ([]string, error) {
	paths = slices.Clone(paths)
	slices.SortFunc(paths, func(a, b string) int { return len(a) - len(b) })
	var hidden []string
	for _, p := range paths {
		if slices.ContainsFunc(hidden, func(h string) bool { return within(p, h) }) {
			continue
		}
		if fi, err := os.Stat(p); err != nil || !fi.IsDir() {
			continue
		}
		opts := "size=" + hideSize + ",mode=0755"
		if err := unix.Mount("tmpfs", p, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, opts); err != nil {
			return nil, op("hide "+p, err)
		}
		hidden = append(hidden, p)
	}
	return hidden, nil
}

// kept is the source of a bind, opened before anything covers it.
type kept struct {
	bind
	fd  int // O_PATH
	dir bool
}

// openKept opens the source of each bind, in the order of their targets,
// parents first (so that a child's bind mount is not covered by its
// parent's), skipping duplicates.
func openKept(binds []bind) ([]kept, error) {
	binds = slices.Clone(binds)
	slices.SortFunc(binds, func(a, b bind) int {
		return cmp.Or(len(a.Target)-len(b.Target), strings.Compare(a.Target, b.Target), strings.Compare(a.Source, b.Source))
	})
	binds = slices.Compact(binds)
	var keep []kept
	for _, b := range binds {
		fd, err := unix.Open(b.Source, unix.O_PATH|unix.O_CLOEXEC, 0)
		if err != nil {
			return keep, op("open "+b.Source, err)
		}
		keep = append(keep, kept{bind: b, fd: fd})
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			return keep, op("stat "+b.Source, err)
		}
		keep[len(keep)-1].dir = st.Mode&unix.S_IFMT == unix.S_IFDIR
	}
	return keep, nil
}

// bindReadOnly binds k's source at its target, read-only, first making a
// mount point if there is none (a covering tmpfs may hide it).
func bindReadOnly(k kept) error {
	if _, err := os.Stat(k.Target); errors.Is(err, fs.ErrNotExist) {
		if err := makeMountPoint(k.Target, k.dir); err != nil {
			return op("make mount point "+k.Target, err)
		}
	}
	var st unix.Statfs_t
	if err := unix.Fstatfs(k.fd, &st); err != nil {
		return op("statfs "+k.Source, err)
	}
	src := fmt.Sprintf("/proc/self/fd/%d", k.fd)
	if err := unix.Mount(src, k.Target, "", unix.MS_BIND, ""); err != nil {
		return op("bind "+k.Source+" at "+k.Target, err)
	}
	// Keep the restrictions of the source mount; add read-only, nosuid, nodev.
	flags := uintptr(unix.MS_REMOUNT | unix.MS_BIND | unix.MS_RDONLY | unix.MS_NOSUID | unix.MS_NODEV)
	for _, f := range [][2]uintptr{
		{unix.ST_NOEXEC, unix.MS_NOEXEC},
		{unix.ST_NOATIME, unix.MS_NOATIME},
		{unix.ST_NODIRATIME, unix.MS_NODIRATIME},
		{unix.ST_RELATIME, unix.MS_RELATIME},
	} {
		if uintptr(st.Flags)&f[0] != 0 {
			flags |= f[1]
		}
	}
	if err := unix.Mount("", k.Target, "", flags, ""); err != nil {
		return op("remount "+k.Target+" read-only", err)
	}
	return nil
}

// makeMountPoint creates path, a directory or an empty file, and its
// parents.
func makeMountPoint(path string, dir bool) error {
	if dir {
		return os.MkdirAll(path, 0o755)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o444)
	if err != nil {
		return err
	}
	return f.Close()
}

// within reports whether path p is dir or below it.
func within(p, dir string) bool {
	return p == dir || strings.HasPrefix(p, strings.TrimSuffix(dir, "/")+"/")
}
