package kafka

import (
	"testing"

	"github.com/nimbus-serverless/nimbus/internal/trigger/triggertest"
)

// TestRedaction: a Kafka config holds no secret (brokers are host:port),
// so it is shown as it is.
func TestRedaction(t *testing.T) {
	triggertest.CheckRedaction(t, New, `{"brokers":["127.0.0.1:9092"],"topic":"orders","group":"billing","sessionTimeout":"10s"}`)
}
