package api

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/registry"
	"github.com/nimbus-serverless/nimbus/internal/trigger"
	s3trigger "github.com/nimbus-serverless/nimbus/internal/trigger/s3"
)

// TestKeepSecretsRefusesAChangedTrigger checks that a secret restored from
// the config read before an update is not written over a config that
// changed in the meantime.
func TestKeepSecretsRefusesAChangedTrigger(t *testing.T) {
	types := registry.TriggerTypes{Factories: map[string]trigger.Factory{
		nimbus.TriggerS3: s3trigger.NewReceiver(nil).Factory("v", "v"),
	}}
	old := &nimbus.Trigger{Name: "up", Type: nimbus.TriggerS3, Config: json.RawMessage(`{"bucket":"b","secret":"first-secret"}`)}
	in := registry.TriggerInput{Config: json.RawMessage(`{"bucket":"c","secret":"****"}`)}
	types, err := keepSecrets(types, &in, old)
	if err != nil {
		t.Fatal(err)
	}
	if got := string(in.Config); got != `{"bucket":"c","secret":"first-secret"}` {
		t.Fatalf("restored config %s, want the stored secret", got)
	}
	next := &nimbus.Trigger{Name: "up", Type: nimbus.TriggerS3, Config: in.Config}
	same := &nimbus.Function{Name: "f", Triggers: []nimbus.Trigger{*old}}
	if err := types.Prepare(same, next); err != nil {
		t.Errorf("Prepare with the config read before: %v", err)
	}
	changed := &nimbus.Function{Name: "f", Triggers: []nimbus.Trigger{{Name: "up", Type: nimbus.TriggerS3,
		Config: json.RawMessage(`{"bucket":"b","secret":"second-secret"}`)}}}
	if err := types.Prepare(changed, next); !errors.Is(err, nimbus.ErrConflict) {
		t.Errorf("Prepare after the config changed = %v, want ErrConflict", err)
	}
}
