package engine

import (
	"context"
	"testing"

	"github.com/nimbus-serverless/nimbus"
)

// BenchmarkWarmInvokeExec is the engine's warm path with instances as plain
// child processes (no sandbox): what the engine itself costs. The node's
// benchmarks (internal/node) measure the whole stack.
func BenchmarkWarmInvokeExec(b *testing.B) {
	h := newBenchHarness(b)
	req := nimbus.Invocation{RequestID: "bench", Payload: []byte(`{}`)}
	if _, err := h.e.Invoke(b.Context(), h.fn, req); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		res, err := h.e.Invoke(b.Context(), h.fn, req)
		if err != nil || res.Err != nil {
			b.Fatal(err, res.Err)
		}
	}
}

func newBenchHarness(b *testing.B) *harness {
	h := &harness{sb: &execBackend{}, clock: &clock{}}
	e, err := New(Config{
		Sandbox:      h.sb,
		Code:         dirCache{dirs: map[string]string{goodDigest: behaveDir}},
		BootstrapDir: b.TempDir(),
		Runtimes:     testRuntimes,
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = e.Close(context.Background()) })
	h.e = e
	h.fn = &nimbus.Function{Name: "behave", Runtime: behaveRuntime, MemoryMB: 128, Timeout: 5, CodeSHA256: goodDigest, RevisionID: "r1"}
	return h
}
