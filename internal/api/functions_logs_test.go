package api_test

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"

	"github.com/nimbus-serverless/nimbus/internal/node"
	"github.com/nimbus-serverless/nimbus/internal/node/nodetest"
)

// openNode opens a node on dir (its data directory across restarts);
// stop shuts it down (once; the test's end does too).
func openNode(t *testing.T, dir string, mod func(*node.Config)) (n *node.Node, stop func()) {
	t.Helper()
	cfg := node.Defaults()
	cfg.Addr, cfg.DataDir, cfg.Auth = "127.0.0.1:0", dir, node.AuthNone
	cfg.ShutdownGrace = 10 * time.Second
	cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	if mod != nil {
		mod(&cfg)
	}
	n, err := node.Open(t.Context(), cfg)
	if err != nil {
		t.Fatalf("open node: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- n.Serve() }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			if err := n.Shutdown(context.Background()); err != nil {
				t.Errorf("shutdown: %v", err)
			}
			if err := <-done; err != nil {
				t.Errorf("serve: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return n, stop
}

// sharedDir is a data directory function users can reach.
func sharedDir(t *testing.T) string {
	dir := t.TempDir()
	for _, d := range []string{dir, filepath.Dir(dir)} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

type logRec struct {
	Time      time.Time `json:"time"`
	Function  string    `json:"function"`
	RequestID string    `json:"requestId"`
	Line      string    `json:"line"`
}

// getLogs reads GET /nimbus/v1/functions/{name}/logs?query.
func getLogs(t *testing.T, n *node.Node, name string, q url.Values) []logRec {
	t.Helper()
	resp, err := http.Get(nodetest.Endpoint(n) + "/nimbus/v1/functions/" + name + "/logs?" + q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("logs %s?%s: %d %s", name, q.Encode(), resp.StatusCode, b)
	}
	var out []logRec
	dec := json.NewDecoder(resp.Body)
	for {
		var r logRec
		if err := dec.Decode(&r); err == io.EOF {
			return out
		} else if err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
}

var startLine = regexp.MustCompile(`(?:START|END) RequestId: (\S+)`)

// requestID is the request of an invoke, from its log tail.
func requestID(t *testing.T, out *lambda.InvokeOutput) string {
	t.Helper()
	tail, _ := base64.StdEncoding.DecodeString(aws.ToString(out.LogResult))
	if m := startLine.FindSubmatch(tail); m != nil {
		return string(m[1])
	}
	if m := regexp.MustCompile(`"requestId":"([^"]+)"`).FindSubmatch(tail); m != nil {
		return string(m[1])
	}
	t.Fatalf("no request id in the tail %q", tail)
	return ""
}

const pyHello = "def handler(event, context):\n    print('hello from', context.aws_request_id)\n    return 'ok'\n"

// TestLogsSurviveRestart: an invocation's lines (START, its own, END,
// REPORT, text or Lambda's JSON) are read back by request after the node
// restarts on the same data directory; filter and limit apply.
func TestLogsSurviveRestart(t *testing.T) {
	dir := sharedDir(t)
	n, stop := openNode(t, dir, nil)
	c := client(n)
	deploy(t, c, fixture{name: "durable", runtime: "python3.11", handler: "app.handler",
		zip: nodetest.Zip(t, map[string]string{"app.py": pyHello})})
	if _, err := c.CreateFunction(t.Context(), &lambda.CreateFunctionInput{
		FunctionName: aws.String("durable-json"), Runtime: types.RuntimePython311, Role: aws.String("r"),
		Handler: aws.String("app.handler"), Code: &types.FunctionCode{ZipFile: nodetest.Zip(t, map[string]string{"app.py": pyHello})},
		LoggingConfig: &types.LoggingConfig{LogFormat: types.LogFormatJson},
	}); err != nil {
		t.Fatal(err)
	}
	waitActive(t, c, "durable")
	waitActive(t, c, "durable-json")
	first := requestID(t, invoke(t, c, "durable", `{}`))
	second := requestID(t, invoke(t, c, "durable", `{}`))
	jsonReq := requestID(t, invoke(t, c, "durable-json", `{}`))
	stop()

	n, _ = openNode(t, dir, nil)
	recs := getLogs(t, n, "durable", url.Values{"request_id": {first}})
	var lines []string
	for _, r := range recs {
		if r.RequestID != first || r.Function != "durable" || r.Time.IsZero() {
			t.Errorf("record %+v, want one of request %s", r, first)
		}
		lines = append(lines, r.Line)
	}
	want := []string{"START RequestId: " + first, "hello from " + first, "END RequestId: " + first, "REPORT RequestId: " + first}
	if len(lines) != len(want) {
		t.Fatalf("request %s after a restart: %q, want %d lines like %q", first, lines, len(want), want)
	}
	for i, w := range want {
		if !strings.HasPrefix(lines[i], w) {
			t.Errorf("line %d: %q, want %q...", i, lines[i], w)
		}
	}
	if got := getLogs(t, n, "durable", url.Values{"filter": {"hello"}, "limit": {"1"}}); len(got) != 1 || got[0].Line != "hello from "+second {
		t.Errorf("the last hello: %+v, want the second request's", got)
	}
	if got := getLogs(t, n, "durable", url.Values{"since": {"2h"}, "until": {time.Now().Add(-time.Hour).Format(time.RFC3339)}}); len(got) != 0 {
		t.Errorf("an empty window returned %d lines", len(got))
	}
	types := map[string]bool{}
	for _, r := range getLogs(t, n, "durable-json", url.Values{"request_id": {jsonReq}}) {
		var rec map[string]any
		if err := json.Unmarshal([]byte(r.Line), &rec); err != nil {
			continue // print()'s lines stay text, as in Lambda
		}
		typ, _ := rec["type"].(string)
		types[typ] = true
	}
	for _, typ := range []string{"platform.start", "platform.runtimeDone", "platform.report"} {
		if !types[typ] {
			t.Errorf("no %s record among the JSON lines (%v)", typ, types)
		}
	}
}

// TestLogsRateLimit: a function writing 50 MB/s for 2 s succeeds; what
// goes over the log rate is dropped with marker lines; the stored log
// stays within --log-max-bytes and the node's memory stays small.
func TestLogsRateLimit(t *testing.T) {
	const maxBytes = 2 << 20
	// 0.25 MiB/s (a burst of 512 KiB): the function
	// goes well over it however fast this machine reads.
	n := nodetest.Start(t, func(c *node.Config) { c.LogMaxBytes, c.LogRate = maxBytes, 0.25 })
	c := client(n)
	src := `import os, time
def handler(event, context):
    chunk = (("x" * 1023) + "\n").encode() * 1024  # 1 MiB
    began, n = time.time(), 0
    while time.time() - began < 2:
        os.write(1, chunk)
        n += 1
        ahead = began + n / 50 - time.time()  # 50 MiB/s
        if ahead > 0:
            time.sleep(ahead)
    return n
`
	deploy(t, c, fixture{name: "loud", runtime: "python3.11", handler: "app.handler", timeout: 30,
		zip: nodetest.Zip(t, map[string]string{"app.py": src})})
	waitActive(t, c, "loud")
	_ = os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) // reset the peak RSS
	before := procStatus(t, "VmRSS")
	out := invoke(t, c, "loud", `{}`)
	if out.FunctionError != nil {
		t.Fatalf("invoke: %s %s", aws.ToString(out.FunctionError), out.Payload)
	}
	// It writes as fast as the node reads, up to 50 MiB/s: under the race
	// detector on a busy small machine the node reads 4 to 50 MiB/s.
	mib, _ := strconv.Atoi(string(out.Payload))
	t.Logf("the function wrote %d MiB in 2 s", mib)
	if mib < 3 {
		t.Fatalf("the function wrote only %d MiB, too little to go over the rate", mib)
	}
	if grew := procStatus(t, "VmHWM") - before; grew > 256<<20 {
		t.Errorf("the node's RSS grew by %d MiB while the function logged %d MiB", grew>>20, mib)
	}
	id := requestID(t, out)
	recs := getLogs(t, n, "loud", url.Values{"limit": {"10000"}})
	stored := 0
	for _, r := range recs {
		stored += len(r.Line) + 1
	}
	if stored > maxBytes {
		t.Errorf("the stored log holds %d bytes, over --log-max-bytes %d", stored, maxBytes)
	}
	markers := getLogs(t, n, "loud", url.Values{"filter": {"[nimbus] log rate limit: dropped"}, "request_id": {id}})
	dropped := 0
	for _, m := range markers {
		var b int
		if _, err := fmt.Sscanf(m.Line, "[nimbus] log rate limit: dropped %d bytes in the last second", &b); err != nil {
			t.Errorf("marker %q: %v", m.Line, err)
		}
		dropped += b
	}
	// 0.25 MiB/s for 2 s with a 512 KiB burst is kept; the rest is dropped.
	if len(markers) == 0 || dropped < (mib-2)<<20 {
		t.Errorf("%d markers count %d MiB dropped of %d MiB written", len(markers), dropped>>20, mib)
	}
	if st := n.FunctionLogStats(); st.RateDroppedBytes < uint64(dropped) || st.Written == 0 {
		t.Errorf("stats %+v, want at least %d bytes dropped over the rate and lines written", st, dropped)
	}
	if last := recs[len(recs)-1].Line; !strings.HasPrefix(last, "REPORT RequestId: "+id) {
		t.Errorf("the last stored line is %.80q, want the REPORT", last)
	}
}

// procStatus is a field of /proc/self/status in bytes.
func procStatus(t *testing.T, field string) int {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for l := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, field+":"); ok {
			kb, _ := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			return kb << 10
		}
	}
	t.Fatalf("no %s in /proc/self/status", field)
	return 0
}

// TestLogsBadParameters: a bad parameter is a 400 in Lambda's shape.
func TestLogsBadParameters(t *testing.T) {
	n := nodetest.Start(t, nil)
	c := client(n)
	createPy(t, c, "params", pyZip(t))
	for _, q := range []string{
		"since=yesterday", "until=-1h", "since=2026-13-01T00:00:00Z", "limit=-1", "limit=10001", "limit=x",
		"follow=maybe", "follow=true&until=1h", "since=1h&until=2h", "requestid=x",
		"request_id=" + strings.Repeat("r", 257),
	} {
		resp, err := http.Get(nodetest.Endpoint(n) + "/nimbus/v1/functions/params/logs?" + q)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var e struct{ Type, Message string }
		_ = json.Unmarshal(b, &e)
		if resp.StatusCode != 400 || resp.Header.Get("X-Amzn-Errortype") != "InvalidParameterValueException" || e.Message == "" {
			t.Errorf("%s: %d %s %s, want 400 InvalidParameterValueException", q, resp.StatusCode, resp.Header.Get("X-Amzn-Errortype"), b)
		}
	}
}

// TestLogsFollowAcrossNodes: a follow on one node streams the lines of an
// invocation run on another (through the shared store), and ends when
// the function is deleted.
func TestLogsFollowAcrossNodes(t *testing.T) {
	prefix := nodetest.SharedNATSPrefix(t)
	shared := func(c *node.Config) { c.NATSURL, c.NATSPrefix = nodetest.SharedNATS, prefix }
	a, b := nodetest.Start(t, shared), nodetest.Start(t, shared)
	ca := client(a)
	deploy(t, ca, fixture{name: "followed", runtime: "python3.11", handler: "app.handler",
		zip: nodetest.Zip(t, map[string]string{"app.py": pyHello})})
	waitActive(t, ca, "followed")
	waitActive(t, client(b), "followed")

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", nodetest.Endpoint(b)+"/nimbus/v1/functions/followed/logs?follow=true&limit=0&filter=hello", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	lines := make(chan string, 100)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	id := requestID(t, invoke(t, ca, "followed", `{}`))
	select {
	case l := <-lines:
		var r logRec
		if err := json.Unmarshal([]byte(l), &r); err != nil || r.Line != "hello from "+id || r.RequestID != id {
			t.Fatalf("followed %q (%v), want the hello of %s", l, err, id)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("node B's follow got nothing of the invocation on node A")
	}
	if _, err := ca.DeleteFunction(t.Context(), &lambda.DeleteFunctionInput{FunctionName: aws.String("followed")}); err != nil {
		t.Fatal(err)
	}
	select {
	case l, ok := <-lines:
		if ok {
			t.Fatalf("followed %q after the delete", l)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the follow did not end when the function was deleted")
	}
}
