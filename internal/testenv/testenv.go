// Package testenv holds what tests of several packages share about their
// environment: whether a missing service (a broker, a NATS server) skips or
// fails a test, whether the race detector is on, and the nimbus binary that
// end-to-end tests start.
package testenv

import (
	"os"
	"testing"
)

// RequireServices reports whether NIMBUS_REQUIRE_SERVICES=1 (as .ci/run
// sets): then a missing service fails a test instead of skipping it.
func RequireServices() bool { return os.Getenv("NIMBUS_REQUIRE_SERVICES") == "1" }

// Unavailable ends the test because service at addr is unreachable (err):
// it fails under NIMBUS_REQUIRE_SERVICES=1 and is skipped otherwise.
func Unavailable(t testing.TB, service, addr string, err error) {
	t.Helper()
	if RequireServices() {
		t.Fatalf("%s at %s is required (NIMBUS_REQUIRE_SERVICES=1): %v", service, addr, err)
	}
	t.Skipf("%s not reachable at %s (set NIMBUS_REQUIRE_SERVICES=1 to fail instead): %v", service, addr, err)
}
