package node_test

import (
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/nimbus-serverless/nimbus/internal/node"
	"github.com/nimbus-serverless/nimbus/internal/node/nodetest"
	"github.com/nimbus-serverless/nimbus/internal/version"
)

// readyz is a node's /readyz answer, as JSON.
type readyz struct {
	code    int
	Status  string
	Version string
	Checks  map[string]string
}

func getReadyz(t *testing.T, n *node.Node) readyz {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), "GET", nodetest.Endpoint(n)+"/readyz", nil)
	req.Header.Set("Accept", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	r := readyz{code: resp.StatusCode}
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatalf("/readyz: %v: %s", err, b)
	}
	return r
}

// waitReadyz polls /readyz until cond holds.
func waitReadyz(t *testing.T, n *node.Node, what string, cond func(readyz) bool) readyz {
	t.Helper()
	var r readyz
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if r = getReadyz(t, n); cond(r) {
			return r
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz never %s: %+v", what, r)
		}
	}
}

// natsServer runs a NATS server with JetStream on a loopback port.
func natsServer(t *testing.T, port int, dir string) *server.Server {
	t.Helper()
	srv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: port, JetStream: true, StoreDir: dir, NoSigs: true, NoLog: true})
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	return srv
}

// TestReadyzOnNode: a node is ready once its store is connected and its
// sandbox's helpers are pre-started; it is not while its (remote) store is
// down, saying so, and is again when the store is back. /healthz stays
// "ok" throughout.
func TestReadyzOnNode(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	natsDir := t.TempDir()
	srv := natsServer(t, port, natsDir)
	defer func() { srv.Shutdown() }()

	dir := t.TempDir()
	for _, d := range []string{dir, filepath.Dir(dir)} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	cfg := node.Defaults()
	cfg.Addr, cfg.DataDir, cfg.Auth = "127.0.0.1:0", dir, node.AuthNone
	cfg.NATSURL, cfg.NATSPrefix = srv.ClientURL(), "readyz"
	cfg.PrestartedHelpers = 2
	cfg.ShutdownGrace = 5 * time.Second
	cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	n, err := node.Open(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- n.Serve() }()
	defer func() {
		_ = n.Shutdown(t.Context())
		<-served
	}()

	r := waitReadyz(t, n, "ready", func(r readyz) bool { return r.code == 200 })
	if r.Status != "ok" || r.Version != version.String() || r.Checks["store"] != "ok" || r.Checks["sandbox"] != "ok" {
		t.Errorf("ready node: %+v", r)
	}

	srv.Shutdown()
	srv.WaitForShutdown()
	r = waitReadyz(t, n, "unavailable", func(r readyz) bool { return r.code == 503 })
	if r.Status != "unavailable" || !strings.Contains(r.Checks["store"], "not connected") || r.Checks["sandbox"] != "ok" {
		t.Errorf("store down: %+v, want the store's check failing alone", r)
	}
	resp, err := http.Get(nodetest.Endpoint(n) + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.HasPrefix(string(b), "ok\n") {
		t.Errorf("/healthz with the store down: %d %q", resp.StatusCode, b)
	}

	srv = natsServer(t, port, natsDir)
	waitReadyz(t, n, "ready again", func(r readyz) bool { return r.code == 200 })
}
