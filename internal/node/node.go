// Package node assembles one Nimbus process: the store (embedded NATS
// JetStream or a remote cluster), the code cache, the function registry, the
// execution engine and the HTTP API. `nimbus serve` and the end-to-end tests
// both start Nimbus through it.
package node

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"time"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/api"
	"github.com/nimbus-serverless/nimbus/internal/async"
	asyncnats "github.com/nimbus-serverless/nimbus/internal/async/nats"
	"github.com/nimbus-serverless/nimbus/internal/audit"
	auditnats "github.com/nimbus-serverless/nimbus/internal/audit/nats"
	"github.com/nimbus-serverless/nimbus/internal/codepkg"
	"github.com/nimbus-serverless/nimbus/internal/destination"
	"github.com/nimbus-serverless/nimbus/internal/engine"
	"github.com/nimbus-serverless/nimbus/internal/fnlog"
	fnlognats "github.com/nimbus-serverless/nimbus/internal/fnlog/nats"
	"github.com/nimbus-serverless/nimbus/internal/image"
	"github.com/nimbus-serverless/nimbus/internal/observe"
	"github.com/nimbus-serverless/nimbus/internal/records"
	"github.com/nimbus-serverless/nimbus/internal/registry"
	"github.com/nimbus-serverless/nimbus/internal/runtimes"
	"github.com/nimbus-serverless/nimbus/internal/sandbox"
	"github.com/nimbus-serverless/nimbus/internal/sandbox/process"
	"github.com/nimbus-serverless/nimbus/internal/seal"
	natsstore "github.com/nimbus-serverless/nimbus/internal/store/nats"
	"github.com/nimbus-serverless/nimbus/internal/tracing"
)

// Config is everything `nimbus serve` can set.
type Config struct {
	Addr       string // HTTP API address
	DataDir    string
	NATSURL    string // remote NATS instead of the embedded server
	NATSListen string // expose the embedded NATS on this address
	NATSPrefix string // bucket-name prefix in a shared NATS
	// Cluster makes the embedded NATS server a member of a NATS cluster
	// (--cluster-name, --cluster-listen, --peers, --cluster-wait;
	// docs/cluster.md); its ServerName is set from the node's id.
	Cluster natsstore.Cluster
	// Replicas is --replicas: the copies JetStream keeps of every bucket
	// and stream (0: 3 with 3 members or more, else 1).
	Replicas int
	// ClusterTLS is --cluster-tls-cert, -key and -ca: mutual TLS on the
	// routes, the --nats-listen listener and the --nats-url connection.
	ClusterTLS natsstore.TLSFiles
	Region     string
	Account    string

	MaxInstances int
	// RegistryConfig is the file of the container registries' credentials
	// (image.LoadCredentials); "" for none.
	RegistryConfig string
	// InsecureRegistries are the registry hosts reached over plain HTTP.
	InsecureRegistries []string
	// ImageMaxSize is the largest unpacked image, bytes (0: 10 GiB).
	ImageMaxSize int64
	// MaxMemoryMB caps the sum of the memory limits of the node's
	// instances (0: the host's memory times MemoryOvercommit; memory.go).
	MaxMemoryMB      int
	MemoryOvercommit float64
	// UploadMemoryMB bounds the code upload bodies (CreateFunction,
	// UpdateFunctionCode) read at once; a request beyond it waits, then
	// gets 429.
	UploadMemoryMB int
	// PrestartedHelpers is how many sandbox helpers are kept started and
	// waiting, to take their start off cold starts (0: none, and no
	// pre-initialised interpreters either).
	PrestartedHelpers int
	// FunctionNetwork is the network of instances of functions that do
	// not choose one: egress (the default), none or host.
	FunctionNetwork string
	IdleTimeout     time.Duration
	// FreezeAfter is how long an idle instance runs before it is frozen
	// (0: at once).
	FreezeAfter  time.Duration
	QueueDepth   int
	QueueTimeout time.Duration
	// CPUQueue and CPUQueueWait are the queue in front of scale-out
	// (engine.Config.CPUQueue; docs/scaling.md): from this many busy
	// instances of a function version on, a request whose expected wait
	// for a busy instance is within CPUQueueWait waits for it rather than
	// make another instance busy (0: off). The default is twice the
	// node's CPUs (DefaultCPUQueue).
	CPUQueue     int
	CPUQueueWait time.Duration
	// The Async Service: the largest event, how long task records and
	// dead letters are kept, how many events run at once on this node, and
	// how long an event batch may go without a heartbeat before another
	// node takes it over.
	AsyncMaxPayload  int
	AsyncRetention   time.Duration
	AsyncConcurrency int
	AsyncAckWait     time.Duration
	// AsyncRetryBase is the first retry's back-off (tests shorten it; 0:
	// the service's default, 1 s).
	AsyncRetryBase time.Duration
	// DestinationBackoff is the wait before a webhook destination's second
	// attempt (tests shorten it; 0: the default, 1 s).
	DestinationBackoff time.Duration
	MaxZipped          int64
	MaxUnzipped        int64
	ShutdownGrace      time.Duration
	// NodeKey is the node key (base64 of 32 bytes) that seals secrets at
	// rest; "" reads <DataDir>/node.key, made on first start. Every node
	// of a cluster must have the same.
	NodeKey string
	// Auth is AuthSigV4 (every API request signed by a Nimbus access key)
	// or AuthNone, refused on a non-loopback Addr unless
	// AllowUnauthenticatedRemote.
	Auth                       string
	AllowUnauthenticatedRemote bool
	// AuthFailureBurst is how many failed authentications a client address
	// may make before it is refused for a while (one more every 3 s).
	AuthFailureBurst int
	// AuditRetention is how long the audit trail keeps its events.
	AuditRetention time.Duration
	// InvocationRetention is how long invocation records and function
	// log lines are kept.
	InvocationRetention time.Duration
	// Prices is the price table of usage reports.
	Prices records.Prices
	// LogMaxBytes bounds each function's stored log; LogRate is how many
	// MiB per second of output each instance may log (0: no limit).
	LogMaxBytes int64
	LogRate     float64
	// NoObservability turns off invocation records, usage, durable logs,
	// metrics and traces: for benchmarks that measure what they cost.
	NoObservability bool
	// OTLPEndpoint is --otlp-endpoint: the OTLP collector that invocation
	// traces go to (tracing is also on when OTEL_EXPORTER_OTLP_ENDPOINT is
	// set; docs/observability.md).
	OTLPEndpoint string
	// MetricsAddr, when set, also serves GET /metrics on this host:port,
	// without authentication (metrics.go).
	MetricsAddr string
	// NoConsole turns the web console (/console/) off.
	NoConsole bool
	// AdvertiseURL is the base URL of this node's API that the other
	// nodes of the cluster forward invocations to ("": http:// and the
	// listening address).
	AdvertiseURL string
	// ClusterHeartbeat and ClusterTTL are how often the node writes its
	// heartbeat and how long the others keep it without one (0: 1 s and
	// 5 s; tests change them).
	ClusterHeartbeat, ClusterTTL time.Duration
	Logger                       *slog.Logger
}

// DefaultDataDir is /var/lib/nimbus for root (a path unprivileged function
// users can traverse) and $XDG_DATA_HOME/nimbus (~/.local/share/nimbus)
// otherwise.
func DefaultDataDir() string {
	if os.Geteuid() == 0 {
		return "/var/lib/nimbus"
	}
	if d := os.Getenv("XDG_DATA_HOME"); d != "" {
		return filepath.Join(d, "nimbus")
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return filepath.Join(os.TempDir(), "nimbus")
	}
	return filepath.Join(home, ".local", "share", "nimbus")
}

// Defaults returns a Config with every default filled in.
func Defaults() Config {
	lim := codepkg.DefaultLimits()
	return Config{
		Addr:         "127.0.0.1:9000",
		DataDir:      DefaultDataDir(),
		NATSPrefix:   "nimbus",
		Region:       "us-east-1",
		Account:      "000000000000",
		MaxInstances: 1000,

		MemoryOvercommit: 1.5,
		UploadMemoryMB:   256,

		PrestartedHelpers: process.DefaultPoolSize,
		FunctionNetwork:   nimbus.NetworkEgress,
		IdleTimeout:       10 * time.Minute,
		FreezeAfter:       100 * time.Millisecond,
		QueueDepth:        1000,
		QueueTimeout:      10 * time.Second,
		CPUQueue:          DefaultCPUQueue(),
		CPUQueueWait:      engine.DefaultCPUQueueWait,
		AsyncMaxPayload:   async.DefaultMaxPayload,
		AsyncRetention:    async.DefaultRetention,
		AsyncConcurrency:  async.DefaultConcurrency,
		AsyncAckWait:      asyncnats.DefaultClaimTTL,
		MaxZipped:         lim.MaxZipped,
		MaxUnzipped:       lim.MaxUnzipped,
		ShutdownGrace:     30 * time.Second,
		Auth:              AuthSigV4,
		AuthFailureBurst:  20,
		AuditRetention:    audit.DefaultRetention,

		InvocationRetention: records.DefaultRetention,
		Prices:              records.DefaultPrices(),
		LogMaxBytes:         fnlog.DefaultMaxBytes,
		LogRate:             engine.DefaultLogRate >> 20,
	}
}

// DefaultCPUQueue is --cpu-queue's default: twice the node's CPUs. A busy
// instance is not on a CPU all the time (it waits while the node writes
// its request and reads its answer), so the CPUs' count alone would leave
// some idle; in the peer benchmark on 2 vCPUs (docs/BENCHMARKS.md, ninth
// run) 4 held p99 within 4x p50 at 16 connections with no loss of
// throughput, 2 cost the function URL 12 %.
func DefaultCPUQueue() int { return 2 * runtime.NumCPU() }

// Validate names the first bad field.
func (c *Config) Validate() error {
	switch {
	case c.Addr == "":
		return errors.New("--addr must not be empty")
	case c.DataDir == "":
		return errors.New("--data-dir must not be empty")
	case c.MaxInstances < 1:
		return fmt.Errorf("--max-instances must be at least 1, not %d", c.MaxInstances)
	case c.MaxMemoryMB < 0:
		return fmt.Errorf("--max-memory must be a number of MB, or 0 for the host's memory times --memory-overcommit, not %d", c.MaxMemoryMB)
	case !(c.MemoryOvercommit > 0 && c.MemoryOvercommit <= 100):
		return fmt.Errorf("--memory-overcommit must be a number above 0 and at most 100 (e.g. 1.5), not %v", c.MemoryOvercommit)
	case c.UploadMemoryMB < 1:
		return fmt.Errorf("--max-upload-memory must be at least 1 MB, not %d", c.UploadMemoryMB)
	case c.PrestartedHelpers < 0 || c.PrestartedHelpers > 64:
		return fmt.Errorf("--prestarted-helpers must be 0 to 64, not %d", c.PrestartedHelpers)
	case c.IdleTimeout <= 0:
		return fmt.Errorf("--instance-idle-timeout must be positive, not %s", c.IdleTimeout)
	case c.FreezeAfter < 0 || c.FreezeAfter >= c.IdleTimeout:
		return fmt.Errorf("--freeze-after must be 0 or more and below --instance-idle-timeout, not %s", c.FreezeAfter)
	case !validNetwork(c.FunctionNetwork):
		return fmt.Errorf("--function-network must be egress, none or host, not %q", c.FunctionNetwork)
	case c.QueueDepth < 0:
		return fmt.Errorf("--queue-depth must not be negative, not %d", c.QueueDepth)
	case c.QueueTimeout <= 0:
		return fmt.Errorf("--queue-timeout must be positive, not %s", c.QueueTimeout)
	case c.CPUQueue < 0:
		return fmt.Errorf("--cpu-queue must not be negative, not %d", c.CPUQueue)
	case c.CPUQueue > 0 && c.CPUQueueWait <= 0:
		return fmt.Errorf("--cpu-queue-wait must be positive, not %s", c.CPUQueueWait)
	case c.AsyncMaxPayload < 1 || c.AsyncMaxPayload > 6<<20:
		return fmt.Errorf("--async-max-payload must be 1 to %d bytes, not %d", 6<<20, c.AsyncMaxPayload)
	case c.AsyncRetention < time.Minute:
		return fmt.Errorf("--async-retention must be at least 1m, not %s", c.AsyncRetention)
	case c.AsyncConcurrency < 1:
		return fmt.Errorf("--async-concurrency must be at least 1, not %d", c.AsyncConcurrency)
	case c.AsyncAckWait < time.Second:
		return fmt.Errorf("--async-ack-wait must be at least 1s, not %s", c.AsyncAckWait)
	case c.MaxZipped < 1 || c.MaxUnzipped < 1:
		return errors.New("--max-code-size and --max-unzipped-size must be positive")
	case len(c.Account) != 12:
		return fmt.Errorf("--account must be 12 digits, not %q", c.Account)
	case c.AuditRetention < time.Hour:
		return fmt.Errorf("--audit-retention must be at least 1h, not %s", c.AuditRetention)
	case c.InvocationRetention < time.Hour:
		return fmt.Errorf("--invocation-retention must be at least 1h, not %s", c.InvocationRetention)
	case c.Prices.Check() != nil:
		return fmt.Errorf("--price-*: %v", c.Prices.Check())
	case c.LogMaxBytes < 1<<20:
		return fmt.Errorf("--log-max-bytes must be at least 1048576 (1 MiB), not %d", c.LogMaxBytes)
	case !(c.LogRate >= 0 && c.LogRate <= 1<<20):
		return fmt.Errorf("--log-rate must be a number of MiB per second from 0 (no limit) up, not %v", c.LogRate)
	case c.AuthFailureBurst < 1:
		return fmt.Errorf("AuthFailureBurst must be at least 1, not %d", c.AuthFailureBurst)
	case c.OTLPEndpoint != "" && tracing.ValidateEndpoint(c.OTLPEndpoint) != nil:
		return fmt.Errorf("--otlp-endpoint: %w", tracing.ValidateEndpoint(c.OTLPEndpoint))
	case validMetricsAddr(c.MetricsAddr) != nil:
		return validMetricsAddr(c.MetricsAddr)
	case validAdvertiseURL(c.AdvertiseURL) != nil:
		return validAdvertiseURL(c.AdvertiseURL)
	case c.ClusterHeartbeat < 0 || c.ClusterTTL < 0 || c.clusterTTL() < 2*c.clusterHeartbeat():
		return fmt.Errorf("the cluster's heartbeat interval (%s) and TTL (%s) must not be negative, and the TTL at least two intervals", c.ClusterHeartbeat, c.ClusterTTL)
	case c.storeConfig().Validate() != nil:
		return c.storeConfig().Validate()
	}
	return c.validateAuth()
}

// storeConfig is the store's part of c.
func (c *Config) storeConfig() natsstore.Config {
	return natsstore.Config{
		DataDir: c.DataDir, URL: c.NATSURL, Prefix: c.NATSPrefix, Listen: c.NATSListen,
		Cluster: c.Cluster, Replicas: c.Replicas, TLS: c.ClusterTLS,
	}
}

// Node is a running Nimbus process.
type Node struct {
	cfg         Config
	log         *slog.Logger
	lock        *dataDirLock
	key         *seal.Key        // seals secrets at rest
	auth        authParts        // auth.go
	catchUp     catchUp          // catchup.go
	audit       *auditnats.Log   // audit.go; closing the store closes it
	fnlogs      *fnlognats.Store // fnlogs.go
	logs        *engine.LogStore // functions' recent lines in memory
	store       *natsstore.Store // the node's async and triggers use NATS itself
	registry    *registry.Registry
	cache       *codepkg.Cache
	images      *image.Store
	sandbox     *process.Backend // the node made it, the node closes it
	engine      *engine.Engine
	records     *records.Store    // records.go
	invoker     *observe.Invoker  // the engine, observed: what every caller uses
	tracing     *tracing.Provider // tracing.go
	api         *api.Server
	async       asyncParts // async.go
	destOnce    sync.Once
	dest        *destination.Sender // async.go: destinationSender
	triggers    triggerParts        // triggers.go
	metrics     metricsParts        // metrics.go
	provisioned provisionedVersions // provisioned.go
	changeLocks nameLocks           // changes.go: one function's changes apply in order
	cluster     clusterParts        // cluster.go
	http        *http.Server
	ln          net.Listener
	// stopping closes when Shutdown begins: the API's streaming answers
	// (log follows, the console's live tail) end then.
	stopping     chan struct{}
	stoppingOnce sync.Once

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// Open builds every part and listens on cfg.Addr; Serve starts answering.
func Open(ctx context.Context, cfg Config) (_ *Node, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	if err := checkTraversable(cfg.DataDir); err != nil {
		return nil, err
	}
	lock, err := lockDataDir(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	n := &Node{cfg: cfg, log: log, lock: lock, stopping: make(chan struct{})}
	n.openMetrics()
	defer func() {
		if err != nil {
			n.closeParts(context.Background())
		}
	}()
	if n.key, err = seal.LoadOrCreate(cfg.DataDir, cfg.NodeKey); err != nil {
		return nil, err
	}
	sc := cfg.storeConfig()
	sc.Logger, sc.ObserveWrite = log, n.metrics.m.StoreWrite
	if sc.Cluster.Listen != "" {
		// The node's id names its server in the cluster.
		if sc.Cluster.ServerName, err = nodeID(cfg.DataDir); err != nil {
			return nil, err
		}
		// Members prove they share the node key on their routes.
		sc.Cluster.Secret = base64.RawURLEncoding.EncodeToString(n.key.Derive("nats-cluster-routes"))
	}
	n.store, err = natsstore.Open(ctx, sc)
	if err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	kv, err := n.store.KV(ctx, "functions")
	if err != nil {
		return nil, fmt.Errorf("open functions bucket: %w", err)
	}
	lim := codepkg.DefaultLimits()
	lim.MaxZipped, lim.MaxUnzipped = cfg.MaxZipped, cfg.MaxUnzipped
	cache, err := codepkg.NewCache(filepath.Join(cfg.DataDir, "code"), n.store.Blobs(), lim, log)
	if err != nil {
		return nil, fmt.Errorf("code cache: %w", err)
	}
	n.cache = cache
	if n.images, err = openImages(cfg, filepath.Join(cfg.DataDir, "images"), log); err != nil {
		return nil, fmt.Errorf("image store: %w", err)
	}
	rts := runtimes.Discover(log)
	bootDir := filepath.Join(cfg.DataDir, "runtimes")
	if err := runtimes.Install(bootDir); err != nil {
		return nil, fmt.Errorf("install bootstraps: %w", err)
	}
	sb, err := process.New(process.Config{
		Root: filepath.Join(cfg.DataDir, "instances"),
		// Instances see their own code and the (read-only) bootstraps,
		// never the store, other functions' code or other instances.
		HidePaths: []string{
			filepath.Join(cfg.DataDir, "jetstream"),
			filepath.Join(cfg.DataDir, "code"),
			filepath.Join(cfg.DataDir, "instances"),
		},
		// Interpreters installed outside /usr stay visible in an
		// instance's own root.
		SystemPaths: runtimes.InstallDirs(rts),
		PoolSize:    poolSize(cfg.PrestartedHelpers),
		Zygotes:     zygotes(rts, bootDir, cfg.PrestartedHelpers),
		Logger:      log,
	})
	if err != nil {
		return nil, fmt.Errorf("sandbox: %w", err)
	}
	n.sandbox = sb
	log.Info("sandbox", "isolation", sb.Describe())
	ids := make([]string, len(rts))
	for i, rt := range rts {
		ids[i] = rt.ID
	}
	versions, err := n.store.KV(ctx, "versions")
	if err != nil {
		return nil, fmt.Errorf("open versions bucket: %w", err)
	}
	layers, err := n.store.KV(ctx, "layers")
	if err != nil {
		return nil, fmt.Errorf("open layers bucket: %w", err)
	}
	n.registry, err = registry.Open(ctx, registry.Config{
		KV: kv, Versions: versions, Layers: layers, Blobs: n.store.Blobs(), Code: cache, Images: registryImages{n.images}, Key: n.key, Runtimes: ids, Limits: lim, Logger: log,
	})
	if err != nil {
		return nil, err
	}
	logs := engine.NewLogStore(0, 0)
	n.logs = logs
	if err := n.openFunctionLogs(ctx, logs); err != nil {
		return nil, err
	}
	memMB, err := cfg.memoryBudgetMB()
	if err != nil {
		return nil, err
	}
	log.Info("memory admission", "max_memory_mb", memMB, "overcommit", cfg.MemoryOvercommit, "max_memory_flag", cfg.MaxMemoryMB > 0)
	if err := n.openTracing(ctx); err != nil {
		return nil, err
	}
	n.engine, err = engine.New(engine.Config{
		Sandbox: sb, Code: n.registry.CodeWithLayers(cache), Images: engineImages{n.images}, Runtimes: rts, BootstrapDir: bootDir, Logs: logs, LogRate: engineLogRate(cfg.LogRate),
		Region: cfg.Region, Account: cfg.Account, MaxInstances: cfg.MaxInstances, MaxMemoryMB: memMB,
		IdleTimeout: cfg.IdleTimeout, FreezeAfter: cfg.FreezeAfter, QueueDepth: cfg.QueueDepth, QueueTimeout: cfg.QueueTimeout,
		CPUQueue: cfg.CPUQueue, CPUQueueWait: cfg.CPUQueueWait,
		ReapInterval: min(cfg.IdleTimeout/4, 30*time.Second), Logger: log,
		Network: sandbox.Network(cfg.FunctionNetwork), TracerProvider: n.tracing.TracerProvider(),
	})
	if err != nil {
		return nil, err
	}
	bg, cancel := context.WithCancel(context.Background()) // the node's lifetime: closeParts ends it
	n.cancel = cancel
	n.registry.OnChange(func(name string) { n.functionChanged(bg, name) })
	if err := n.openAuth(ctx); err != nil {
		return nil, err
	}
	n.startCatchUp()
	if err := n.openAudit(ctx); err != nil {
		return nil, err
	}
	if err := n.openRecords(ctx); err != nil {
		return nil, err
	}
	if err := n.openAsync(ctx); err != nil {
		return nil, err
	}
	if err := n.openTriggers(ctx); err != nil {
		return nil, err
	}
	n.watchMetrics()
	n.ln, err = net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	started := time.Now()
	if err := n.openCluster(ctx, started); err != nil {
		return nil, fmt.Errorf("join the cluster: %w", err)
	}
	n.api = api.New(api.Config{
		Registry: n.registry, Invoker: n.cluster.forwarder, Logs: logs, Region: cfg.Region, Account: cfg.Account,
		MaxCodeBody: base64Len(cfg.MaxZipped) + 64<<10, UploadMemory: int64(cfg.UploadMemoryMB) << 20, Logger: log,
		Async: n.asyncAPI(), Triggers: n.triggerAPI(), S3: n.s3API(),
		Verifier: n.auth.verifier, Limiter: n.auth.limiter, Keys: nodeKeys{n.auth.keys, n}, Ready: n.readyChecks(),
		Audit: n.auditAPI(), Records: n.recordsAPI(), DurableLogs: n.durableLogs(),
		Metrics: n.metrics.m.Handler(), Closing: n.stopping, Limits: accountLimits{cfg}, Instances: n.engine,
		Nodes: n.cluster.members, SelfID: n.cluster.members.Self(), Forwards: n.cluster.forwarder,
	})
	if err := n.listenMetrics(); err != nil {
		return nil, err
	}
	handler, err := n.handler(started)
	if err != nil {
		return nil, err
	}
	n.http = &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	n.http.RegisterOnShutdown(func() { n.stoppingOnce.Do(func() { close(n.stopping) }) })
	if err := n.registry.Resume(ctx); err != nil {
		log.Warn("resume preparations", nimbus.LogErr, err)
	}
	live := n.spreadProvisioned(n.cluster.members.LiveIDs())
	n.warmProvisioned(ctx)
	n.wg.Go(func() { n.catchUpLoop(bg) })
	n.wg.Go(func() { n.pruneLoop(bg, cache) })
	n.wg.Go(func() { n.shareConcurrency(bg, live) })
	n.serveMetrics()
	return n, nil
}

// checkTraversable makes sure unprivileged function users can reach the
// code under dir: when Nimbus runs as root, instances run as other users.
func checkTraversable(dir string) error {
	if os.Geteuid() != 0 {
		return nil
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	for d := abs; ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil {
			return fmt.Errorf("data dir: %w", err)
		}
		if fi.Mode().Perm()&0o001 == 0 {
			return fmt.Errorf("--data-dir %s: functions run as unprivileged users and cannot reach their code, because %s is not searchable by others (chmod o+x %s, or choose a data dir such as /var/lib/nimbus)", dir, d, d)
		}
		if d == filepath.Dir(d) {
			return nil
		}
	}
}

// zygotes are the pre-initialised interpreters of rts (installed in
// bootDir) the sandbox keeps, one each, unless helpers is 0 (nothing is
// started ahead).
func zygotes(rts []runtimes.Runtime, bootDir string, helpers int) []*sandbox.Zygote {
	if helpers == 0 {
		return nil
	}
	var zs []*sandbox.Zygote
	for _, rt := range rts {
		if z := runtimes.Zygote(rt, runtimes.Dir(rt, bootDir)); z != nil {
			zs = append(zs, z)
		}
	}
	return zs
}

// poolSize maps "0 helpers" to the sandbox's "no pool" (its 0 is the default).
func poolSize(n int) int {
	if n == 0 {
		return -1
	}
	return n
}

func base64Len(n int64) int64 { return (n + 2) / 3 * 4 }

// warmProvisioned starts the warm minimum of functions that have one.
func (n *Node) warmProvisioned(ctx context.Context) {
	err := n.registry.Walk(ctx, func(fn *nimbus.Function) bool {
		if fn.ProvisionedConcurrency > 0 {
			n.engine.Refresh(fn.Name, fn)
		}
		if len(fn.ProvisionedVersions) > 0 {
			n.provisionVersions(fn.Name, fn)
		}
		return true
	})
	if err != nil {
		n.log.Warn("list functions", nimbus.LogErr, err)
	}
}

// pruneInterval is how often unused unpacked code and unused stored code
// packages are removed.
const pruneInterval = 5 * time.Minute

// pruneLoop prunes at once, then every pruneInterval, until ctx ends.
func (n *Node) pruneLoop(ctx context.Context, cache *codepkg.Cache) {
	t := time.NewTicker(pruneInterval)
	defer t.Stop()
	for {
		n.pruneCode(ctx, cache)
		n.collectCode(ctx)
		n.collectImages()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// collectCode deletes the stored code packages no function uses (those
// whose delete failed, or whose create stopped half way), and the deleted
// layer versions that nothing uses any more.
func (n *Node) collectCode(ctx context.Context) {
	removed, err := n.registry.CollectCode(ctx)
	if err != nil && ctx.Err() == nil {
		n.log.Warn("collect unused code packages", nimbus.LogErr, err)
	}
	if removed > 0 {
		n.log.Info("collected unused code packages", "removed", removed)
	}
}

// pruneCode removes unpacked code that no function and no running instance
// uses.
func (n *Node) pruneCode(ctx context.Context, cache *codepkg.Cache) {
	inUse, err := n.registry.CodeInUse(ctx)
	if err != nil {
		n.log.Warn("list code in use", nimbus.LogErr, err)
		return
	}
	n.engine.CodeInUse(inUse)
	if removed, err := cache.Prune(inUse); err != nil {
		n.log.Warn("prune code cache", nimbus.LogErr, err)
	} else if removed > 0 {
		n.log.Info("pruned code cache", "removed", removed)
	}
}

// ID is the node's id (its data directory's node-id), as invocation
// records name it.
func (n *Node) ID() string {
	id, _ := nodeID(n.cfg.DataDir)
	return id
}

// Addr is the address the API listens on.
func (n *Node) Addr() string { return n.ln.Addr().String() }

// Isolation is what the node's sandbox enforces on instances.
func (n *Node) Isolation() sandbox.Isolation { return n.sandbox.Isolation() }

// Engine is the node's engine (for tests).
func (n *Node) Engine() *engine.Engine { return n.engine }

// Serve answers requests until Shutdown; it returns nil after a shutdown.
func (n *Node) Serve() error {
	err := n.http.Serve(n.ln)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Shutdown stops taking work: it closes the listener (a balancer's
// /readyz fails), leaves the cluster (no more forwards) and has the Async
// Service claim nothing more and hand back the events it claimed and has not
// started, for other nodes to run now. It lets in-flight requests and
// running async events finish within the grace period (or ctx), then stops
// instances and closes the store. It returns within the grace and a few
// seconds more, whatever the parts are waiting on.
func (n *Node) Shutdown(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, n.cfg.ShutdownGrace)
	defer cancel()
	n.leaveCluster() // no more forwards from the other nodes
	asyncDrained := make(chan struct{})
	go func() {
		defer close(asyncDrained)
		n.drainAsync(ctx)
	}()
	err := n.http.Shutdown(ctx)
	if err != nil {
		n.log.Warn("shutdown: requests still running after the grace period", nimbus.LogErr, err)
		_ = n.http.Close()
	}
	<-asyncDrained
	n.closeParts(ctx)
	return err
}

// closeTimeout bounds each part's close once the grace is over.
const closeTimeout = 5 * time.Second

// closeParts closes every part that was opened, in reverse order: the
// triggers and the Async Service let the work they run finish until ctx
// ends, and every part gets closeTimeout more to stop.
func (n *Node) closeParts(ctx context.Context) {
	if n.cancel != nil {
		n.cancel()
	}
	n.closeMetrics()
	n.leaveCluster()
	n.wg.Wait()
	n.closing(n.closeTriggers)
	n.closeAsync(ctx)
	parts := []struct {
		name  string
		close func(context.Context) error
	}{
		{"engine", closer(n.engine)},
		{"tracing", closer(n.tracing)}, // flushes the spans buffered
		{"sandbox", closer(n.sandbox)},
		{"invocation records", closer(n.records)},
		{"registry", closer(n.registry)},
		{"keys", closer(n.auth.keys)},
		{"audit trail", closer(n.audit)},
		{"function logs", closer(n.fnlogs)},
		{"code cache", closer(n.cache)},
		{"image store", closer(n.images)},
		{"store", closer(n.store)},
	}
	for _, p := range parts {
		if p.close == nil {
			continue
		}
		n.closing(func(ctx context.Context) {
			if err := p.close(ctx); err != nil {
				n.log.Warn("close "+p.name, nimbus.LogErr, err)
			}
		})
	}
	if n.ln != nil && n.http == nil {
		n.ln.Close()
	}
	n.lock.release()
}

// closing runs a part's close within closeTimeout.
func (n *Node) closing(f func(context.Context)) {
	ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
	defer cancel()
	f(ctx)
}

// closer is c's Close, nil for a part that was not opened.
func closer[T interface {
	comparable
	Close(context.Context) error
}](c T) func(context.Context) error {
	var zero T
	if c == zero {
		return nil
	}
	return c.Close
}

// validNetwork reports whether s names a network of instances ("": the
// default, egress).
func validNetwork(s string) bool {
	_, err := sandbox.ParseNetwork(s)
	return err == nil
}
