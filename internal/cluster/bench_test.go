package cluster

import (
	"context"
	"testing"
	"time"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/store/mem"
)

type nopLocal struct{}

func (nopLocal) Invoke(context.Context, *nimbus.Function, nimbus.Invocation) (nimbus.Result, error) {
	return nimbus.Result{}, nil
}
func (nopLocal) Warm(string) int { return 0 }

// BenchmarkSingleNode: what the Forwarder adds to an invoke on a node that
// no peer helps with that function ("direct" calls the local invoker,
// "forwarder" goes through Forwarder.Invoke; "other function" has a peer
// warm for another function): one atomic load and one map lookup
// (docs/BENCHMARKS.md).
func BenchmarkSingleNode(b *testing.B) {
	kv := mem.NewKV()
	m, err := Open(b.Context(), Config{KV: kv, Interval: time.Second, TTL: 5 * time.Second, Self: func() Member { return Member{ID: "a"} }})
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close(context.Background())
	f := newFwd(b, m, nopLocal{}, &fakeEngine{key: "f@k"})
	fn := &nimbus.Function{Name: "f"}
	req := nimbus.Invocation{RequestID: "r", Payload: []byte("{}"), Trigger: nimbus.TriggerAPI}
	ctx := context.Background()
	b.Run("direct", func(b *testing.B) {
		var l Invoker = nopLocal{}
		for b.Loop() {
			_, _ = l.Invoke(ctx, fn, req)
		}
	})
	b.Run("forwarder", func(b *testing.B) {
		for b.Loop() {
			_, _ = f.Invoke(ctx, fn, req)
		}
	})
	putMember(b, kv, Member{ID: "b", Address: "http://b", Warm: map[string]int{"other@k": 1}})
	for !m.PeersWarm("other") {
		time.Sleep(time.Millisecond)
	}
	b.Run("other function", func(b *testing.B) {
		for b.Loop() {
			_, _ = f.Invoke(ctx, fn, req)
		}
	})
}
