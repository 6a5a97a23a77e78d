package s3

import (
	"encoding/json"
	"testing"

	"github.com/nimbus-serverless/nimbus/internal/trigger"
	"github.com/nimbus-serverless/nimbus/internal/trigger/triggertest"
)

func TestRedaction(t *testing.T) {
	f := NewReceiver(nil).Factory("fn", "uploads")
	triggertest.CheckRedaction(t, f, `{"bucket":"b","events":["s3:ObjectCreated:*"],"secret":"s3cr3t-s3cr3t"}`, "s3cr3t-s3cr3t")
	triggertest.CheckRedaction(t, f, `{"bucket":"b"}`)
	// A new trigger cannot take the redacted form as its secret.
	if _, err := trigger.RestoreConfig(f, json.RawMessage(`{"bucket":"b","secret":"****"}`), nil); err == nil {
		t.Error("a new trigger with the secret \"****\" was accepted")
	}
}
