package timer

import (
	"testing"

	"github.com/nimbus-serverless/nimbus/internal/trigger/triggertest"
)

// TestRedaction: a timer's config holds no secret; its payload is the
// function's data, shown as it is even where it looks secret.
func TestRedaction(t *testing.T) {
	f := New(Deps{}).Factory("fn", "nightly")
	triggertest.CheckRedaction(t, f, `{"schedule":"@every 1m","payload":{"token":"abc","url":"https://u:p@h"}}`)
}
