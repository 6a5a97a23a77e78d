package triggertest

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nimbus-serverless/nimbus/internal/trigger"
)

// Run starts src in the background; the returned stop (also called at the
// end of the test) cancels it and checks that Run returned nil.
func Run(t testing.TB, src trigger.Source, sink trigger.Sink, opts trigger.Options) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx, sink, opts) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run returned %v, want nil", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// WaitFor polls cond until it holds, failing the test after 20 s.
func WaitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Options are test options: batches of size gathered for window, one
// batch in flight, group "test", a fresh Status.
func Options(size int, window time.Duration) trigger.Options {
	return trigger.Options{BatchSize: size, BatchWindow: window, Concurrency: 1, Group: "test", Status: trigger.NewStatus()}
}

// Body is the data of the i-th test message, "m-0042": InOrder reads it back.
func Body(i int) string { return fmt.Sprintf("m-%04d", i) }

// InOrder checks that the first deliveries of messages made with Body came
// in publishing order (redeliveries of earlier messages may come between).
func InOrder(t *testing.T, msgs []trigger.Message) {
	t.Helper()
	next := 0
	for _, m := range msgs {
		i, _ := strconv.Atoi(strings.TrimPrefix(string(m.Data), "m-"))
		if i > next {
			t.Fatalf("got %s before %s: order broken", m.Data, Body(next))
		}
		if i == next {
			next++
		}
	}
}
