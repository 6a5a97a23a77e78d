package rabbitmq

import (
	"encoding/json"
	"testing"

	"github.com/nimbus-serverless/nimbus/internal/trigger"
	"github.com/nimbus-serverless/nimbus/internal/trigger/triggertest"
)

func TestRedaction(t *testing.T) {
	triggertest.CheckRedaction(t, New, `{"url":"amqp://guest:hunter2@127.0.0.1:5672/","queue":"q","deadLetterExchange":"dlx"}`, "hunter2")
	triggertest.CheckRedaction(t, New, `{"url":"amqps://app:p%40ss@mq.example.com/vhost","queue":"q"}`, "p%40ss")
	triggertest.CheckRedaction(t, New, `{"url":"amqp://127.0.0.1:5672/","queue":"q"}`)
	// Sent to another broker, the redacted password is refused, not kept.
	_, err := trigger.RestoreConfig(New, json.RawMessage(`{"url":"amqp://guest:****@evil:5672/","queue":"q"}`),
		json.RawMessage(`{"url":"amqp://guest:hunter2@127.0.0.1:5672/","queue":"q"}`))
	if err == nil {
		t.Error("a redacted password sent to another host was accepted")
	}
}
