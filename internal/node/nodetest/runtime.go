package nodetest

import (
	"errors"
	"log/slog"
	"testing"

	"github.com/nimbus-serverless/nimbus/internal/runtimes"
	"github.com/nimbus-serverless/nimbus/internal/testenv"
)

// NodeRuntime is the ID of the Node.js runtime this host offers (its
// version is the host's: nodejs20.x, nodejs18.x, ...). A test that needs
// one skips without it, or fails under NIMBUS_REQUIRE_SERVICES=1.
func NodeRuntime(t testing.TB) string {
	t.Helper()
	for _, rt := range runtimes.Discover(slog.New(slog.DiscardHandler)) {
		if rt.Kind == runtimes.KindNode {
			return rt.ID
		}
	}
	testenv.Missing(t, "Node.js", errors.New("no node runtime found on this host (Debian: apt-get install nodejs)"))
	return ""
}
