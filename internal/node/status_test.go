package node_test

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"

	"github.com/nimbus-serverless/nimbus/internal/node"
	"github.com/nimbus-serverless/nimbus/internal/node/nodetest"
	"github.com/nimbus-serverless/nimbus/internal/runtimes"
	"github.com/nimbus-serverless/nimbus/internal/trigger"
)

// pyFailOnce fails the first invocation of each instance and succeeds
// after.
const pyFailOnce = `calls = 0
def handler(event, context):
    global calls
    calls += 1
    if calls == 1:
        raise Exception("first call fails")
    return {"ok": calls}
`

// startOn opens a node on the data directory dir.
func startOn(t *testing.T, dir string) *runningNode {
	t.Helper()
	cfg := node.Defaults()
	cfg.Addr, cfg.DataDir, cfg.Auth, cfg.PrestartedHelpers = "127.0.0.1:0", dir, node.AuthNone, 0
	cfg.ShutdownGrace = 10 * time.Second
	cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	return serveNode(t, cfg)
}

func (on *runningNode) send(t *testing.T, method, path, body string, out any) {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), method, nodetest.Endpoint(on.n)+path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		t.Fatalf("%s %s: %d %s", method, path, resp.StatusCode, b)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s %s: %v: %s", method, path, err, b)
		}
	}
}

func (on *runningNode) triggerStatus(t *testing.T, function, name string) trigger.StatusView {
	t.Helper()
	var v struct{ Status trigger.StatusView }
	on.send(t, "GET", "/nimbus/v1/functions/"+function+"/triggers/"+name, "", &v)
	return v.Status
}

// TestTriggerCountsSurviveRestart: a timer trigger delivers to a real
// Python function that fails once; after the node restarts on the same data
// directory the API still reports the trigger's counts and its last error.
func TestTriggerCountsSurviveRestart(t *testing.T) {
	var py string
	for _, rt := range runtimes.Discover(slog.New(slog.DiscardHandler)) {
		if rt.Kind == runtimes.KindPython {
			py = rt.ID
			break
		}
	}
	if py == "" {
		t.Skip("no Python runtime on this host")
	}
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	_ = os.Chmod(filepath.Dir(dir), 0o755)
	on := startOn(t, dir)
	c := lambdaClient(on.n)
	_, err := c.CreateFunction(t.Context(), &lambda.CreateFunctionInput{
		FunctionName: aws.String("ticker"), Runtime: types.Runtime(py), Handler: aws.String("app.handler"),
		Role: aws.String("arn:aws:iam::000000000000:role/test"), Timeout: aws.Int32(30),
		Code: &types.FunctionCode{ZipFile: nodetest.Zip(t, map[string]string{"app.py": pyFailOnce})},
	})
	if err != nil {
		t.Fatal(err)
	}
	on.send(t, "POST", "/nimbus/v1/functions/ticker/triggers",
		`{"name":"tick","type":"timer","config":{"schedule":"@every 1s","catchUpWindow":"0s"},"maxRetries":0}`, nil)

	var before trigger.StatusView
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		before = on.triggerStatus(t, "ticker", "tick")
		if before.Delivered >= 2 && before.Failed >= 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("status after a minute: %+v, want 2 delivered and 1 failed", before)
		}
	}
	// Each new instance fails once: ticks that overlap a cold start may
	// start two.
	if !strings.Contains(before.LastError, "first call fails") || before.LastErrorTime.IsZero() {
		t.Fatalf("status: %+v, want the function's error", before)
	}
	// Stop the ticks, so that the counts stay put across the restart.
	on.send(t, "POST", "/nimbus/v1/functions/ticker/triggers/tick/disable", "", nil)
	time.Sleep(2 * time.Second) // a tick in flight ends
	before = on.triggerStatus(t, "ticker", "tick")
	on.stop(t)

	on = startOn(t, dir)
	defer on.stop(t)
	after := on.triggerStatus(t, "ticker", "tick")
	if after.Delivered != before.Delivered || after.Failed != before.Failed || after.LastError != before.LastError ||
		!after.LastErrorTime.Equal(before.LastErrorTime) || !after.LastEvent.Equal(before.LastEvent) {
		t.Fatalf("after the restart: %+v, want the counts of before: %+v", after, before)
	}
	// ListEventSourceMappings-style listing shows them too.
	var list struct {
		Triggers []struct{ Status trigger.StatusView }
	}
	on.send(t, "GET", "/nimbus/v1/functions/ticker/triggers", "", &list)
	if len(list.Triggers) != 1 || list.Triggers[0].Status.Delivered != before.Delivered {
		t.Errorf("list after the restart: %+v", list)
	}
}
