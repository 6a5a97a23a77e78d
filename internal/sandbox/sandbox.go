// Package sandbox defines how Nimbus starts an isolated function instance.
// internal/sandbox/process is the first backend: a process per instance,
// with cgroup limits, an unprivileged user and namespaces where the host
// allows them.
package sandbox

import (
	"context"
	"errors"
	"io"
)

// ErrOutOfMemory is the exit reason of an instance killed for using more
// memory than its limit.
var ErrOutOfMemory = errors.New("out of memory")

// Spec says what to start and under which limits.
type Spec struct {
	// ID names the instance (unique per node); backends use it for cgroup
	// and directory names.
	ID string
	// Path and Args are the program and its arguments (Args[0] included).
	Path string
	Args []string
	// Env is the full environment, as "K=V".
	Env []string
	// CodeDir is the function's unpacked code, shared read-only between
	// instances. The instance starts with it as working directory.
	CodeDir string
	// ReadOnlyPaths are further host paths the instance needs to read
	// (e.g. the runtime bootstraps); like CodeDir they stay visible, read-only,
	// at the same path, even under a hidden path or the private /tmp.
	ReadOnlyPaths []string
	// MemoryMB is the memory limit; CPU share is proportional to it.
	MemoryMB int
	// PidsMax caps the processes and threads the instance may create.
	PidsMax int
	// TmpMB is the size of the instance's private writable /tmp.
	TmpMB int
	// Stdout and Stderr receive the instance's output.
	Stdout, Stderr io.Writer
}

// Backend starts instances.
type Backend interface {
	// Start starts an instance. ctx bounds the start only, not the
	// instance's life.
	Start(ctx context.Context, spec Spec) (Instance, error)
	// Describe says in one line which isolation features are in force on
	// this host (for the start-up log).
	Describe() string
	// Close releases what the backend keeps ready for future instances
	// (running instances are left alone). Start may still be called.
	Close() error
}

// Instance is a started instance.
type Instance interface {
	// Done is closed when the instance has exited and its resources are
	// released.
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
