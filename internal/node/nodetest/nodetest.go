// Package nodetest starts a real Nimbus node on loopback for tests. Test
// binaries that use it must call process.MaybeInit() first thing in TestMain,
// since the sandbox re-executes the test binary to set up each instance.
package nodetest

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/nimbus-serverless/nimbus/internal/node"
)

// Start opens a node with its data in a fresh temporary directory, on a free
// loopback port, and shuts it down when the test ends. mod may adjust the
// config.
func Start(t testing.TB, mod func(*node.Config)) *node.Node {
	t.Helper()
	n, _ := StartStoppable(t, mod)
	return n
}

// StartStoppable is Start, also returning a stop that shuts the node down
// before the test ends (at most once: the test's end does nothing more).
func StartStoppable(t testing.TB, mod func(*node.Config)) (*node.Node, func()) {
	t.Helper()
	cfg := node.Defaults()
	cfg.Addr = "127.0.0.1:0"
	cfg.DataDir = t.TempDir()
	// Function users are unprivileged: they must be able to traverse to
	// the code, and t.TempDir makes private (0700) directories.
	for _, d := range []string{cfg.DataDir, filepath.Dir(cfg.DataDir)} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// More than net/http's 5 s: Shutdown waits that long for a connection
	// a client opened but never used (tests with many concurrent clients
	// leave some).
	cfg.ShutdownGrace = 10 * time.Second
	// Tests of other things talk to the API unsigned; tests of
	// authentication set Auth back to node.AuthSigV4.
	cfg.Auth = node.AuthNone
	level := slog.LevelWarn
	if os.Getenv("NIMBUS_TEST_DEBUG") != "" {
		level = slog.LevelDebug
	}
	cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	if mod != nil {
		mod(&cfg)
	}
	n, err := node.Open(context.Background(), cfg)
	if err != nil {
		t.Fatalf("open node: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- n.Serve() }()
	var once sync.Once
	stop := func() {
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

// Endpoint is the node's API base URL.
func Endpoint(n *node.Node) string { return "http://" + n.Addr() }
