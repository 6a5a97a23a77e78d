// Package image is a node's store of container images: it resolves an image
// reference against its registry (without a daemon, with
// go-containerregistry), pulls each layer once per layer digest, unpacks it
// with a careful tar extractor of its own, and builds for each image digest a
// flattened read-only root from the layers by hard links, so that images
// sharing layers share their bytes on disk.
//
// On disk, under Options.Dir:
//
//	lock                    held (flock) by the one Store that owns the directory
//	tmp/                    work in progress; emptied by Open
//	layers/<hex>/root/      one unpacked layer, by compressed digest
//	layers/<hex>/layer.json its size and its whiteouts
//	images/<hex>/rootfs/    one flattened root, by manifest digest
//	images/<hex>/image.json its config, size and layers
//
// Everything under layers/ and images/ appears whole, by rename from tmp/, or
// not at all. The trees are read-only: files 0444 (0555 when the image gives
// them an exec bit), directories 0555, no setuid, setgid or sticky bits,
// owned by the node's user (root on a real node), whatever the image says.
package image

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sys/unix"
)

// Defaults of Options.
const (
	DefaultMaxUnpacked  = 10 << 30
	DefaultStallTimeout = 60 * time.Second
)

// Sentinel errors. Every error of Resolve and Ensure wraps one of them (or is
// a context's error) and its message is one line meant for the user; none
// holds a credential.
var (
	// ErrInvalidRef: the reference is not a valid image reference.
	ErrInvalidRef = errors.New("invalid image reference")
	// ErrNotFound: the registry has no such repository, tag or digest.
	ErrNotFound = errors.New("image not found")
	// ErrAuth: the registry refused the credentials (or their absence).
	ErrAuth = errors.New("registry authentication failed")
	// ErrUnavailable: the registry cannot be reached, fails, or stalls.
	ErrUnavailable = errors.New("registry unavailable")
	// ErrInvalidImage: the image is one this node refuses: no manifest for
	// its platform, a corrupt or truncated layer, an unsafe or unsupported
	// entry, over the size limit.
	ErrInvalidImage = errors.New("invalid image")
)

// Credential is how the Store authenticates to one registry: a user name and
// password (HTTP basic auth, or exchanged for a bearer token when the
// registry asks for one), a bearer token sent as it is, or an identity
// (OAuth refresh) token exchanged for one.
type Credential struct {
	Username, Password, Token string
	// IdentityToken is an OAuth2 refresh token (Docker's "identitytoken").
	IdentityToken string `json:",omitempty"`
}

// Options configure a Store.
type Options struct {
	Dir          string                // e.g. <data-dir>/images; the store owns it
	Credentials  map[string]Credential // per registry host ("host:port"), never logged or put in errors
	Insecure     []string              // registry hosts reached over plain HTTP
	Platform     *v1.Platform          // default: the node's
	MaxUnpacked  int64                 // default 10 GiB: an image whose unpacked size is over it fails
	StallTimeout time.Duration         // default 60 s: a pull that receives no bytes for this long fails
	// Log receives the store's events (pulls, collections); nil discards.
	Log *slog.Logger
}

// Image is an image ready on this node.
type Image struct {
	Digest string // "sha256:<hex>" of the manifest
	Root   string // absolute path of the flattened root directory (read-only tree)
	Size   int64  // unpacked bytes: the sum of the sizes of the root's files
	Config Config
}

// Config is what an image's config says about running it.
type Config struct {
	Entrypoint, Cmd, Env []string
	WorkingDir, User     string
	ExposedPorts         []string // "8080/tcp", sorted
}

// Store is a node's image store. Its methods are safe for concurrent use.
type Store struct {
	dir      string
	opts     Options
	platform v1.Platform
	log      *slog.Logger
	lock     *os.File

	ctx    context.Context // cancelled by Close: stops the pulls under way
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	flights map[string]*flight
	inUse   map[string]int // image hex digest -> Use count
	busy    map[string]int // image and layer hex digests an Ensure is working on
}

// Log attribute keys.
const (
	logDigest   = "digest"
	logRef      = "ref"
	logBytes    = "bytes"
	logDuration = "duration"
	logPath     = "path"
)

// Directory modes: the store's directory and images/ let instances' users
// reach a root by name without listing the others; layers/ and tmp/ are the
// store's alone.
const (
	modePublic  = 0o711
	modePrivate = 0o700
)

// Open opens (creating it if needed) the store in opts.Dir, takes its lock
// (one Store, in one process, owns a directory) and removes what a crash
// left in tmp/.
func Open(opts Options) (*Store, error) {
	if opts.Dir == "" {
		return nil, errors.New("open image store: no directory")
	}
	dir, err := filepath.Abs(opts.Dir)
	if err != nil {
		return nil, fmt.Errorf("open image store: %w", err)
	}
	opts.Dir = dir
	if opts.MaxUnpacked <= 0 {
		opts.MaxUnpacked = DefaultMaxUnpacked
	}
	if opts.StallTimeout <= 0 {
		opts.StallTimeout = DefaultStallTimeout
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	plat := nodePlatform()
	if opts.Platform != nil {
		plat = *opts.Platform
	}
	for _, d := range []struct {
		p    string
		mode os.FileMode
	}{{dir, modePublic}, {filepath.Join(dir, "images"), modePublic}, {filepath.Join(dir, "layers"), modePrivate}, {filepath.Join(dir, "tmp"), modePrivate}} {
		if err := os.MkdirAll(d.p, d.mode); err != nil {
			return nil, fmt.Errorf("open image store: %w", err)
		}
		if err := os.Chmod(d.p, d.mode); err != nil { // MkdirAll obeys the umask and leaves an existing mode
			return nil, fmt.Errorf("open image store: %w", err)
		}
	}
	lock, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open image store: %w", err)
	}
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		lock.Close()
		return nil, fmt.Errorf("open image store: %s is in use by another process (%w)", dir, err)
	}
	s := &Store{dir: dir, opts: opts, platform: plat, log: opts.Log, lock: lock,
		flights: make(map[string]*flight), inUse: make(map[string]int), busy: make(map[string]int)}
	if err := s.cleanTmp(); err != nil {
		lock.Close()
		return nil, err
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	return s, nil
}

// Close stops the pulls under way, waits for them (within ctx) and releases
// the directory. The Store must not be used after.
func (s *Store) Close(ctx context.Context) error {
	s.cancel()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		return fmt.Errorf("close image store: pulls still running: %w", ctx.Err())
	}
	return s.lock.Close()
}

// cleanTmp removes everything in tmp/: unfinished pulls and collections.
func (s *Store) cleanTmp() error {
	tmp := filepath.Join(s.dir, "tmp")
	ents, err := os.ReadDir(tmp)
	if err != nil {
		return fmt.Errorf("open image store: %w", err)
	}
	for _, e := range ents {
		p := filepath.Join(tmp, e.Name())
		s.log.Warn("removing leftover image directory", logPath, p)
		if err := removeTree(p); err != nil {
			return fmt.Errorf("open image store: %w", err)
		}
	}
	return nil
}

// nodePlatform is the platform of this binary.
func nodePlatform() v1.Platform {
	p := v1.Platform{OS: runtime.GOOS, Architecture: runtime.GOARCH}
	if runtime.GOARCH == "arm" {
		p.Variant = "v7" // the common case; set Options.Platform for others
	}
	return p
}

func (s *Store) imageDir(hex string) string { return filepath.Join(s.dir, "images", hex) }
func (s *Store) layerDir(hex string) string { return filepath.Join(s.dir, "layers", hex) }
func (s *Store) tmpDir() string             { return filepath.Join(s.dir, "tmp") }
