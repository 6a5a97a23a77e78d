package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"

	"github.com/nimbus-serverless/nimbus/internal/seal"
	"github.com/nimbus-serverless/nimbus/internal/testenv"
)

// benchSetup is a node, or a cluster of nodes, that a benchmark keeps for
// the whole run (started at its first use, stopped when TestMain ends), so
// that -count repeats the sub-benchmarks of every setup in turn.
type benchSetup struct {
	name  string
	addrs []string // the members' APIs
	procs []*exec.Cmd
	logs  []*testenv.Buffer
	top   string // the data dirs' parent
	err   error
}

var (
	benchMu     sync.Mutex
	benchSetups = map[string]*benchSetup{}
)

// stopBenchSetups kills what the benchmarks started (TestMain calls it).
func stopBenchSetups() {
	benchMu.Lock()
	defer benchMu.Unlock()
	for _, s := range benchSetups {
		for _, c := range s.procs {
			_ = c.Process.Kill()
			_ = c.Wait()
		}
		for _, a := range s.addrs {
			serverCreds.Delete(a)
		}
	}
	for _, s := range benchSetups {
		if s.top != "" {
			os.RemoveAll(s.top)
		}
	}
	benchSetups = map[string]*benchSetup{}
}

// benchNodes returns the setup of n members with replicas copies (n 1: a
// single node), starting it at the first call, with the async sink
// function deployed.
func benchNodes(b *testing.B, n, replicas int) *benchSetup {
	b.Helper()
	name := fmt.Sprintf("%d-r%d", n, replicas)
	benchMu.Lock()
	defer benchMu.Unlock()
	s := benchSetups[name]
	if s == nil {
		s = &benchSetup{name: name}
		benchSetups[name] = s
		s.err = s.start(b, n, replicas)
	}
	if s.err != nil {
		b.Fatalf("setup %s: %v", name, s.err)
	}
	return s
}

// sinkFn sleeps through the one event it is given at a time (the nodes run
// with --async-concurrency 1), so the events submitted pile up in the queue
// and the benchmark measures the submissions alone.
const sinkFn = "import time\ndef handler(e, c):\n    time.sleep(600)\n"

func (s *benchSetup) start(b *testing.B, n, replicas int) error {
	top, err := os.MkdirTemp("", "nimbus-bench-")
	if err != nil {
		return err
	}
	s.top = top
	if err := os.Chmod(top, 0o755); err != nil {
		return err
	}
	key := seal.Generate()
	cluster := fmt.Sprintf("b%d", time.Now().UnixNano()%1e9)
	routes := make([]string, n)
	for i := range n {
		routes[i] = freeAddr(b)
		s.addrs = append(s.addrs, freeAddr(b))
	}
	dirs := make([]string, n)
	for i := range n {
		dirs[i] = filepath.Join(top, fmt.Sprint(i))
		if err := os.Mkdir(dirs[i], 0o755); err != nil {
			return err
		}
		args := []string{"serve", "--addr", s.addrs[i], "--data-dir", dirs[i], "--node-key", key,
			"--async-concurrency", "1", "--prestarted-helpers", "1"}
		if n > 1 {
			args = append(args, "--cluster-name", cluster, "--cluster-listen", routes[i],
				"--peers", peersOf(routes, i), "--replicas", fmt.Sprint(replicas))
		}
		cmd := exec.Command(nimbusBin, args...)
		logs := &testenv.Buffer{}
		cmd.Stdout, cmd.Stderr = logs, logs
		if err := cmd.Start(); err != nil {
			return err
		}
		s.procs, s.logs = append(s.procs, cmd), append(s.logs, logs)
	}
	deadline := time.Now().Add(2 * time.Minute)
	for i, a := range s.addrs {
		for {
			resp, err := http.Get("http://" + a + "/healthz")
			if err == nil {
				resp.Body.Close()
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("member %d did not answer: %v\n%s", i, err, s.logs[i])
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	var creds aws.Credentials
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "credentials")); err == nil {
			creds = loadCreds(b, "", d)
		}
	}
	if !creds.HasKeys() {
		return errors.New("no member wrote the admin key")
	}
	for _, a := range s.addrs {
		serverCreds.Store(a, creds)
	}
	srv := &server{addr: s.addrs[0], creds: creds}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	in := createInput(b, "sink", sinkFn, nil)
	in.Timeout = aws.Int32(900)
	if _, err := srv.client().CreateFunction(ctx, in); err != nil {
		return fmt.Errorf("create: %w", err)
	}
	for {
		out, err := srv.client().GetFunctionConfiguration(ctx, &lambda.GetFunctionConfigurationInput{FunctionName: aws.String("sink")})
		if err == nil && out.State == "Active" {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("sink not active: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// BenchmarkClusterAsyncSubmit: async submissions (InvocationType Event,
// answered 202) per second on a single node, a 3-member cluster keeping 1
// copy of every stream, and one keeping 3, spread over the members in
// turn from 16 connections. The three run in turn, in a rotated order, in
// each of benchRounds rounds (-count would run each several times in a
// row); the setups are started once, at their first use
// (docs/BENCHMARKS.md):
//
//	go test -run '^$' -bench ClusterAsyncSubmit -benchtime 3s ./cmd/nimbus/
func BenchmarkClusterAsyncSubmit(b *testing.B) {
	setups := []struct {
		name        string
		n, replicas int
	}{{"single", 1, 1}, {"cluster-r1", 3, 1}, {"cluster-r3", 3, 3}}
	for round := range benchRounds {
		for i := range setups {
			c := setups[(i+round)%len(setups)]
			b.Run(fmt.Sprintf("round=%d/setup=%s", round+1, c.name), func(b *testing.B) {
				s := benchNodes(b, c.n, c.replicas)
				var next, refused atomic.Int64
				body := `{"n":1}`
				b.SetParallelism(8) // 16 connections on 2 CPUs
				b.ResetTimer()
				began := time.Now()
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						addr := s.addrs[int(next.Add(1))%len(s.addrs)]
						req, _ := http.NewRequest("POST", "http://"+addr+"/2015-03-31/functions/sink/invocations", strings.NewReader(body))
						req.Header.Set("X-Amz-Invocation-Type", "Event")
						resp, err := do(req)
						if err != nil {
							refused.Add(1)
							continue
						}
						resp.Body.Close()
						if resp.StatusCode != http.StatusAccepted {
							refused.Add(1)
						}
					}
				})
				took := time.Since(began)
				b.ReportMetric(float64(int64(b.N)-refused.Load())/took.Seconds(), "events/s")
				if r := refused.Load(); r > 0 {
					b.Errorf("%d of %d submissions not answered 202", r, b.N)
				}
			})
		}
	}
}

// benchRounds is how many times BenchmarkClusterAsyncSubmit runs each
// setup.
const benchRounds = 5
