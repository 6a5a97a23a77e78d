package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/metrics"
)

// metricsParts are the node's Prometheus metrics and the listener of
// --metrics-addr.
type metricsParts struct {
	m    *metrics.Metrics
	ln   net.Listener // --metrics-addr; nil when off
	http *http.Server
}

// validMetricsAddr checks --metrics-addr: empty (off) or host:port.
func validMetricsAddr(addr string) error {
	if addr == "" {
		return nil
	}
	_, port, err := net.SplitHostPort(addr)
	if p, perr := strconv.Atoi(port); err != nil || perr != nil || p < 0 || p > 65535 {
		return fmt.Errorf("--metrics-addr must be host:port (e.g. 127.0.0.1:9100), or empty for none, not %q", addr)
	}
	return nil
}

// openMetrics makes the node's metrics, first of its parts, so that the
// others can report into them.
func (n *Node) openMetrics() { n.metrics.m = metrics.New() }

// forgetMetrics removes a deleted function's series (registry OnChange).
func (n *Node) forgetMetrics(name string, fn *nimbus.Function) {
	if fn == nil {
		n.metrics.m.Forget(name)
	}
}

// watchMetrics registers what the metrics read at scrape time: the
// engine's pools and the node, the sandbox's helpers, the Async Service's
// backlog.
func (n *Node) watchMetrics() {
	s := metrics.Sources{
		Pools: func() []metrics.Pool {
			snap := n.engine.Snapshot()
			out := make([]metrics.Pool, len(snap))
			for i, p := range snap {
				out[i] = metrics.Pool{Function: p.Function, Busy: p.Busy, Idle: p.Idle, Frozen: p.Frozen, Starting: p.Starting,
					Waiting: p.Waiting, InFlight: p.InFlight}
			}
			return out
		},
		Node: func() metrics.Node {
			e := n.engine.Node()
			return metrics.Node{Instances: e.Instances, MaxInstances: e.MaxInstances, MemoryMB: e.MemoryMB, MaxMemoryMB: e.MaxMemoryMB}
		},
		Helpers: n.sandbox.Helpers,
	}
	if svc := n.async.svc; svc != nil {
		s.AsyncBacklog = func() (map[string]int, error) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			return svc.Backlog(ctx)
		}
	}
	n.metrics.m.Watch(s)
	logStat := func(f func(FunctionLogStats) uint64) func() float64 {
		return func() float64 { return float64(f(n.FunctionLogStats())) }
	}
	n.metrics.m.Registry().MustRegister(
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "nimbus_function_log_lines_written_total",
			Help: "Function log lines written to the durable log store."}, logStat(func(s FunctionLogStats) uint64 { return s.Written })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "nimbus_function_log_lines_dropped_total",
			Help: "Function log lines the durable log store lost: over its buffer, or a write the store did not take."}, logStat(func(s FunctionLogStats) uint64 { return s.Dropped })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "nimbus_function_log_rate_dropped_bytes_total",
			Help: "Bytes of function output dropped over the log rate limit (--log-rate)."}, logStat(func(s FunctionLogStats) uint64 { return s.RateDroppedBytes })),
	)
}

// listenMetrics listens on --metrics-addr, if set: /metrics there needs no
// authentication (a scraper on a private network).
func (n *Node) listenMetrics() error {
	if n.cfg.MetricsAddr == "" {
		return nil
	}
	ln, err := net.Listen("tcp", n.cfg.MetricsAddr)
	if err != nil {
		return fmt.Errorf("--metrics-addr: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", n.metrics.m.Handler())
	n.metrics.ln = ln
	n.metrics.http = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second,
		ErrorLog: slog.NewLogLogger(n.log.Handler(), slog.LevelWarn)}
	return nil
}

// serveMetrics answers on --metrics-addr until closeMetrics.
func (n *Node) serveMetrics() {
	if n.metrics.http == nil {
		return
	}
	n.wg.Go(func() {
		if err := n.metrics.http.Serve(n.metrics.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.log.Warn("serve --metrics-addr", nimbus.LogErr, err)
		}
	})
}

// closeMetrics stops the --metrics-addr listener (served or not yet).
func (n *Node) closeMetrics() {
	if n.metrics.http != nil {
		_ = n.metrics.http.Close()
	}
	if n.metrics.ln != nil {
		_ = n.metrics.ln.Close() // not served yet: Open failed after listening
	}
}

// MetricsAddr is the address of the --metrics-addr listener ("" when off).
func (n *Node) MetricsAddr() string {
	if n.metrics.ln == nil {
		return ""
	}
	return n.metrics.ln.Addr().String()
}

// Metrics is the node's metrics (the lead's records writer counts into
// them: RecordsWritten, RecordsDropped).
func (n *Node) Metrics() *metrics.Metrics { return n.metrics.m }
