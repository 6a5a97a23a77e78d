// Command peers is the peer benchmark (issue 17): Nimbus's invoke paths
// beside the servers and function proxies it competes with, measured in one
// run, interleaved round by round (each round runs every row once, in a
// rotated order), with one load generator and the same function code, and
// printed as ratios to a plain Go net/http server measured in the same round.
//
// Warm rows (a closed loop of N kept-alive connections, req/s, p50, p99):
//
//   - direct: the echo server (./echo) in its own process;
//   - direct, signed: the same, every request SigV4-signed as the Invoke rows
//     are (the client's signing cost);
//   - proxy: a plain httputil.ReverseProxy (./proxy) in front of it;
//   - of-watchdog: OpenFaaS's of-watchdog, mode http, in front of the same
//     echo binary (given by -of-watchdog; skipped when absent);
//   - RIE: the Lambda Runtime Interface Emulator running the aws-lambda-go
//     no-op (internal/node/testdata/noop); it takes one request at a time,
//     and the others' failures are counted as errors;
//   - Nimbus URL: a `nimbus serve` subprocess, function URL (AuthType NONE)
//     to an `http` function whose bootstrap is the echo binary;
//   - Nimbus Invoke: the same node's Invoke API, SigV4-signed, to the no-op
//     as a provided.al2023 function;
//   - floors, the least the Nimbus rows could cost here: the lean proxy
//     (./leanproxy, forwarding as Nimbus's engine does) in front of the
//     echo server, and in front of one echo server per client, each
//     serving one request at a time (the URL rows' semantics); the Runtime
//     API relay (./relay) in front of aws-lambda-go no-ops (the Invoke
//     rows').
//
// Async rows: the Async Service end to end (events/s from the first submit
// to the last event's end, as the node's metrics count them) against
// synchronous invokes of the same no-op in the same round.
//
// Cold rows: process start (or, for Nimbus, the request on a new instance)
// to the first answer, beside the bare exec of the same binaries and
// interpreters, and the no-op's start under the relay (a Go cold start's
// floor on any Runtime API platform). Usage (from the repository root; docs/BENCHMARKS.md):
//
//	go run ./bench/peers -rounds 5 -duration 3s -conns 1,16
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Config is the benchmark's flags.
type Config struct {
	Rounds          int
	Warmup          time.Duration
	Duration        time.Duration
	Conns           []int
	Cold            int           // cold samples per row and round; 0: no cold rows
	ColdGap         time.Duration // pause before each Nimbus cold start, once its configuration changed
	Async           int           // invokes of each kind of the async rows per round; 0: no async rows
	OfWatchdog      string        // of-watchdog binary; "" or missing: no row
	RIE             string        // aws-lambda-rie binary; "" or missing: no row
	Memory          []int         // MemorySize of the Nimbus functions: two warm rows each; the cold rows take the first
	HTTPConcurrency int           // of the Nimbus `http` function; 0: the node's default
	Rows            *regexp.Regexp
	Out             string // also write the tables here
	// Nodes are the Nimbus nodes whose warm rows run, each with its own
	// functions (an A/B of binaries or flags in one run); none: one node
	// of the tree's build, unlabelled. Each node has its warm and cold
	// rows; the async rows run on the first.
	Nodes []NodeSpec
}

// NodeSpec is a Nimbus node of the run: -node 'label=BIN [serve flags]',
// BIN "tree" being the build of this tree.
type NodeSpec struct {
	Label string
	Bin   string // "": the tree's build
	Args  []string
}

// parseNode reads a -node value.
func parseNode(v string) (NodeSpec, error) {
	label, rest, ok := strings.Cut(v, "=")
	f := strings.Fields(rest)
	if !ok || strings.TrimSpace(label) == "" || len(f) == 0 {
		return NodeSpec{}, fmt.Errorf("%q is not label=BIN [serve flags]", v)
	}
	n := NodeSpec{Label: strings.TrimSpace(label), Bin: f[0], Args: f[1:]}
	if n.Bin == "tree" {
		n.Bin = ""
	}
	return n, nil
}

// Validate names the first bad field.
func (c Config) Validate() error {
	switch {
	case c.Rounds < 1:
		return fmt.Errorf("-rounds must be at least 1, not %d", c.Rounds)
	case c.Duration <= 0:
		return fmt.Errorf("-duration must be positive, not %s", c.Duration)
	case c.Warmup < 0:
		return fmt.Errorf("-warmup must not be negative, not %s", c.Warmup)
	case len(c.Conns) == 0:
		return errors.New("-conns must name at least one count")
	case len(c.Memory) == 0:
		return errors.New("-memory must name at least one size")
	case c.Cold < 0:
		return fmt.Errorf("-cold must not be negative, not %d", c.Cold)
	case c.ColdGap < 0:
		return fmt.Errorf("-cold-gap must not be negative, not %s", c.ColdGap)
	case c.Async < 0:
		return fmt.Errorf("-async must not be negative, not %d", c.Async)
	}
	for _, n := range c.Conns {
		if n < 1 {
			return fmt.Errorf("-conns must be positive counts, not %d", n)
		}
	}
	for _, mb := range c.Memory {
		if mb < 128 || mb > 10240 {
			return fmt.Errorf("-memory must be sizes of 128 to 10240 MB, not %d", mb)
		}
	}
	return nil
}

func main() {
	cfg, err := parseFlags(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "peers:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, cfg); err != nil {
		fmt.Fprintln(os.Stderr, "peers:", err)
		stop()
		os.Exit(1)
	}
}

// parseFlags reads the command line into a valid Config.
func parseFlags(args []string) (Config, error) {
	cfg := Config{}
	fs := flag.NewFlagSet("peers", flag.ContinueOnError)
	fs.IntVar(&cfg.Rounds, "rounds", 5, "rounds; each runs every row once")
	fs.DurationVar(&cfg.Warmup, "warmup", time.Second, "load before each warm row's counted time (Nimbus starts its instances then)")
	fs.DurationVar(&cfg.Duration, "duration", 3*time.Second, "counted time of each warm row")
	conns := fs.String("conns", "1,16", "connection counts of the warm rows, comma-separated")
	fs.IntVar(&cfg.Cold, "cold", 5, "cold starts per cold row and round (0: no cold rows)")
	fs.DurationVar(&cfg.ColdGap, "cold-gap", 250*time.Millisecond, "pause before each Nimbus cold start, after the configuration change that makes it cold, so that each finds the node settled, its helper pool refilled (0: none, starts back to back, as in a burst)")
	fs.IntVar(&cfg.Async, "async", 1000, "synchronous and asynchronous invokes per round of the async rows, at the largest -conns (0: no async rows)")
	fs.StringVar(&cfg.OfWatchdog, "of-watchdog", "/tmp/peers/bin/of-watchdog", "of-watchdog binary (its row is skipped when missing)")
	fs.StringVar(&cfg.RIE, "rie", "/tmp/peers/bin/aws-lambda-rie", "aws-lambda-rie binary (its rows are skipped when missing)")
	memory := fs.String("memory", "128,1769", "MemorySize in MB of the Nimbus functions, comma-separated: two warm rows each (CPU weight follows memory; 1769 is a full CPU's); the cold rows take the first")
	fs.IntVar(&cfg.HTTPConcurrency, "http-concurrency", 0, "NimbusHttpConcurrency of the Nimbus http function (0: the default, 1)")
	rows := fs.String("rows", "", "only the rows whose names match this regular expression (direct always runs)")
	fs.StringVar(&cfg.Out, "o", "", "also write the markdown tables to this file")
	fs.Func("node", "a Nimbus node of the run, 'label=BIN [serve flags]' (BIN tree: this tree's build), repeatable: each gets warm rows of its own, labelled (default: one node of the tree's build)", func(v string) error {
		n, err := parseNode(v)
		if err == nil {
			for _, o := range cfg.Nodes {
				if o.Label == n.Label {
					return fmt.Errorf("label %q given twice", n.Label)
				}
			}
			cfg.Nodes = append(cfg.Nodes, n)
		}
		return err
	})
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	var err error
	if cfg.Conns, err = ints(*conns); err != nil {
		return cfg, fmt.Errorf("-conns: %w", err)
	}
	if cfg.Memory, err = ints(*memory); err != nil {
		return cfg, fmt.Errorf("-memory: %w", err)
	}
	if cfg.Rows, err = regexp.Compile(*rows); err != nil {
		return cfg, fmt.Errorf("-rows: %w", err)
	}
	return cfg, cfg.Validate()
}

// ints parses a comma-separated list of integers.
func ints(s string) ([]int, error) {
	var xs []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil {
			return nil, err
		}
		xs = append(xs, n)
	}
	return xs, nil
}
