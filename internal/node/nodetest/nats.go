package nodetest

import (
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/nimbus-serverless/nimbus/internal/testenv"
)

// SharedNATS is the NATS server (with JetStream) on this machine.
const SharedNATS = "nats://127.0.0.1:4222"

// SharedNATSPrefix returns a bucket prefix unique to this test run on the
// shared NATS server, and deletes its buckets when the test ends. It skips
// the test when the server is not there, unless NIMBUS_REQUIRE_SERVICES=1,
// which makes that a failure.
func SharedNATSPrefix(t testing.TB) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", strings.TrimPrefix(SharedNATS, "nats://"), time.Second)
	if err != nil {
		testenv.Unavailable(t, "NATS", SharedNATS, err)
	}
	c.Close()
	prefix := fmt.Sprintf("nimbustest_%d", time.Now().UnixNano())
	t.Cleanup(func() { deleteStreams(t, prefix) })
	return prefix
}

// deleteStreams removes every stream (bucket) whose name holds prefix.
func deleteStreams(t testing.TB, prefix string) {
	nc, err := nats.Connect(SharedNATS)
	if err != nil {
		t.Errorf("cleanup: %v", err)
		return
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Errorf("cleanup: %v", err)
		return
	}
	names := js.StreamNames(t.Context())
	for name := range names.Name() {
		if strings.Contains(name, prefix) {
			if err := js.DeleteStream(t.Context(), name); err != nil {
				t.Errorf("cleanup stream %s: %v", name, err)
			}
		}
	}
}
