package main

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
)

// The benchmark itself is `go run ./bench/peers`; these tests check its
// load generator and its table on small inputs, and its floors (the lean
// proxy, the relay) as real processes on 127.0.0.1.

func TestLoadCountsAnswersAndErrors(t *testing.T) {
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if n.Add(1)%4 == 0 { // every fourth request fails
			http.Error(w, "no", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write(b)
	}))
	defer srv.Close()
	o := Load{Conns: 4, Duration: 300 * time.Millisecond}.Run(t.Context(), poster(srv.URL, body, aws.Credentials{}))
	if o.Requests == 0 || o.Errors == 0 {
		t.Fatalf("got %d answers and %d errors, want some of each", o.Requests, o.Errors)
	}
	// 1 in 4 fail; allow for the requests cut by the end.
	if share := float64(o.Errors) / float64(o.Requests+o.Errors); share < 0.2 || share > 0.3 {
		t.Errorf("got an error share of %.2f, want about 0.25", share)
	}
	if len(o.Latency) != o.Requests {
		t.Errorf("got %d latencies for %d answers", len(o.Latency), o.Requests)
	}
	if p50, p99 := o.Percentile(0.5), o.Percentile(0.99); p50 <= 0 || p99 < p50 {
		t.Errorf("got p50 %s, p99 %s", p50, p99)
	}
	if got, want := o.PerSecond(), float64(o.Requests)/0.3; got != want {
		t.Errorf("got %.1f req/s, want %.1f", got, want)
	}
}

func TestLoadWarmupIsNotCounted(t *testing.T) {
	began := time.Now()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if time.Since(began) < 100*time.Millisecond { // failing while it warms up
			http.Error(w, "no", http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	o := Load{Conns: 2, Warmup: 150 * time.Millisecond, Duration: 100 * time.Millisecond}.Run(t.Context(), poster(srv.URL, body, aws.Credentials{}))
	if o.Errors != 0 || o.Requests == 0 {
		t.Errorf("got %d answers and %d errors, want only answers: the warm-up's errors counted", o.Requests, o.Errors)
	}
}

func TestLoadUsesConnsConnections(t *testing.T) {
	var conns atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(time.Millisecond) // keep every client busy at once
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	o := Load{Conns: 3, Duration: 200 * time.Millisecond}.Run(t.Context(), poster(srv.URL, body, aws.Credentials{}))
	if o.Errors != 0 || o.Requests < 10 {
		t.Fatalf("got %d answers and %d errors", o.Requests, o.Errors)
	}
	if got := conns.Load(); got != 3 {
		t.Errorf("got %d connections, want 3 kept alive", got)
	}
}

func TestLoadCountsRefusedConnections(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close() // nothing listens there now
	o := Load{Conns: 2, Duration: 50 * time.Millisecond}.Run(t.Context(), poster(url, body, aws.Credentials{}))
	if o.Requests != 0 || o.Errors == 0 {
		t.Errorf("got %d answers and %d errors, want only errors", o.Requests, o.Errors)
	}
	// The pause after each transport error bounds the count.
	if max := 2 * int(50*time.Millisecond/errorPause); o.Errors > max {
		t.Errorf("got %d errors in 50 ms from 2 clients, want at most %d", o.Errors, max)
	}
}

func TestSignedRequests(t *testing.T) {
	creds := aws.Credentials{AccessKeyID: "AKID", SecretAccessKey: "secret"}
	req, err := poster("http://127.0.0.1:1/2015-03-31/functions/f/invocations", body, creds)(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if a := req.Header.Get("Authorization"); !strings.HasPrefix(a, "AWS4-HMAC-SHA256 Credential=AKID/") || !strings.Contains(a, "/us-east-1/lambda/aws4_request") {
		t.Errorf("got Authorization %q", a)
	}
	if req.Header.Get("X-Amz-Date") == "" {
		t.Error("a signed request has no X-Amz-Date")
	}
	req, err = poster("http://127.0.0.1:1/", body, aws.Credentials{})(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if a := req.Header.Get("Authorization"); a != "" {
		t.Errorf("an unsigned request has Authorization %q", a)
	}
	if b, _ := io.ReadAll(req.Body); !bytes.Equal(b, body) {
		t.Errorf("got body %q", b)
	}
}

func TestTableRatiosToTheSameRound(t *testing.T) {
	tb := Table{Baseline: "direct"}
	for _, s := range []Sample{
		{Group: "1 connection", Row: "direct", Round: 0, Value: 1000, P50: 100 * time.Microsecond},
		{Group: "1 connection", Row: "proxy", Round: 0, Value: 500, P50: 200 * time.Microsecond, Errors: 1},
		{Group: "1 connection", Row: "direct", Round: 1, Value: 2000},
		{Group: "1 connection", Row: "proxy", Round: 1, Value: 600, P50: 300 * time.Microsecond, Errors: 2},
		{Group: "1 connection", Row: "direct", Round: 2, Value: 1000},
		{Group: "1 connection", Row: "proxy", Round: 2, Value: 400, P50: 100 * time.Microsecond},
		{Group: "16 connections", Row: "proxy", Round: 0, Value: 50}, // no baseline in its group
		{Group: "16 connections", Row: "direct", Round: 1, Value: 100},
	} {
		tb.Add(s)
	}
	want := []Line{
		{Group: "1 connection", Row: "direct", Ratio: 1, RatioLo: 1, RatioHi: 1, Value: 1000, Rounds: 3},
		// ratios 0.5, 0.3, 0.4: each to its own round's direct, not to
		// direct's median (which would give 0.6, 0.4, 0.5)
		{Group: "1 connection", Row: "proxy", Ratio: 0.4, RatioLo: 0.3, RatioHi: 0.5, Value: 500, P50: 200 * time.Microsecond, Errors: 3, Rounds: 3},
		{Group: "16 connections", Row: "proxy", Value: 50, Rounds: 1},
		{Group: "16 connections", Row: "direct", Ratio: 1, RatioLo: 1, RatioHi: 1, Value: 100, Rounds: 1},
	}
	got := tb.Lines()
	if len(got) != len(want) {
		t.Fatalf("got %d lines, want %d: %+v", len(got), len(want), got)
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.Group != w.Group || g.Row != w.Row || !near(g.Ratio, w.Ratio) || !near(g.RatioLo, w.RatioLo) ||
			!near(g.RatioHi, w.RatioHi) || g.Value != w.Value || g.P50 != w.P50 || g.Errors != w.Errors || g.Rounds != w.Rounds {
			t.Errorf("line %d: got %+v, want %+v", i, g, w)
		}
	}
	var out bytes.Buffer
	tb.WriteWarm(&out)
	for _, s := range []string{
		"**1 connection**",
		"| proxy | 0.400x (0.300-0.500) | 500 | 0.20 ms | - | 3 |",
		"**16 connections**",
		"| proxy | - | 50 | - | - | 0 |",
	} {
		if !strings.Contains(out.String(), s) {
			t.Errorf("the table has no %q:\n%s", s, out.String())
		}
	}
}

func TestColdTable(t *testing.T) {
	tb := Table{Baseline: "direct"}
	tb.Add(Sample{Group: "cold", Row: "direct", Value: 5})
	tb.Add(Sample{Group: "cold", Row: "nimbus", Value: 12.5, Errors: 1})
	var out bytes.Buffer
	tb.WriteCold(&out)
	want := "\n**cold**\n\n| path | x direct (median, min-max) | ms, median of rounds' medians | errors |\n| --- | --- | --- | --- |\n" +
		"| direct | 1.000x (1.000-1.000) | 5.0 | 0 |\n| nimbus | 2.500x (2.500-2.500) | 12.5 | 1 |\n"
	if got := out.String(); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

func near(a, b float64) bool { return a-b < 1e-9 && b-a < 1e-9 }

func TestMedian(t *testing.T) {
	for _, tc := range []struct {
		in   []float64
		want float64
	}{{nil, 0}, {[]float64{3}, 3}, {[]float64{3, 1, 2}, 2}, {[]float64{4, 1, 3, 2}, 2}} {
		if got := median(tc.in); got != tc.want {
			t.Errorf("median(%v) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

func TestRotate(t *testing.T) {
	xs := []string{"a", "b", "c"}
	for r, want := range []string{"abc", "bca", "cab", "abc"} {
		if got := strings.Join(rotate(xs, r), ""); got != want {
			t.Errorf("rotate(%v, %d) = %s, want %s", xs, r, got, want)
		}
	}
	if got := strings.Join(xs, ""); got != "abc" {
		t.Errorf("rotate changed its input to %s", got)
	}
}

func TestFlags(t *testing.T) {
	cfg, err := parseFlags([]string{"-rounds", "3", "-conns", "1, 8,16", "-node", "main=/tmp/nimbus", "-node", "q=tree --cpu-queue 2"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Rounds != 3 || len(cfg.Conns) != 3 || cfg.Conns[1] != 8 || cfg.Duration != 3*time.Second || cfg.ColdGap != 250*time.Millisecond {
		t.Errorf("got %+v", cfg)
	}
	if len(cfg.Nodes) != 2 || cfg.Nodes[0].Label != "main" || cfg.Nodes[0].Bin != "/tmp/nimbus" || len(cfg.Nodes[0].Args) != 0 || cfg.Nodes[1].Bin != "" ||
		strings.Join(cfg.Nodes[1].Args, " ") != "--cpu-queue 2" {
		t.Errorf("nodes: %+v", cfg.Nodes)
	}
	if cfg, err := parseFlags([]string{"-cold-gap", "0"}); err != nil || cfg.ColdGap != 0 {
		t.Errorf("-cold-gap 0: %v, %s", err, cfg.ColdGap)
	}
	for _, args := range [][]string{
		{"-rounds", "0"}, {"-conns", "0"}, {"-memory", "64"}, {"-memory", ""}, {"-conns", "x"}, {"-duration", "0s"}, {"-cold", "-1"}, {"-cold-gap", "-1ms"}, {"-rows", "("},
		{"-node", "x"}, {"-node", "=bin"}, {"-node", "a= "}, {"-node", "a=x", "-node", "a=y"},
	} {
		if _, err := parseFlags(args); err == nil {
			t.Errorf("%v: no error", args)
		}
	}
}

func TestProcStopsItsGroup(t *testing.T) {
	dir := t.TempDir()
	for _, run := range []string{"first", "second"} {
		// The shell prints the pid of a child it started, then waits.
		p, err := start(dir, "sh", nil, "/bin/sh", "-c", "sleep 60 & echo $!; wait")
		if err != nil {
			t.Fatal(err)
		}
		line, err := p.firstLine(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		child, err := strconv.Atoi(line)
		if err != nil {
			t.Fatalf("%s run: the first line %q is not the child's pid: it was read from an earlier run", run, line)
		}
		p.stop(time.Second)
		if p.alive() {
			t.Errorf("%s run: the shell is alive after stop", run)
		}
		for deadline := time.Now().Add(2 * time.Second); running(child); time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%s run: its child %d is alive after stop", run, child)
			}
		}
		p.stop(time.Second) // stopping again does nothing
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "sh.log")); strings.Count(string(b), "\n") != 2 {
		t.Errorf("the log has %q, want both runs' lines", b)
	}
}

// running tells whether pid is a process that has not exited (a zombie
// waiting for init to reap it has).
func running(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	_, after, _ := strings.Cut(string(b), ") ")
	return !strings.HasPrefix(after, "Z")
}

func TestLoadCount(t *testing.T) {
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { n.Add(1) }))
	defer srv.Close()
	o := Load{Conns: 3, Duration: 10 * time.Second, Count: 100}.Run(t.Context(), poster(srv.URL, body, aws.Credentials{}))
	if o.Requests != 100 || o.Errors != 0 || n.Load() != 100 {
		t.Errorf("got %d answers and %d errors of %d requests served, want 100 of 100", o.Requests, o.Errors, n.Load())
	}
	if o.Elapsed <= 0 || o.Elapsed > 5*time.Second {
		t.Errorf("got elapsed %s, want the time the 100 took", o.Elapsed)
	}
}
