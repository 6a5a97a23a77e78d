package sandboxtest

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nimbus-serverless/nimbus/internal/sandbox"
	"github.com/nimbus-serverless/nimbus/internal/testenv"
)

// testFreeze checks that a frozen instance runs nothing, not even a
// process it left in the background, until it is thawed; and that a
// frozen instance can be killed.
func testFreeze(t *testing.T, nb NewBackend) {
	b := nb(t, Setup{})
	require(t, b, "freezing", func(i sandbox.Isolation) bool { return i.Freeze })
	var out testenv.Buffer
	// The ticker runs in the background, in a session of its own.
	spec := sh(t, `setsid sh -c 'while :; do echo tick >> "${TMPDIR:-/tmp}/ticks"; sleep 0.01; done' &
echo ready; exec sleep 60`, &out)
	inst := running(t, b, spec, &out)
	fz := sandbox.FreezerOf(inst)
	if fz == nil {
		t.Fatalf("the instance is no sandbox.Freezer, though the backend claims freezing")
	}
	ticks := filepath.Join(inst.TmpDir(), "ticks")
	size := func() int64 {
		fi, err := os.Stat(ticks)
		if err != nil {
			return 0
		}
		return fi.Size()
	}
	grows := func() {
		t.Helper()
		from := size()
		waitFor(t, "the ticker to tick", func() bool { return size() > from })
	}
	grows()
	for range 2 { // freezing twice in a row is harmless
		if err := fz.Freeze(); err != nil {
			t.Fatalf("Freeze: %v", err)
		}
	}
	time.Sleep(100 * time.Millisecond) // freezing completes asynchronously
	before := size()
	time.Sleep(300 * time.Millisecond)
	if after := size(); after != before {
		t.Errorf("the ticker wrote %d bytes while frozen", after-before)
	}
	if err := fz.Thaw(); err != nil {
		t.Fatalf("Thaw: %v", err)
	}
	grows()
	if err := fz.Freeze(); err != nil {
		t.Fatalf("Freeze: %v", err)
	}
	inst.Kill()
	wait(t, inst)
	if err := fz.Thaw(); err != nil {
		t.Errorf("Thaw after exit: %v, want nil", err)
	}
}
