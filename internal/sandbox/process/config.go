// Package process is Nimbus's first sandbox backend: each function instance
// is a host process.
//
// Each instance starts as an init helper: the running binary (os.Executable)
// re-executed, the way runc does it, in new pid, mount, IPC and UTS
// namespaces where the host allows them and in a cgroup of its own. The
// helper makes its mounts private and mounts its /proc, then waits for its
// instance's config; given it, it prepares its view of the file system,
// drops to the instance's own unprivileged uid and execs the function. Every
// binary that uses this package must therefore call MaybeInit first thing in
// main (and in TestMain).
//
// The Backend keeps Config.PoolSize helpers started ahead, so that Start
// only sets the cgroup's limits and sends the config: the helper's exec and
// runtime start-up (5 to 6 ms for a 30 MB binary) and the move into a
// cgroup (which waits for an RCU grace period, 5 to 12 ms here) are paid in
// the background. Start starts a helper itself when none is idle, and the
// pool is refilled behind it. It also keeps one zygote of each of
// Config.Zygotes (sandbox.Zygote, zygote_linux.go): a helper that has set up
// an instance's sandbox without code and exec'd a pre-initialised
// interpreter, which Start completes for one instance. Close kills the idle
// helpers and zygotes; call it when the Backend is no longer used.
//
// Isolation, when running as root on a host with cgroups and namespaces:
//
//   - cgroups (v1 or v2): a memory limit without swap, CPU weight
//     proportional to memory (no hard quota), a pids limit; an OOM kill is
//     reported as sandbox.ErrOutOfMemory and Kill reaches every process;
//   - a pid namespace: the function is pid 1 of its own namespace and sees
//     only its own processes in /proc. As with `docker run` without --init,
//     it reaps its orphans or they stay zombies, a signal it sends itself
//     without a handler is ignored, and when it exits everything it
//     started is killed;
//   - a mount namespace and a root of its own (rootfs_linux.go): the helper
//     pivots into a small read-only tmpfs holding the host's system
//     directories (read-only), a minimal /etc and /dev, a /proc of its pid
//     namespace, Spec.CodeDir at /var/task (its working directory) and
//     Spec.RuntimeDir at /var/runtime, Spec.OptDir (the layers) or nothing
//     at /opt, and a private tmpfs of
//     Spec.TmpMB on /tmp and on /dev/shm (their pages are charged to the
//     instance's memory cgroup: what a function stores there counts toward
//     its memory limit). Nothing else of the host is there. Where the root
//     cannot be built, the instance keeps the host's root with every
//     Config.HidePaths entry (and Config.Root) covered by an empty
//     read-only tmpfs, and its code and runtime bound at /var/task and
//     /var/runtime (New makes them on the host as mount points) or at their
//     own paths (sandbox.PathsOf says which);
//   - a uid and gid of its own, from a range (Config.UID + slot), so
//     instances cannot signal or ptrace each other;
//   - no capabilities (the bounding set emptied too), no_new_privs, and a
//     seccomp filter (seccomp_linux.go) installed just before the exec;
//   - frozen between invocations when the engine asks (sandbox.Freezer,
//     through the cgroup freezer), and killable while frozen.
//
// Without namespaces (not root, or forbidden by the host), /tmp is a
// directory under Config.Root that TMPDIR names, with no size limit,
// HidePaths are not hidden, and instances see their code and runtime at
// their host paths, protected by their file modes only. Without cgroups
// there are no limits, an OOM kill is not recognised and Kill finds
// processes that left the process group by their uid. Without root an
// instance has no uid of its own, and such processes escape Kill. New logs
// what is missing once, Describe says it and Isolation reports it.
//
// With the host's root (no root of its own), other world-writable host
// directories (/var/tmp, for one) stay shared between instances;
// per-instance uids keep them from touching each other's files there, but
// uids are recycled.
package process

import (
	"fmt"
	"log/slog"
	"net/netip"
	"path/filepath"

	"github.com/nimbus-serverless/nimbus/internal/sandbox"
)

// Defaults.
const (
	// DefaultUID and DefaultGID are the first uid and gid of the
	// per-instance range. The ids need no /etc/passwd entry; pick a range no
	// other user or container on the host uses, and give every Nimbus node
	// sharing a host a range of its own.
	DefaultUID = 1_000_000
	DefaultGID = 1_000_000
	// DefaultMaxInstances is the size of the id range, and so the most
	// instances that may run at once.
	DefaultMaxInstances = 4096
	// DefaultPidsMax applies when Spec.PidsMax is 0.
	DefaultPidsMax = 1024
	// DefaultTmpMB applies when Spec.TmpMB is 0 (Lambda's default ephemeral
	// storage).
	DefaultTmpMB = 512
	// DefaultPoolSize is the number of pre-started init helpers kept when
	// Config.PoolSize is 0.
	DefaultPoolSize = 2
	// DefaultZygotesEach is Config.ZygotesEach's default.
	DefaultZygotesEach = 2
	// maxPoolSize bounds Config.PoolSize.
	maxPoolSize = 64
)

// DefaultNetworkRange is where instances' addresses are taken from when
// Config.NetworkRange is not set: the shared address space of RFC 6598,
// which the internet does not route and few private networks use. Each
// backend on a host takes a block of it: with the default MaxInstances, a
// /18 (100.64.0.0/18 for the first, 100.64.64.0/18 for the second...).
var DefaultNetworkRange = netip.MustParsePrefix("100.64.0.0/10")

// Config configures a Backend.
type Config struct {
	// Root is the host directory for per-instance state (the /tmp
	// directories when there is no mount namespace). Required. Instances
	// never see it.
	Root string
	// HidePaths are host directories instances must not see (Nimbus's data
	// directory, the code cache root). Each Spec.CodeDir and Spec.RuntimeDir
	// stays visible, read-only, even under one of them (see the package
	// comment); the program (Spec.Path) must be in one of those or outside
	// HidePaths. Hiding needs a mount namespace.
	HidePaths []string
	// SystemPaths are host directories, beyond /usr, /lib, /lib64, /bin
	// and /sbin, that instances see read-only at their own paths when they
	// get a root of their own: where an interpreter lives outside those
	// (/opt/node, say). Nothing else of the host is in that root.
	SystemPaths []string
	// UID and GID are the first of the per-instance ids used when running as
	// root: an instance in slot n runs as UID+n, GID+n. 0 means DefaultUID
	// and DefaultGID.
	UID, GID int
	// MaxInstances is the size of the id range; 0 means DefaultMaxInstances.
	MaxInstances int
	// PoolSize is the number of init helpers kept pre-started (executed,
	// initialised, in new namespaces and cgroups of their own, waiting for
	// an instance), so that Start skips the helper's exec and start-up and
	// the cgroup move. 0 means DefaultPoolSize; a negative value disables
	// the pool. Idle helpers run as root (when this process does) until they
	// are given an instance, and hold about 3 MB of memory each;
	// Backend.Close kills them.
	PoolSize int
	// Zygotes are programs (pre-initialised interpreters) to keep some of
	// each started ahead of demand, in a sandbox of their own, for Start
	// to give an instance whose Spec.Zygote equals one (see zygote_linux.go).
	// They are kept only where instances get a root of their own and
	// this process runs as root; each holds a uid slot and its memory
	// while it waits. Backend.Close kills them.
	Zygotes []*sandbox.Zygote
	// ZygotesEach is how many of each of Zygotes are kept ready, so that
	// a burst of cold starts finds one ready while the next starts; 0
	// means DefaultZygotesEach.
	ZygotesEach int
	// NetworkRange is where instances' addresses come from (see
	// net_linux.go): each backend on a host takes a block of it big enough
	// for a /31 per instance. The zero value means DefaultNetworkRange.
	NetworkRange netip.Prefix
	// Nameservers, if set, are the DNS servers egress instances use;
	// otherwise the host's, where instances can reach them (not on the
	// host itself).
	Nameservers []netip.Addr
	// Logger receives warnings; nil discards them.
	Logger *slog.Logger
}

// withDefaults validates cfg and fills in its defaults. Paths become absolute
// and clean.
func (cfg Config) withDefaults() (Config, error) {
	if cfg.Root == "" {
		return cfg, fmt.Errorf("process: Config.Root is required")
	}
	root, err := filepath.Abs(cfg.Root)
	if err != nil {
		return cfg, fmt.Errorf("process: Config.Root: %w", err)
	}
	cfg.Root = root
	if cfg.HidePaths, err = belowRoot("HidePaths", cfg.HidePaths); err != nil {
		return cfg, err
	}
	if cfg.SystemPaths, err = belowRoot("SystemPaths", cfg.SystemPaths); err != nil {
		return cfg, err
	}
	if cfg.UID == 0 {
		cfg.UID = DefaultUID
	}
	if cfg.GID == 0 {
		cfg.GID = DefaultGID
	}
	if cfg.MaxInstances == 0 {
		cfg.MaxInstances = DefaultMaxInstances
	}
	switch {
	case cfg.ZygotesEach < 0 || cfg.ZygotesEach > maxPoolSize:
		return cfg, fmt.Errorf("process: Config.ZygotesEach %d is not 0 to %d", cfg.ZygotesEach, maxPoolSize)
	case cfg.ZygotesEach == 0:
		cfg.ZygotesEach = DefaultZygotesEach
	}
	switch {
	case cfg.PoolSize == 0:
		cfg.PoolSize = DefaultPoolSize
	case cfg.PoolSize < 0:
		cfg.PoolSize = 0
	case cfg.PoolSize > maxPoolSize:
		return cfg, fmt.Errorf("process: Config.PoolSize %d is above %d", cfg.PoolSize, maxPoolSize)
	}

	switch {
	case cfg.MaxInstances < 0 || cfg.MaxInstances > 1<<20:
		return cfg, fmt.Errorf("process: Config.MaxInstances %d is out of range", cfg.MaxInstances)
	case cfg.UID < 0 || cfg.UID > maxID-cfg.MaxInstances:
		return cfg, fmt.Errorf("process: Config.UID %d is out of range", cfg.UID)
	case cfg.GID < 0 || cfg.GID > maxID-cfg.MaxInstances:
		return cfg, fmt.Errorf("process: Config.GID %d is out of range", cfg.GID)
	}
	if !cfg.NetworkRange.IsValid() {
		cfg.NetworkRange = DefaultNetworkRange
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return cfg, nil
}

// belowRoot checks that each of paths, Config's field, is an absolute path
// below /, and returns them cleaned.
func belowRoot(field string, paths []string) ([]string, error) {
	out := make([]string, 0, len(paths))
	for _, p := range paths {
		if !filepath.IsAbs(p) || filepath.Clean(p) == "/" {
			return nil, fmt.Errorf("process: Config.%s: %q is not an absolute path below /", field, p)
		}
		out = append(out, filepath.Clean(p))
	}
	return out, nil
}

// maxID is the largest uid or gid the backend hands out.
const maxID = 1<<31 - 1
