package registry

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests if a goroutine outlives them: Close
// must stop the watch and every preparation.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
