package node_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nimbus-serverless/nimbus/internal/node"
	"github.com/nimbus-serverless/nimbus/internal/node/nodetest"
	"github.com/nimbus-serverless/nimbus/internal/seal"
	"github.com/nimbus-serverless/nimbus/internal/testenv"
)

const envSecretFn = `import os
def handler(event, context):
    return os.environ.get("API_KEY", "")
`

// openNode opens a node on dir (made by the caller) with the given node
// key, logging into logs.
func openNode(t *testing.T, dir, key string, logs io.Writer) (*node.Node, error) {
	t.Helper()
	cfg := node.Defaults()
	cfg.Addr, cfg.DataDir, cfg.NodeKey = "127.0.0.1:0", dir, key
	cfg.PrestartedHelpers = 0
	cfg.Auth = node.AuthNone // the test is about what is stored and logged
	cfg.ShutdownGrace = 5 * time.Second
	cfg.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	return node.Open(t.Context(), cfg)
}

func request(t *testing.T, method, url, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), method, url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestSecretsAtRestOnNode: a function's environment and a trigger's
// password reach the function and the broker client, but neither the
// JetStream files, nor an answer (the trigger's), nor a log line; a node
// started with another node key refuses to start, naming the key.
func TestSecretsAtRestOnNode(t *testing.T) {
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	_ = os.Chmod(filepath.Dir(dir), 0o755)
	key := seal.Generate()
	var logs testenv.Buffer
	n, err := openNode(t, dir, key, &logs)
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- n.Serve() }()
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			if err := n.Shutdown(context.Background()); err != nil {
				t.Errorf("shutdown: %v", err)
			}
			<-served
		}
	}
	t.Cleanup(stop)
	base := nodetest.Endpoint(n)

	envSecret := fmt.Sprintf("env-%d-%d", os.Getpid(), time.Now().UnixNano())
	password := fmt.Sprintf("pw%d%d", os.Getpid(), time.Now().UnixNano())
	zip := base64.StdEncoding.EncodeToString(nodetest.Zip(t, map[string]string{"app.py": envSecretFn}))
	code, body := request(t, "POST", base+"/2015-03-31/functions", `{"FunctionName":"f","Runtime":"python3.11","Handler":"app.handler",`+
		`"Environment":{"Variables":{"API_KEY":"`+envSecret+`"}},"Code":{"ZipFile":"`+zip+`"}}`)
	if code != http.StatusCreated {
		t.Fatalf("create: %d %s", code, body)
	}
	code, body = request(t, "POST", base+"/2015-03-31/functions/f/invocations", `{}`)
	if code != http.StatusOK || body != `"`+envSecret+`"` {
		t.Fatalf("invoke: %d %s, want the environment variable the instance started with", code, body)
	}

	// A trigger whose broker is not there: its source fails, and says so.
	code, body = request(t, "POST", base+"/nimbus/v1/functions/f/triggers",
		`{"name":"mq","type":"rabbitmq","config":{"url":"amqp://app:`+password+`@127.0.0.1:1/","queue":"q"}}`)
	if code != http.StatusCreated {
		t.Fatalf("create trigger: %d %s", code, body)
	}
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(logs.String(), "trigger=mq") {
		if time.Now().After(deadline) {
			t.Fatalf("the failing trigger logged nothing in 30s:\n%s", logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	_, shown := request(t, "GET", base+"/nimbus/v1/functions/f/triggers/mq", "")
	if strings.Contains(shown, password) || !strings.Contains(shown, "app:****@") {
		t.Errorf("the trigger's answer: %s, want its password redacted", shown)
	}
	stop()

	if strings.Contains(logs.String(), password) || strings.Contains(logs.String(), envSecret) {
		t.Errorf("a log line holds a secret:\n%s", logs.String())
	}
	testenv.CheckFilesLack(t, filepath.Join(dir, "jetstream"), envSecret, password)

	// Another node key: the start fails, naming the node key.
	var logs2 testenv.Buffer
	n2, err := openNode(t, dir, seal.Generate(), &logs2)
	if err == nil {
		_ = n2.Shutdown(context.Background())
		t.Fatal("a node with another node key started")
	}
	if !strings.Contains(err.Error(), "node key") || !strings.Contains(err.Error(), "function f") {
		t.Fatalf("start with another key: %v, want an error naming the node key", err)
	}
	// The right key starts, and the function still runs.
	n3, err := openNode(t, dir, key, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = n3.Serve() }()
	t.Cleanup(func() { _ = n3.Shutdown(context.Background()) })
	var out map[string]any
	code, body = request(t, "GET", nodetest.Endpoint(n3)+"/2015-03-31/functions/f/configuration", "")
	if err := json.Unmarshal([]byte(body), &out); code != http.StatusOK || err != nil ||
		!strings.Contains(body, envSecret) {
		t.Fatalf("GetFunctionConfiguration after a restart: %d %s, want the variable in clear", code, body)
	}
}
