package mqtt

import (
	"testing"

	"github.com/nimbus-serverless/nimbus/internal/trigger/triggertest"
)

func TestRedaction(t *testing.T) {
	triggertest.CheckRedaction(t, New, `{"url":"mqtt://sensor:hunter2@127.0.0.1:1883","topic":"a/#","deadLetterTopic":"d"}`, "hunter2")
	triggertest.CheckRedaction(t, New, `{"url":"mqtts://only-a-token@broker.example.com","topic":"a"}`, "only-a-token")
	triggertest.CheckRedaction(t, New, `{"url":"mqtt://127.0.0.1:1883","topic":"a"}`)
}
