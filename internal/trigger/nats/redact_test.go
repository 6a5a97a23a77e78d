package nats

import (
	"testing"

	"github.com/nimbus-serverless/nimbus/internal/trigger/triggertest"
)

func TestRedaction(t *testing.T) {
	triggertest.CheckRedaction(t, New, `{"url":"nats://app:hunter2@127.0.0.1:4222","subject":"a.>"}`, "hunter2")
	triggertest.CheckRedaction(t, New, `{"url":"nats://s3cr3t-token@n1:4222,nats://s3cr3t-token@n2:4222","stream":"S"}`, "s3cr3t-token")
	triggertest.CheckRedaction(t, New, `{"url":"nats://127.0.0.1:4222","subject":"a"}`)
}
