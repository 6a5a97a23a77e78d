package triggertest

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/nimbus-serverless/nimbus/internal/trigger"
)

// CheckRedaction checks how a trigger type (its Factory f) shows config:
// none of the secrets appears in trigger.RedactConfig's answer, the rest
// does, and the answer sent back as an update (trigger.RestoreConfig)
// gives config again. With no secrets, the answer must be config as it is.
func CheckRedaction(t *testing.T, f trigger.Factory, config string, secrets ...string) {
	t.Helper()
	shown := string(trigger.RedactConfig(f, json.RawMessage(config)))
	if len(secrets) == 0 && shown != config {
		t.Errorf("config %s is shown as %s, want it as it is (no secrets)", config, shown)
	}
	for _, s := range secrets {
		if strings.Contains(shown, s) {
			t.Errorf("config %s is shown as %s, which holds the secret %q", config, shown, s)
		}
	}
	if len(secrets) > 0 && !strings.Contains(shown, trigger.Redacted) {
		t.Errorf("config %s is shown as %s, without %q where the secrets were", config, shown, trigger.Redacted)
	}
	back, err := trigger.RestoreConfig(f, json.RawMessage(shown), json.RawMessage(config))
	if err != nil {
		t.Fatalf("the shown config sent back: %v", err)
	}
	var got, want any
	if json.Unmarshal(back, &got) != nil || json.Unmarshal([]byte(config), &want) != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("the shown config sent back restores %s, want %s", back, config)
	}
}
