package testenv

import (
	"os/exec"
	"testing"
)

// Tool returns the path of the program name (such as "aws"), looked up in
// $PATH. When it is not installed the test ends by the same rule as a
// missing service: it fails under NIMBUS_REQUIRE_SERVICES=1 and is skipped
// otherwise.
func Tool(t testing.TB, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		Missing(t, name, err)
	}
	return path
}

// Missing ends the test because what (a program, a runtime, a library) is
// not installed: it fails under NIMBUS_REQUIRE_SERVICES=1 and is skipped
// otherwise.
func Missing(t testing.TB, what string, err error) {
	t.Helper()
	if RequireServices() {
		t.Fatalf("%s is required (NIMBUS_REQUIRE_SERVICES=1) but not installed: %v", what, err)
	}
	t.Skipf("%s is not installed (set NIMBUS_REQUIRE_SERVICES=1 to fail instead): %v", what, err)
}
