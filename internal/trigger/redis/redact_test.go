package redis

import (
	"testing"

	"github.com/nimbus-serverless/nimbus/internal/trigger/triggertest"
)

func TestRedaction(t *testing.T) {
	triggertest.CheckRedaction(t, New, `{"url":"redis://:hunter2@127.0.0.1:6379/0","stream":"s"}`, "hunter2")
	triggertest.CheckRedaction(t, New, `{"url":"rediss://app:hunter2@cache.example.com:6380/2","stream":"s","deadLetterStream":"d"}`, "hunter2")
	triggertest.CheckRedaction(t, New, `{"url":"redis://127.0.0.1:6379/0","stream":"s"}`)
}
