// Package nats implements store.Store on NATS JetStream: metadata buckets
// are JetStream key-value buckets and code packages live in a JetStream
// object store, both in file storage, with Config.Replicas copies (one on a
// single node; cluster.go makes the embedded server a cluster member).
//
// The store runs in one of two modes. Embedded (Config.URL empty) starts a
// NATS server inside the process, with JetStream files under
// Config.DataDir/jetstream, and connects to it in-process; it listens for
// clients on TCP only when Config.Listen is set (or, as a cluster member, on
// a random loopback port behind a token), so it never collides with another
// NATS server on the machine. With Config.Cluster it is a member of a NATS
// cluster (cluster.go). Remote (Config.URL set) connects to an existing
// NATS server with JetStream enabled and starts no server.
//
// # Durability
//
// The embedded server runs with JetStream's sync_always (server Options
// SyncAlways): the file store fsyncs every message before the server
// acknowledges it, so a write acknowledged to a caller survives SIGKILL of
// the process and a power loss. Without it JetStream syncs every two minutes
// and a crash can lose the writes of that window, which would lose functions
// that the API reported created. The cost is one fsync per write (per
// 128 KiB chunk for blobs): a KV Put takes about as long as the disk's fsync
// instead of tens of microseconds (on a virtio-disk VM, about 0.3 ms instead
// of 0.02 ms; expect milliseconds on network or spinning disks). Nimbus
// writes metadata only on control-plane operations, so the trade is worth
// it. In remote mode durability is the server's own configuration.
//
// Bucket names are Config.Prefix, "_", and the bucket name Store.KV is given;
// the code store is Config.Prefix + "_code". Several stores, and tests, can
// therefore share one NATS server by using different prefixes.
package nats

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
	"golang.org/x/sys/unix"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/lazyre"
	"github.com/nimbus-serverless/nimbus/internal/store"
)

// DefaultPrefix is the bucket-name prefix used when Config.Prefix is empty.
const DefaultPrefix = "nimbus"

const (
	// readyTimeout bounds how long Open waits for the embedded server.
	readyTimeout = 10 * time.Second
	// drainTimeout bounds how long Close waits for in-flight requests.
	drainTimeout = 5 * time.Second
	// codeBucket is the object store's name after the prefix.
	codeBucket = "code"
)

// validName matches the bucket names (and prefixes) JetStream accepts.
var validName = lazyre.New(`^[a-zA-Z0-9_-]+$`)

// Config configures Open.
type Config struct {
	// DataDir holds the embedded server's JetStream files (in
	// DataDir/jetstream). Required in embedded mode, unused in remote mode.
	DataDir string
	// URL selects remote mode: the NATS server to connect to, e.g.
	// nats://127.0.0.1:4222. Empty means embedded mode.
	URL string
	// Prefix is prepended to every bucket name; DefaultPrefix when empty.
	// Letters, digits, "-" and "_".
	Prefix string
	// Listen makes the embedded server also serve NATS clients on this
	// host:port (port 0 picks a free port). Empty means no TCP listener.
	// Only valid in embedded mode.
	Listen string
	// Logger receives the connection's and the embedded server's logs;
	// nil discards them.
	Logger *slog.Logger
	// Cluster, with Cluster.Listen set, makes the embedded server a member
	// of a NATS cluster (cluster.go). Only valid in embedded mode.
	Cluster Cluster
	// Replicas is how many copies JetStream keeps of every bucket and
	// stream Nimbus makes: 1 to MaxReplicas, at most the cluster's members
	// in embedded mode; 0 picks the default: 3 when the cluster has 3
	// members or more, else 1. Store.Replicas returns the value in force,
	// which the node hands every other part that makes streams.
	Replicas int
	// TLS secures the routes between members, the client listener
	// (Listen) and the connection to a remote server (URL), mutually.
	TLS TLSFiles
	// ObserveWrite, when set, is told how long each write took: op is
	// kv_create, kv_update, kv_put, kv_delete or blob_put (metrics).
	// It must not block.
	ObserveWrite func(op string, d time.Duration)

	// clientToken guards the loopback listener of a cluster member
	// without Listen (clusterOptions).
	clientToken string
}

// Validate reports the first invalid field of c.
func (c Config) Validate() error {
	if c.Prefix != "" && !validName().MatchString(c.Prefix) {
		return fmt.Errorf("nats config: Prefix %q: only letters, digits, \"-\" and \"_\" are allowed", c.Prefix)
	}
	if err := c.validateCluster(); err != nil {
		return err
	}
	if c.URL != "" {
		if c.Listen != "" {
			return errors.New("nats config: Listen is only valid in embedded mode (URL is set)")
		}
		return nil
	}
	if c.DataDir == "" {
		return errors.New("nats config: DataDir is required in embedded mode (URL is empty)")
	}
	if c.Listen != "" {
		if _, _, err := splitListen(c.Listen); err != nil {
			return fmt.Errorf("nats config: Listen: %w", err)
		}
	}
	return nil
}

// splitListen parses host:port, mapping port 0 to the server's "random
// port" value (its own 0 means the default, 4222).
func splitListen(addr string) (string, int, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("bad port %q", p)
	}
	if port == 0 {
		port = server.RANDOM_PORT
	}
	return host, port, nil
}

// Store is a store.Store on NATS JetStream.
type Store struct {
	cfg   Config
	log   *slog.Logger
	proc  *inProcess // the embedded server; nil in remote mode
	nc    *nats.Conn
	js    jetstream.JetStream
	blobs *blobs

	closed    chan struct{} // closed by the connection's ClosedHandler
	closeOnce sync.Once
	closeErr  error

	mu  sync.Mutex
	kvs map[string]*kv // by full bucket name

	// The embedded server's health (health.go).
	healthMu    sync.Mutex
	unhealthy   error
	stopMonitor context.CancelFunc
	monitorDone chan struct{}
	restarts    atomic.Int64
}

var _ store.Store = (*Store)(nil)

// Open starts the embedded server (embedded mode) or connects to cfg.URL
// (remote mode) and opens the code object store, creating it if needed.
// ctx bounds the start-up only.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Prefix == "" {
		cfg.Prefix = DefaultPrefix
	}
	cfg.Replicas = replicas(cfg.Replicas, cfg.Cluster)
	if cfg.Cluster.Listen != "" && cfg.Listen == "" {
		cfg.clientToken = nuid.Next() + nuid.Next()
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Store{
		cfg:    cfg,
		log:    log,
		closed: make(chan struct{}),
		kvs:    make(map[string]*kv),
	}
	if err := s.connect(ctx); err != nil {
		s.shutdownServer()
		return nil, err
	}
	if err := s.openBlobs(ctx); err != nil {
		_ = s.Close(context.Background())
		return nil, err
	}
	if s.proc != nil {
		mctx, cancel := context.WithCancel(context.Background())
		s.stopMonitor, s.monitorDone = cancel, make(chan struct{})
		go s.monitor(mctx)
	}
	return s, nil
}

// connect starts the embedded server if needed and connects to NATS.
func (s *Store) connect(ctx context.Context) error {
	url := s.cfg.URL
	opts := []nats.Option{
		nats.Name("nimbus"),
		nats.MaxReconnects(-1),
		nats.DrainTimeout(drainTimeout),
		nats.ClosedHandler(func(*nats.Conn) { close(s.closed) }),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				s.log.Warn("nats disconnected", nimbus.LogErr, err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			s.log.Info("nats reconnected", "url", nc.ConnectedUrlRedacted())
		}),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			s.log.Error("nats async error", nimbus.LogErr, err)
		}),
	}
	if url != "" {
		opts = append(opts, clientTLS(s.cfg.TLS)...)
	}
	if url == "" {
		srv, err := startServer(ctx, s.cfg, s.log)
		if err != nil {
			return err
		}
		s.proc = &inProcess{srv: srv}
		// In process, without TLS even when the listener wants it.
		url = "nats://" + strings.TrimPrefix(strings.TrimPrefix(srv.ClientURL(), "tls://"), "nats://")
		// Reconnect at once to a server restarted after a full disk.
		opts = append(opts, nats.InProcessServer(s.proc), nats.ReconnectWait(50*time.Millisecond),
			nats.ReconnectJitter(0, 0))
		if s.cfg.clientToken != "" {
			opts = append(opts, nats.Token(s.cfg.clientToken))
		}
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return fmt.Errorf("nats connect: %w", err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return fmt.Errorf("jetstream: %w", err)
	}
	s.nc, s.js = nc, js
	if s.cfg.Cluster.Listen != "" {
		if err := s.waitForCluster(ctx); err != nil {
			nc.Close()
			return err
		}
	}
	return nil
}

// diskSize is the size of dir's file system (0, JetStream's default, when
// it cannot be read).
func diskSize(dir string) int64 {
	var st unix.Statfs_t
	if err := os.MkdirAll(dir, 0o755); err != nil || unix.Statfs(dir, &st) != nil {
		return 0
	}
	return int64(st.Blocks) * st.Bsize
}

// startServer starts an embedded server with JetStream and waits until it
// accepts connections.
func startServer(ctx context.Context, cfg Config, log *slog.Logger) (*server.Server, error) {
	opts := &server.Options{
		ServerName: "nimbus",
		JetStream:  true,
		StoreDir:   cfg.DataDir, // the server adds "jetstream"
		SyncAlways: true,        // see the package comment
		DontListen: cfg.Listen == "",
		NoSigs:     true,
		NoLog:      true,
		// Room for a 1 MB async event and its envelope in one message.
		MaxPayload: 8 << 20,
		// The disk is the limit: by default JetStream takes 75 % of the
		// space free when it starts, once, and refuses writes past that
		// for good, even when space is freed later.
		JetStreamMaxStore: diskSize(cfg.DataDir),
	}
	if cfg.Listen != "" {
		host, port, err := splitListen(cfg.Listen)
		if err != nil {
			return nil, fmt.Errorf("nats config: Listen: %w", err)
		}
		opts.Host, opts.Port = host, port
	}
	if err := clusterOptions(opts, cfg); err != nil {
		return nil, err
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("nats server: %w", err)
	}
	l := &serverLogger{l: log.With("component", "nats-server")}
	srv.SetLogger(l, l.l.Enabled(ctx, slog.LevelDebug), false)
	srv.Start() // returns early, after logging a fatal error, if JetStream fails
	if l.lastFatal() != "" || !srv.JetStreamEnabled() {
		srv.Shutdown()
		srv.WaitForShutdown()
		msg := l.lastFatal()
		if msg == "" {
			msg = "see the server log"
		}
		return nil, fmt.Errorf("nats server: jetstream did not start (data dir %s): %s", cfg.DataDir, msg)
	}

	wait := readyTimeout
	if d, ok := ctx.Deadline(); ok && time.Until(d) < wait {
		wait = time.Until(d)
	}
	if !srv.ReadyForConnections(wait) {
		srv.Shutdown()
		srv.WaitForShutdown()
		return nil, fmt.Errorf("nats server: not ready after %s (data dir %s)", wait, cfg.DataDir)
	}
	return srv, nil
}

// openBlobs opens or creates the code object store.
func (s *Store) openBlobs(ctx context.Context) error {
	name := s.cfg.Prefix + "_" + codeBucket
	obs, err := openOrCreate(ctx,
		func() (jetstream.ObjectStore, error) { return s.js.ObjectStore(ctx, name) },
		func() (jetstream.ObjectStore, error) {
			return s.js.CreateObjectStore(ctx, jetstream.ObjectStoreConfig{
				Bucket:   name,
				Storage:  jetstream.FileStorage,
				Replicas: s.cfg.Replicas,
			})
		})
	if err != nil {
		return fmt.Errorf("open object store %s: %w", name, err)
	}
	// The handles that Put uses, whose JetStream default timeout bounds the
	// wait for each chunk's acknowledgement (blobs.go).
	var handles [2]jetstream.ObjectStore
	for i, d := range []time.Duration{smallAckTimeout, largeAckTimeout} {
		js, err := jetstream.New(s.nc, jetstream.WithDefaultTimeout(d))
		if err == nil {
			if c, ok := s.js.(clusterJS); ok {
				js = clusterJS{JetStream: js, wait: c.wait}
			}
			handles[i], err = openExisting(ctx, func() (jetstream.ObjectStore, error) { return js.ObjectStore(ctx, name) })
		}
		if err != nil {
			return fmt.Errorf("open object store %s: %w", name, err)
		}
	}
	s.blobs = &blobs{obs: obs, small: handles[0], large: handles[1], retrier: s.newRetrier(), health: s.Healthy, observe: s.cfg.ObserveWrite}
	return nil
}

// KV opens the bucket Prefix_bucket, creating it (file storage, history 1)
// if needed. Errors: nimbus.ErrInvalid for a bucket name other than letters,
// digits, "-" and "_".
func (s *Store) KV(ctx context.Context, bucket string) (store.KV, error) {
	return s.openKV(ctx, bucket, 0)
}

// KVWithTTL is KV for a bucket whose entries expire ttl after their last
// write (the bucket's TTL is set, or updated, when it is opened).
func (s *Store) KVWithTTL(ctx context.Context, bucket string, ttl time.Duration) (store.KV, error) {
	return s.openKV(ctx, bucket, ttl)
}

func (s *Store) openKV(ctx context.Context, bucket string, ttl time.Duration) (store.KV, error) {
	if !validName().MatchString(bucket) {
		return nil, nimbus.Invalidf("invalid bucket name %q: only letters, digits, \"-\" and \"_\" are allowed", bucket)
	}
	name := s.cfg.Prefix + "_" + bucket
	s.mu.Lock()
	defer s.mu.Unlock()
	if b, ok := s.kvs[name]; ok {
		return b, nil
	}
	cfg := jetstream.KeyValueConfig{Bucket: name, History: 1, Storage: jetstream.FileStorage, Replicas: s.cfg.Replicas, TTL: ttl}
	var b jetstream.KeyValue
	var err error
	if ttl > 0 {
		b, err = s.js.CreateOrUpdateKeyValue(ctx, cfg)
	} else {
		b, err = openOrCreate(ctx,
			func() (jetstream.KeyValue, error) { return s.js.KeyValue(ctx, name) },
			func() (jetstream.KeyValue, error) { return s.js.CreateKeyValue(ctx, cfg) })
	}
	if err != nil {
		return nil, fmt.Errorf("open kv bucket %s: %w", name, err)
	}
	k := &kv{kv: b, retrier: s.newRetrier(), health: s.Healthy, observe: s.cfg.ObserveWrite}
	s.kvs[name] = k
	return k, nil
}

// openOrCreate opens a bucket with open, creating it with create when it
// does not exist. When another member creates it at the same moment,
// create reports it made and open can still, for a moment, report it not
// found (a meta leader that has not yet applied the creation answers);
// open is then tried again (openExisting).
func openOrCreate[T any](ctx context.Context, open, create func() (T, error)) (T, error) {
	v, err := open()
	if !errors.Is(err, jetstream.ErrBucketNotFound) {
		return v, err
	}
	v, err = create()
	if !errors.Is(err, jetstream.ErrBucketExists) && !errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
		return v, err
	}
	return openExisting(ctx, open)
}

// existsWait bounds how long openExisting waits for a bucket known to
// exist to be found.
const existsWait = 10 * time.Second

// openExisting opens a bucket known to exist, trying again every 100 ms,
// for up to existsWait, while it is reported not found.
func openExisting[T any](ctx context.Context, open func() (T, error)) (T, error) {
	deadline := time.Now().Add(existsWait)
	for {
		v, err := open()
		if !errors.Is(err, jetstream.ErrBucketNotFound) || time.Now().After(deadline) {
			return v, err
		}
		select {
		case <-ctx.Done():
			return v, err
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Replicas is how many copies JetStream keeps of each bucket and stream:
// Config.Replicas, or its default. Every part that makes a stream or a
// bucket of its own uses this value.
func (s *Store) Replicas() int { return s.cfg.Replicas }

// Blobs returns the code package store.
func (s *Store) Blobs() store.Blobs { return s.blobs }

// Conn returns the NATS connection, for parts that use NATS directly.
func (s *Store) Conn() *nats.Conn { return s.nc }

// JetStream returns the JetStream context of the connection.
func (s *Store) JetStream() jetstream.JetStream { return s.js }

// ClientURL returns the URL other processes can use to reach this store's
// NATS server: Config.URL in remote mode, the listener's URL in embedded
// mode with Config.Listen, and "" for an embedded server without listener.
func (s *Store) ClientURL() string {
	switch {
	case s.proc == nil || s.proc.server() == nil:
		return s.cfg.URL
	case s.cfg.Listen == "":
		return ""
	}
	addr, ok := s.proc.server().Addr().(*net.TCPAddr)
	if !ok {
		return ""
	}
	return "nats://" + addr.String()
}

// Close drains the connection (waiting, within ctx, for in-flight
// requests) and, in embedded mode, shuts the server down and waits until it
// has flushed its files, so the data dir can be opened again. Calling Close
// again returns the first call's result.
func (s *Store) Close(ctx context.Context) error {
	s.closeOnce.Do(func() {
		s.stopMonitoring()
		if err := s.nc.Drain(); err != nil {
			s.nc.Close()
		}
		select {
		case <-s.closed:
		case <-ctx.Done():
			s.nc.Close()
			s.closeErr = fmt.Errorf("nats close: the connection did not drain: %w", ctx.Err())
		}
		s.shutdownServer()
	})
	return s.closeErr
}

// stopMonitoring stops the health checks (and so any restart).
func (s *Store) stopMonitoring() {
	if s.stopMonitor != nil {
		s.stopMonitor()
		<-s.monitorDone
		s.stopMonitor = nil
	}
}

func (s *Store) shutdownServer() {
	s.stopMonitoring()
	if s.proc != nil && s.proc.server() != nil {
		srv := s.proc.server()
		srv.Shutdown()
		srv.WaitForShutdown()
	}
}

// serverLogger sends the embedded server's logs to slog and keeps the last
// fatal error for Open's error message.
type serverLogger struct {
	l     *slog.Logger
	mu    sync.Mutex
	fatal string
}

// Noticef carries the server's start-up banner and routine notices: debug level,
// so that `nimbus serve` prints its own few lines.
func (g *serverLogger) Noticef(format string, v ...any) { g.log(slog.LevelDebug, format, v) }
func (g *serverLogger) Warnf(format string, v ...any)   { g.log(slog.LevelWarn, format, v) }
func (g *serverLogger) Errorf(format string, v ...any)  { g.log(slog.LevelError, format, v) }
func (g *serverLogger) Debugf(format string, v ...any)  { g.log(slog.LevelDebug, format, v) }
func (g *serverLogger) Tracef(format string, v ...any)  { g.log(slog.LevelDebug-4, format, v) }

// Fatalf logs at error level: the embedded server does not exit the
// process, and Open reports the error.
func (g *serverLogger) Fatalf(format string, v ...any) {
	g.mu.Lock()
	g.fatal = fmt.Sprintf(format, v...)
	g.mu.Unlock()
	g.log(slog.LevelError, format, v)
}

// lastFatal returns the last fatal error logged, or "".
func (g *serverLogger) lastFatal() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.fatal
}

func (g *serverLogger) log(level slog.Level, format string, v []any) {
	ctx := context.Background()
	if g.l.Enabled(ctx, level) {
		g.l.Log(ctx, level, fmt.Sprintf(format, v...))
	}
}
