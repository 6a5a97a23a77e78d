// Package sandbox defines how Nimbus starts an isolated function instance.
// internal/sandbox/process is the first backend: a process per instance,
// with cgroup limits, an unprivileged user and namespaces where the host
// allows them. internal/sandbox/sandboxtest is the conformance suite every
// backend passes.
package sandbox

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strings"
	"syscall"
)

// ErrOutOfMemory is the exit reason of an instance killed for using more
// memory than its limit.
var ErrOutOfMemory = errors.New("out of memory")

// Where an instance sees its code and its runtime, as on Lambda, when its
// backend can mount them there (Isolation.FixedPaths).
const (
	TaskRoot    = "/var/task"
	RuntimeRoot = "/var/runtime"
	OptRoot     = "/opt" // the function's layers
)

// Spec says what to start and under which limits.
type Spec struct {
	// ID names the instance (unique per node); backends use it for cgroup
	// and directory names.
	ID string
	// Path and Args are the program and its arguments (Args[0] included),
	// as the instance sees them (see PathsOf). A Path without a slash is
	// looked up in the PATH of Env, as execvp does.
	Path string
	Args []string
	// Env is the full environment, as "K=V".
	Env []string
	// CodeDir is the host directory of the function's unpacked code, shared
	// read-only between instances. The instance sees it read-only at
	// PathsOf(...).TaskRoot and starts there as its working directory
	// (unless WorkDir says otherwise). It may be "" with RootFS (an image
	// holds its own code).
	CodeDir string
	// CodeAlso, if not "", is a second absolute path where the instance
	// sees CodeDir, read-only, beside TaskRoot (Function Compute puts the
	// code at /code). Only a backend with Isolation.MinimalRoot makes it
	// (the path is made in the instance's own root, never on the host);
	// others ignore it. With RootFS, it is a mount point as CodeDir's (it
	// must exist in the image or be absent with its whole top-level
	// directory). It must be
	// one clean component below / that is none of the root's own
	// directories (/etc, /dev, /proc, /tmp, /opt, /var, the system
	// directories).
	CodeAlso string
	// RootFS, if not "", is the host directory of a container image's
	// flattened root file system, which becomes the instance's root
	// instead of the host's system directories (Isolation.ImageRoot):
	// read-only, with the instance's own /tmp, /dev, /proc and a few
	// files of /etc (passwd, group, hosts, hostname, resolv.conf) laid
	// over the image's; CodeDir, RuntimeDir and OptDir, if set, are bound
	// on it at their fixed paths, which must exist in the image or be
	// absent from it with their whole top-level directory.
	RootFS string
	// WorkDir is the working directory as the instance sees it: "" is
	// PathsOf(...).TaskRoot, or "/" for a RootFS without CodeDir.
	WorkDir string
	// User is the image's USER ("name", "uid", "name:group" or
	// "uid:gid"), for RootFS only. The instance runs as its own user all
	// the same (Isolation.OwnUser); a non-root user name the image's
	// /etc/passwd defines is given the instance's uid and gid there, so
	// that the image's programs find their user (and its home) by name.
	User string
	// RuntimeDir is an optional host directory of the runtime's own files
	// (the Python or Node bootstrap), seen read-only at
	// PathsOf(...).RuntimeDir; "" for none.
	RuntimeDir string
	// OptDir is an optional host directory of the function's layers,
	// merged, seen read-only at PathsOf(...).Opt; "" for none.
	OptDir string
	// MemoryMB is the memory limit; CPU share is proportional to it.
	MemoryMB int
	// PidsMax caps the processes and threads the instance may create.
	PidsMax int
	// TmpMB is the size of the instance's private writable /tmp.
	TmpMB int
	// Stdout and Stderr receive the instance's output.
	Stdout, Stderr io.Writer
	// Network is the instance's network ("": NetworkEgress). A backend
	// without Isolation.NetworkIsolation runs every instance on the host's
	// network.
	Network Network
	// Prepare, if not nil, is called by Start once the instance's network
	// exists and before its program runs, with that network: the caller
	// makes its listeners there (the Runtime API) and keeps n to dial the
	// instance (an HTTP function's port). The "K=V" variables it returns
	// are added to Env, replacing those of the same name. Start may call it
	// more than once (each time for a new network; the caller closes what
	// it made for the previous one). An error fails Start.
	Prepare func(n Net) (env []string, err error)
	// TakeOutput: the caller reads the instance's output from
	// OutputOf(instance) when that is not nil (see OutputSource) instead
	// of from Stdout and Stderr, which must then be one writer (or nil).
	TakeOutput bool
	// Zygote, if not nil, lets a backend that keeps zygotes of it give
	// the instance one instead of starting Path: a process that already
	// runs Zygote, under the instance's isolation (the backend says when).
	// The caller promises that Zygote, once it has the instance's
	// environment, stdio and working directory, behaves as Path, Args
	// and Env would. Backends without zygotes ignore it.
	Zygote *Zygote
}

// Zygote is a program a backend starts ahead of demand (a pre-initialised
// interpreter, say), in a sandbox with every isolation an instance gets
// but without the function's code, which then waits to become one
// instance: never more than one, and never again once assigned.
//
// Its standard input is a unix stream socket; its stdout and stderr are,
// from its start, a pipe that the backend drains into its instance's
// output once it has one (so it should write nothing before). Once
// initialised, it writes "+" on the socket and reads its instance: a
// message framed as 4 bytes of length (big-endian) and a JSON
// ZygoteConfig. It writes "." once it has it, replaces its environment
// with ZygoteConfig.Env, changes to ZygoteConfig.Dir, takes /dev/null as
// its standard input and closes the socket: end of file tells the backend
// that it runs as the instance. If it cannot, it writes a JSON object
// {"op": what failed, "errno": n or "msg": text} there and exits. No
// file is passed, so any interpreter that can read and write a socket
// can be a zygote.
type Zygote struct {
	// Path, Args and Env are the program, its arguments (Args[0]
	// included) and its environment until it has an instance.
	Path string
	Args []string
	Env  []string
	// RuntimeDir is the host directory of its runtime's files, seen as
	// Spec.RuntimeDir is (see PathsOf).
	RuntimeDir string
}

// Equal reports whether z and o start the same program.
func (z *Zygote) Equal(o *Zygote) bool {
	return z.Path == o.Path && slices.Equal(z.Args, o.Args) && slices.Equal(z.Env, o.Env) && z.RuntimeDir == o.RuntimeDir
}

// ZygoteConfig is what a zygote is told of its instance (see Zygote).
type ZygoteConfig struct {
	Path string   `json:"path"`
	Args []string `json:"args"`
	Env  []string `json:"env"`
	Dir  string   `json:"dir"`
}

// Network is how an instance reaches the network.
type Network string

// The networks an instance may have.
const (
	// NetworkEgress: a network namespace of its own that reaches outside
	// addresses, but neither the host itself (its loopback, its addresses,
	// the services listening there) nor other instances.
	NetworkEgress Network = "egress"
	// NetworkNone: a network namespace with only its own loopback.
	NetworkNone Network = "none"
	// NetworkHost: the host's network, as any host process.
	NetworkHost Network = "host"
)

// ParseNetwork checks s, a network's name; "" is NetworkEgress.
func ParseNetwork(s string) (Network, error) {
	switch n := Network(s); n {
	case "":
		return NetworkEgress, nil
	case NetworkEgress, NetworkNone, NetworkHost:
		return n, nil
	}
	return "", fmt.Errorf("network %q: want egress, none or host", s)
}

// Net is an instance's network as the host reaches it (see Spec.Prepare).
// Its methods are safe for concurrent use; they fail once the instance
// has exited.
type Net interface {
	// Private reports whether the network is the instance's own: its
	// loopback is not the host's, and only the instance reaches what
	// Listen makes.
	Private() bool
	// Listen listens in the instance's network, as net.Listen.
	Listen(network, address string) (net.Listener, error)
	// DialContext connects from the instance's network, as
	// net.Dialer.DialContext: "127.0.0.1:port" is the instance's loopback
	// when Private.
	DialContext(ctx context.Context, network, address string) (net.Conn, error)
}

// HostNet is the host's network, the Net of an instance without a network
// of its own.
type HostNet struct{}

func (HostNet) Private() bool { return false }

func (HostNet) Listen(network, address string) (net.Listener, error) {
	return net.Listen(network, address)
}

func (HostNet) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(ctx, network, address)
}

// Backend starts instances.
type Backend interface {
	// Start starts an instance. ctx bounds the start only, not the
	// instance's life. Errors: nimbus.ErrInvalid for a bad spec,
	// nimbus.ErrConflict if an instance with spec.ID is running,
	// nimbus.ErrThrottled if the backend runs all the instances it can,
	// ctx's error if ctx ends first.
	Start(ctx context.Context, spec Spec) (Instance, error)
	// Describe says in one line which isolation features are in force on
	// this host (for the start-up log).
	Describe() string
	// Close releases what the backend keeps ready for future instances
	// (running instances are left alone). Start may still be called.
	Close(ctx context.Context) error
}

// Instance is a started instance.
type Instance interface {
	// Done is closed when the instance has exited, every process it
	// started is dead (where the backend has KillAll), its output has
	// reached Spec.Stdout and Spec.Stderr and its resources are released.
	Done() <-chan struct{}
	// Err is the exit reason once Done is closed: nil for a clean exit,
	// ErrOutOfMemory, or an error describing the exit status or signal.
	Err() error
	// Kill stops the instance and everything it started. It is safe to call
	// more than once and after exit; it does not wait for Done.
	Kill()
	// MaxMemoryBytes reports the peak memory used so far (0 if unknown).
	MaxMemoryBytes() int64
	// TmpDir is the host path of the instance's writable /tmp.
	TmpDir() string
	// UID is the user the instance runs as, or -1 when it runs as
	// Nimbus's own user (then it cannot be told apart by user).
	UID() int
}

// Signaler is implemented by an Instance whose program can be sent a
// signal (SIGTERM, to let it finish before Kill); an instance that has
// exited returns nil.
type Signaler interface {
	Signal(sig syscall.Signal) error
}

// SignalerOf returns inst's Signaler, or nil if it has none.
func SignalerOf(inst Instance) Signaler {
	s, _ := inst.(Signaler)
	return s
}

// Freezer is implemented by an Instance that can be frozen between
// invocations, as Lambda freezes an idle environment: from Freeze until
// Thaw none of its processes runs (a background process it left burns no
// CPU). Kill works on a frozen instance. Both return
// errors.ErrUnsupported where the backend cannot freeze (Isolation.Freeze
// is false), and nil once the instance has exited.
type Freezer interface {
	Freeze() error
	Thaw() error
}

// Initializer is implemented by an Instance that runs its initialisation
// (from its start to its first request) at one CPU's weight, whatever its
// memory: InitDone, once it is ready, gives it the weight its memory
// entitles it to. (Lambda gives an environment's init a full CPU the same
// way.) InitDone is safe to call more than once, and after exit.
//
// Served tells it that its first request has been answered (or that it
// will wait for requests without one): the backend may now do the work it
// put off so as not to slow the cold start down, which the process
// backend's pool of pre-started helpers does with its refill. Served is
// safe to call more than once, and after exit.
type Initializer interface {
	InitDone() error
	Served()
}

// InitializerOf returns inst's Initializer, or nil if it has none.
func InitializerOf(inst Instance) Initializer {
	in, _ := inst.(Initializer)
	return in
}

// OutputSource is an Instance whose output may be in a pipe of its own
// rather than in the Spec.Stdout it was given: an instance that began as a
// zygote, whose stdout and stderr were a pipe before it had an instance.
// When its Spec.TakeOutput was set, Output returns that pipe's read end
// (nil when the output went to Spec.Stdout as usual), which the caller
// then owns: it reads it until end of file (the instance and everything it
// started exited) and closes it. Reading it directly, rather than through
// a copy into Spec.Stdout, lets the caller know that all the instance has
// written so far is in the pipe (a runtime writes its log before it posts
// its response).
type OutputSource interface {
	Output() *os.File
}

// OutputOf returns the pipe of inst's output that its caller must read
// (see OutputSource), or nil.
func OutputOf(inst Instance) *os.File {
	if src, ok := inst.(OutputSource); ok {
		return src.Output()
	}
	return nil
}

// FreezerOf returns inst's Freezer, or nil if it has none.
func FreezerOf(inst Instance) Freezer {
	f, _ := inst.(Freezer)
	return f
}

// Isolation says what a backend enforces on every instance it starts. A
// false field is a promise not made: the instance runs without it.
type Isolation struct {
	// FixedPaths: an instance sees Spec.CodeDir at TaskRoot,
	// Spec.RuntimeDir at RuntimeRoot and Spec.OptDir at OptRoot, and none
	// at its host path. Without it, they are seen at their host paths.
	FixedPaths bool
	// ReadOnlyCode: the instance cannot change Spec.CodeDir,
	// Spec.RuntimeDir or Spec.OptDir, whatever their file modes. Without it, only their
	// modes protect them.
	ReadOnlyCode bool
	// PrivateTmp: /tmp is the instance's own, Spec.TmpMB in size; no other
	// instance sees it.
	PrivateTmp bool
	// HiddenPaths: the host paths the backend is configured to hide are
	// invisible to instances.
	HiddenPaths bool
	// MemoryLimit: Spec.MemoryMB is enforced, and an instance killed for
	// exceeding it exits with ErrOutOfMemory.
	MemoryLimit bool
	// PidsLimit: Spec.PidsMax is enforced.
	PidsLimit bool
	// OwnUser: each running instance has a uid of its own (Instance.UID).
	OwnUser bool
	// KillAll: Kill, and the exit of the instance's first process, kill
	// every process it started, even one that left its process group or
	// session.
	KillAll bool
	// MinimalRoot: the instance sees a root built for it and nothing else
	// of the host: the system directories its runtime needs, read-only; a
	// minimal /etc and /dev; a /proc of its own pid namespace (where the
	// backend has one); its code and runtime (FixedPaths); an empty /opt;
	// its private /tmp. Everything but /tmp and /dev/shm is read-only, so
	// nothing it writes outlives it; no other instance's files, no
	// cgroup hierarchy (/sys) and no writable host path are there.
	MinimalRoot bool
	// ImageRoot: Spec.RootFS is honoured, as MinimalRoot describes with
	// the image's tree in place of the host's system directories and
	// /etc; without it, a Spec with a RootFS fails to start.
	ImageRoot bool
	// Freeze: every Instance is a Freezer that freezes.
	Freeze bool
	// NoPrivileges: the instance runs with no capability (effective,
	// permitted, inheritable, ambient; the bounding set empty where the
	// backend runs as root) and with no_new_privs, so no set-uid or
	// file-capability binary gives it any.
	NoPrivileges bool
	// SyscallFilter: a seccomp filter refuses the system calls that mount,
	// make or join namespaces (unshare, setns, clone with namespace flags),
	// look into other processes (ptrace, process_vm_readv), load kernel
	// modules or programs (init_module, bpf), use kernel keyrings, perf
	// events or userfaultfd, or set the clock (see the backend for the
	// list), in every ABI of the architecture.
	SyscallFilter bool
	// NetworkIsolation: Spec.Network is enforced. An egress or none
	// instance has a network namespace of its own (its own loopback, no
	// abstract unix sockets of the host or of other instances); it reaches
	// neither the host's loopback nor its addresses nor other instances.
	// Without it every instance is on the host's network.
	NetworkIsolation bool
}

// Isolator is implemented by a Backend that says what it enforces.
type Isolator interface {
	Isolation() Isolation
}

// IsolationOf returns what b enforces: b.Isolation() if b is an Isolator,
// else nothing.
func IsolationOf(b Backend) Isolation {
	if i, ok := b.(Isolator); ok {
		return i.Isolation()
	}
	return Isolation{}
}

// Paths are where an instance sees the directories of its Spec.
type Paths struct {
	TaskRoot   string // Spec.CodeDir
	RuntimeDir string // Spec.RuntimeDir ("" when it is "")
	Opt        string // Spec.OptDir ("" when it is "")
}

// PathsOf returns where an instance that b starts for spec sees spec.CodeDir,
// spec.RuntimeDir and spec.OptDir: TaskRoot, RuntimeRoot and OptRoot if b
// has FixedPaths, else their host paths. Program paths, arguments and environment (Path, Args,
// LAMBDA_TASK_ROOT) name them so.
func PathsOf(b Backend, spec Spec) Paths {
	if !IsolationOf(b).FixedPaths {
		return Paths{TaskRoot: spec.CodeDir, RuntimeDir: spec.RuntimeDir, Opt: spec.OptDir}
	}
	p := Paths{TaskRoot: TaskRoot}
	if spec.RuntimeDir != "" {
		p.RuntimeDir = RuntimeRoot
	}
	if spec.OptDir != "" {
		p.Opt = OptRoot
	}
	return p
}

// WithEnv returns env ("K=V" each) with each of vars set, replacing any
// value env had for the same name: what a backend does with the variables
// Spec.Prepare returns.
func WithEnv(env []string, vars ...string) []string {
	out := make([]string, 0, len(env)+len(vars))
	for _, kv := range env {
		name, _, _ := strings.Cut(kv, "=")
		if !slices.ContainsFunc(vars, func(v string) bool { return strings.HasPrefix(v, name+"=") }) {
			out = append(out, kv)
		}
	}
	return append(out, vars...)
}
