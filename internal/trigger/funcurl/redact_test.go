package funcurl

import (
	"testing"

	"github.com/nimbus-serverless/nimbus/internal/trigger/triggertest"
)

// TestRedaction: a function URL's key is meant for its owner, who reads it
// from the trigger: it is shown.
func TestRedaction(t *testing.T) {
	triggertest.CheckRedaction(t, Factory, `{"authType":"KEY","key":"`+NewKey()+`"}`)
}
