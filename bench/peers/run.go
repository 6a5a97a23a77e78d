package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"
)

// body is every request's payload: the echo server returns it, and so does
// the no-op function.
var body = []byte(`{"sleep_ms":0}`)

// bench is one run: its binaries, its processes and its tables.
type bench struct {
	cfg        Config
	dir        string            // the run's temporary directory
	bins       map[string]string // built binaries by name (packages)
	procs      []*proc           // every process started, to stop at the end
	warm       Table
	cold       Table
	async      *asyncRows // nil: no async rows
	asyncTable Table
	notes      []string // printed under the tables
}

// run builds the binaries, starts the peers and the node, runs the rounds
// and prints the tables.
func run(ctx context.Context, cfg Config) error {
	dir, err := os.MkdirTemp("", "nimbus-peers-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	// The node's functions run as other users, who must reach its data.
	if err := os.Chmod(dir, 0o755); err != nil {
		return err
	}
	b := &bench{cfg: cfg, dir: dir, warm: Table{Baseline: "direct"}, cold: Table{Baseline: "direct"}, asyncTable: Table{Baseline: "sync"}}
	defer b.stopAll()
	load0 := loadAverage()
	began := time.Now().UTC()
	if err := b.build(ctx); err != nil {
		return err
	}
	rows, colds, err := b.setUp(ctx)
	if err != nil {
		return err
	}
	for r := range cfg.Rounds {
		if err := b.round(ctx, r, rows, colds); err != nil {
			return err
		}
	}
	for _, row := range rows {
		if row.restarts > 0 {
			b.notes = append(b.notes, fmt.Sprintf("%s died and was started again %d times (its requests meanwhile are counted as errors)", row.name, row.restarts))
		}
	}
	var out bytes.Buffer
	fmt.Fprintf(&out, "Run %s to %s UTC, commit %s, %d CPUs (GOMAXPROCS %d), load average %s at the start, %s at the end.\n",
		began.Format("2006-01-02 15:04"), time.Now().UTC().Format("15:04"), commit(ctx), runtime.NumCPU(), runtime.GOMAXPROCS(0), load0, loadAverage())
	fmt.Fprintf(&out, "%d rounds; warm rows %s counted after %s of warm-up; %d cold starts per cold row and round",
		cfg.Rounds, cfg.Duration, cfg.Warmup, cfg.Cold)
	if cfg.ColdGap > 0 {
		fmt.Fprintf(&out, ", Nimbus's %s apart", cfg.ColdGap)
	}
	fmt.Fprintln(&out, ".")
	b.warm.WriteWarm(&out)
	if cfg.Cold > 0 {
		b.cold.WriteCold(&out)
	}
	if b.async != nil {
		b.asyncTable.WriteAsync(&out)
	}
	for _, n := range b.notes {
		fmt.Fprintf(&out, "\n- %s", n)
	}
	fmt.Fprintln(&out)
	os.Stdout.Write(out.Bytes())
	if cfg.Out != "" {
		return os.WriteFile(cfg.Out, out.Bytes(), 0o644)
	}
	return nil
}

// packages are the binaries a run builds, by name.
var packages = map[string]string{
	"echo": "./bench/peers/echo", "proxy": "./bench/peers/proxy",
	"leanproxy": "./bench/peers/leanproxy", "relay": "./bench/peers/relay",
	"noop": "./internal/node/testdata/noop", "nimbus": "./cmd/nimbus",
}

// build compiles the echo server, the proxies, the relay, the no-op
// function and nimbus from the repository this command is in.
func (b *bench) build(ctx context.Context) error {
	var err error
	b.bins, err = buildBins(ctx, filepath.Join(b.dir, "bin"), packages)
	return err
}

// buildBins compiles pkgs (by name) into dir and returns their paths.
func buildBins(ctx context.Context, dir string, pkgs map[string]string) (map[string]string, error) {
	gomod, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return nil, fmt.Errorf("find the repository: %w", err)
	}
	root := filepath.Dir(strings.TrimSpace(string(gomod)))
	bins := map[string]string{}
	for name, pkg := range pkgs {
		bin := filepath.Join(dir, name)
		cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, pkg)
		cmd.Dir, cmd.Env = root, append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("build %s: %v\n%s", pkg, err, out)
		}
		bins[name] = bin
	}
	return bins, nil
}

// start starts a process of the run (stopped by stopAll).
func (b *bench) start(name string, env []string, argv ...string) (*proc, error) {
	p, err := start(b.dir, name, env, argv...)
	if err == nil {
		b.procs = append(b.procs, p)
	}
	return p, err
}

// stopAll stops every process the run started, newest first.
func (b *bench) stopAll() {
	for i := len(b.procs) - 1; i >= 0; i-- {
		b.procs[i].stop(10 * time.Second)
	}
	b.procs = nil
}

// round runs every warm row at every connection count, then every cold
// row, each in an order rotated by the round, so that no row always
// follows the same one.
func (b *bench) round(ctx context.Context, r int, rows []*warmRow, colds []*coldRow) error {
	for _, conns := range b.cfg.Conns {
		group := fmt.Sprintf("%d connection", conns)
		if conns > 1 {
			group += "s"
		}
		for _, row := range rotate(rows, r) {
			s, err := row.measure(ctx, Load{Conns: conns, Warmup: b.cfg.Warmup, Duration: b.cfg.Duration})
			if err != nil {
				return fmt.Errorf("round %d, %s, %s: %w", r+1, group, row.name, err)
			}
			s.Group, s.Round = group, r
			b.warm.Add(s)
			fmt.Fprintf(os.Stderr, "round %d %s %-40s %9.0f req/s p50 %s p99 %s errors %d\n", r+1, group, row.name, s.Value, ms(s.P50), ms(s.P99), s.Errors)
		}
	}
	if b.cfg.Cold == 0 {
		colds = nil
	}
	for _, row := range rotate(colds, r) {
		s, err := row.measure(ctx, b.cfg.Cold)
		if err != nil {
			return fmt.Errorf("round %d, cold %s: %w", r+1, row.name, err)
		}
		s.Group, s.Round = "cold start, to the first answer", r
		b.cold.Add(s)
		fmt.Fprintf(os.Stderr, "round %d cold %-40s %7.1f ms errors %d\n", r+1, row.name, s.Value, s.Errors)
	}
	if b.async == nil {
		return ctx.Err()
	}
	sync, async, err := b.async.measure(ctx)
	if err != nil {
		return fmt.Errorf("round %d, async: %w", r+1, err)
	}
	group := fmt.Sprintf("async end to end: %d invokes of the no-op (%d MB) per round, %d connections, invokes/s", b.async.count, slices.Max(b.cfg.Memory), b.async.conns)
	for _, s := range []Sample{sync, async} {
		s.Group, s.Round = group, r
		b.asyncTable.Add(s)
		fmt.Fprintf(os.Stderr, "round %d async %-40s %7.0f /s errors %d\n", r+1, s.Row, s.Value, s.Errors)
	}
	return ctx.Err()
}

// rotate is xs from its (r mod len)th element, wrapping around.
func rotate[T any](xs []T, r int) []T {
	if len(xs) == 0 {
		return nil
	}
	r %= len(xs)
	return append(append([]T{}, xs[r:]...), xs[:r]...)
}

// loadAverage is the 1, 5 and 15 minute load averages.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " / ")
}

// commit is the repository's commit, with "+changes" when its tree has
// uncommitted changes.
func commit(ctx context.Context) string {
	out, err := exec.CommandContext(ctx, "git", "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return "unknown"
	}
	c := strings.TrimSpace(string(out))
	if out, err := exec.CommandContext(ctx, "git", "status", "--porcelain", "--untracked-files=no").Output(); err != nil || len(out) > 0 {
		c += "+changes"
	}
	return c
}
