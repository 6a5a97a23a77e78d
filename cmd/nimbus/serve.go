package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/nimbus-serverless/nimbus/internal/node"
	natsstore "github.com/nimbus-serverless/nimbus/internal/store/nats"
)

func newServeCmd() *cobra.Command {
	cfg := node.Defaults()
	var logLevel, logFormat string
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run a Nimbus node (API, engine and, by default, an embedded store)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := newLogger(logLevel, logFormat)
			if err != nil {
				return err
			}
			cfg.Logger = log
			return serve(cmd.Context(), cfg)
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.Addr, "addr", cfg.Addr, "address of the HTTP API")
	f.StringVar(&cfg.DataDir, "data-dir", cfg.DataDir, "directory for all state: store, code cache, instance scratch (env NIMBUS_DATA_DIR)")
	f.StringVar(&cfg.NATSURL, "nats-url", "", "use this NATS cluster (JetStream enabled) instead of the embedded server")
	f.StringVar(&cfg.NATSListen, "nats-listen", "", "also serve the embedded NATS on this host:port (off by default)")
	f.StringVar(&cfg.NATSPrefix, "nats-prefix", cfg.NATSPrefix, "prefix of Nimbus's bucket names in NATS")
	f.StringVar(&cfg.Cluster.Name, "cluster-name", "", "name of the NATS cluster this node's embedded server joins, the same on every member (default \"nimbus\"; docs/cluster.md)")
	f.StringVar(&cfg.Cluster.Listen, "cluster-listen", "", "host:port on which the embedded NATS server takes routes from the other members: makes this node a cluster member (off by default: a single node)")
	f.StringSliceVar(&cfg.Cluster.Peers, "peers", nil, "the other members' --cluster-listen addresses, host:port,host:port (listing this node too is harmless)")
	f.DurationVar(&cfg.Cluster.Wait, "cluster-wait", natsstore.DefaultClusterWait, "how long a cluster member waits at start for its peers (a JetStream quorum) before it gives up")
	f.IntVar(&cfg.Replicas, "replicas", 0, "copies JetStream keeps of every bucket and stream, 1 to 5 (default: 3 when the cluster has 3 members or more, else 1)")
	f.StringVar(&cfg.ClusterTLS.Cert, "cluster-tls-cert", "", "PEM certificate of this member for mutual TLS on the routes, --nats-listen and --nats-url")
	f.StringVar(&cfg.ClusterTLS.Key, "cluster-tls-key", "", "PEM private key of --cluster-tls-cert")
	f.StringVar(&cfg.ClusterTLS.CA, "cluster-tls-ca", "", "PEM CA certificate that signed the other members' (and clients') certificates")
	f.StringVar(&cfg.Region, "region", cfg.Region, "region shown in ARNs and given to functions")
	f.StringVar(&cfg.Account, "account", cfg.Account, "12-digit account id shown in ARNs")
	f.IntVar(&cfg.MaxInstances, "max-instances", cfg.MaxInstances, "most instances on this node, all functions together")
	f.IntVar(&cfg.MaxMemoryMB, "max-memory", 0, "most MB of instance memory limits on this node, all instances together (0: the host's memory times --memory-overcommit)")
	f.Float64Var(&cfg.MemoryOvercommit, "memory-overcommit", cfg.MemoryOvercommit, "how far instances' memory limits may add up beyond the host's memory (1: not at all)")
	f.IntVar(&cfg.UploadMemoryMB, "max-upload-memory", cfg.UploadMemoryMB, "most MB of code upload bodies handled at once; more wait, then get 429")
	f.IntVar(&cfg.PrestartedHelpers, "prestarted-helpers", cfg.PrestartedHelpers, "sandbox helpers kept started to speed up cold starts (0: none)")
	f.StringVar(&cfg.FunctionNetwork, "function-network", cfg.FunctionNetwork, "network of instances of functions that choose none: egress (outside addresses, not this host), none or host (this host's network, loopback included)")
	f.DurationVar(&cfg.IdleTimeout, "instance-idle-timeout", cfg.IdleTimeout, "stop an instance unused for this long")
	f.DurationVar(&cfg.FreezeAfter, "freeze-after", cfg.FreezeAfter, "how long an idle instance runs before it is frozen, so that what it left running burns no CPU (0: at once, as Lambda; each thaw costs about a millisecond on cgroup v1)")
	f.IntVar(&cfg.QueueDepth, "queue-depth", cfg.QueueDepth, "most requests waiting for an instance, per function")
	f.DurationVar(&cfg.QueueTimeout, "queue-timeout", cfg.QueueTimeout, "how long a request may wait for a busy instance to free before a 429 (one waiting for an instance started for it waits for that start)")
	f.IntVar(&cfg.CPUQueue, "cpu-queue", cfg.CPUQueue, "busy instances of a function version from which a request waits briefly for a busy one rather than make another busy, when its expected wait (from the function's recent durations) is within --cpu-queue-wait (twice this machine's CPUs unless given; 0: off; docs/scaling.md)")
	f.DurationVar(&cfg.CPUQueueWait, "cpu-queue-wait", cfg.CPUQueueWait, "longest wait of a request held by --cpu-queue (never beyond the function's timeout); then it takes an idle instance or starts one")
	f.IntVar(&cfg.AsyncMaxPayload, "async-max-payload", cfg.AsyncMaxPayload, "largest asynchronous event in bytes")
	f.DurationVar(&cfg.AsyncRetention, "async-retention", cfg.AsyncRetention, "how long async task records and dead letters are kept")
	f.IntVar(&cfg.AsyncConcurrency, "async-concurrency", cfg.AsyncConcurrency, "most asynchronous events running at once on this node")
	f.DurationVar(&cfg.AsyncAckWait, "async-ack-wait", cfg.AsyncAckWait, "how long an event batch may go without a heartbeat before another node takes it over")
	f.Int64Var(&cfg.MaxZipped, "max-code-size", cfg.MaxZipped, "largest zipped code package, bytes")
	f.Int64Var(&cfg.MaxUnzipped, "max-unzipped-size", cfg.MaxUnzipped, "largest unzipped code package, bytes")
	f.StringVar(&cfg.RegistryConfig, "registry-config", "", `container registries' credentials: a JSON file of {"host:port": {"username", "password"} or {"token"}}, or a Docker config.json ("auths")`)
	f.StringArrayVar(&cfg.InsecureRegistries, "insecure-registry", nil, "a container registry host:port reached over plain HTTP (repeatable)")
	f.Int64Var(&cfg.ImageMaxSize, "image-max-size", 10<<30, "largest unpacked container image, bytes")
	f.DurationVar(&cfg.ShutdownGrace, "shutdown-grace", cfg.ShutdownGrace, "how long in-flight requests may finish on SIGINT/SIGTERM")
	f.StringVar(&cfg.NodeKey, "node-key", "", "node key sealing secrets at rest, base64 of 32 bytes (env NIMBUS_NODE_KEY; default: <data-dir>/node.key, made on first start; the same on every node of a cluster)")
	f.StringVar(&cfg.Auth, "auth", cfg.Auth, "sigv4: every API request must be signed (SigV4) by a Nimbus access key; none: no authentication (local development only, loopback --addr)")
	f.BoolVar(&cfg.AllowUnauthenticatedRemote, "allow-unauthenticated-remote", false, "allow --auth none on a non-loopback --addr (anyone who reaches it can run code on this host)")
	f.BoolVar(&cfg.NoConsole, "no-console", false, "do not serve the web console at /console/")
	f.StringVar(&cfg.AdvertiseURL, "advertise-url", "", "the base URL of this node's API that the other nodes of a cluster reach it at, e.g. http://10.0.0.5:9000 (default: http:// and --addr, the host's name for 0.0.0.0; docs/scaling.md)")
	f.StringVar(&cfg.MetricsAddr, "metrics-addr", "", "also serve GET /metrics on this host:port without authentication, for a Prometheus on a private network (off by default; on --addr /metrics needs an admin key)")
	f.DurationVar(&cfg.AuditRetention, "audit-retention", cfg.AuditRetention, "how long the audit trail keeps its events (at least 1h)")
	f.DurationVar(&cfg.InvocationRetention, "invocation-retention", cfg.InvocationRetention, "how long invocation records and functions' logs are kept (at least 1h)")
	var pricesFile string
	f.StringVar(&pricesFile, "prices", "", "price table of usage reports: a JSON or YAML file of Currency, PerMillionRequests, PerGBSecond, FreeRequestsPerMonth, FreeGBSecondsPerMonth (default: Lambda's list prices); the --price-* flags override it")
	f.StringVar(&cfg.Prices.Currency, "price-currency", cfg.Prices.Currency, "currency of usage costs")
	f.Float64Var(&cfg.Prices.PerMillionRequests, "price-per-million-requests", cfg.Prices.PerMillionRequests, "price of a million billed requests")
	f.Float64Var(&cfg.Prices.PerGBSecond, "price-per-gb-second", cfg.Prices.PerGBSecond, "price of a GB-second (memory GB times billed seconds)")
	f.Int64Var(&cfg.Prices.FreeRequestsPerMonth, "price-free-requests", cfg.Prices.FreeRequestsPerMonth, "free requests per calendar month (all functions together)")
	f.Float64Var(&cfg.Prices.FreeGBSecondsPerMonth, "price-free-gb-seconds", cfg.Prices.FreeGBSecondsPerMonth, "free GB-seconds per calendar month (all functions together)")
	cmd.PreRunE = func(cmd *cobra.Command, _ []string) error {
		if cmd.Flags().Changed("cpu-queue-wait") && cfg.CPUQueue == 0 {
			return errors.New("--cpu-queue-wait is the wait of the queue that --cpu-queue 0 turns off: give one or the other")
		}
		if pricesFile == "" {
			return nil
		}
		p, err := node.LoadPrices(pricesFile)
		if err != nil {
			return err
		}
		// Flags given on the command line win over the file.
		set := func(name string, apply func()) {
			if !cmd.Flags().Changed(name) {
				apply()
			}
		}
		set("price-currency", func() { cfg.Prices.Currency = p.Currency })
		set("price-per-million-requests", func() { cfg.Prices.PerMillionRequests = p.PerMillionRequests })
		set("price-per-gb-second", func() { cfg.Prices.PerGBSecond = p.PerGBSecond })
		set("price-free-requests", func() { cfg.Prices.FreeRequestsPerMonth = p.FreeRequestsPerMonth })
		set("price-free-gb-seconds", func() { cfg.Prices.FreeGBSecondsPerMonth = p.FreeGBSecondsPerMonth })
		return nil
	}
	f.Int64Var(&cfg.LogMaxBytes, "log-max-bytes", cfg.LogMaxBytes, "most bytes of log kept per function, the oldest going first (at least 1 MiB)")
	f.Float64Var(&cfg.LogRate, "log-rate", cfg.LogRate, "MiB per second of output each instance may log, the rest dropped with a marker line (0: no limit)")
	f.StringVar(&cfg.OTLPEndpoint, "otlp-endpoint", "", "send invocation traces to this OTLP collector, e.g. http://127.0.0.1:4318 (default: off, unless OTEL_EXPORTER_OTLP_ENDPOINT is set; docs/observability.md)")
	f.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	f.StringVar(&logFormat, "log-format", "text", "text or json")
	if d := os.Getenv("NIMBUS_DATA_DIR"); d != "" {
		cfg.DataDir = d
	}
	cfg.NodeKey = os.Getenv("NIMBUS_NODE_KEY")
	return cmd
}

func newLogger(level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level must be debug, info, warn or error, not %q", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(os.Stderr, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(os.Stderr, opts)), nil
	}
	return nil, fmt.Errorf("--log-format must be text or json, not %q", format)
}

// serve runs a node until SIGINT or SIGTERM, then shuts it down gracefully.
func serve(ctx context.Context, cfg node.Config) error {
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	n, err := node.Open(ctx, cfg)
	if err != nil {
		return err
	}
	cfg.Logger.Info("nimbus is serving", "addr", "http://"+n.Addr(), "data_dir", cfg.DataDir)
	if a := n.MetricsAddr(); a != "" {
		cfg.Logger.Info("metrics without authentication", "addr", "http://"+a+"/metrics")
	}
	errc := make(chan error, 1)
	go func() { errc <- n.Serve() }()
	select {
	case err := <-errc:
		_ = n.Shutdown(context.Background())
		return err
	case <-ctx.Done():
	}
	stop() // a second signal kills the process at once
	cfg.Logger.Info("shutting down: finishing in-flight requests", "grace", cfg.ShutdownGrace)
	if err := n.Shutdown(context.Background()); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	cfg.Logger.Info("stopped")
	return <-errc
}
