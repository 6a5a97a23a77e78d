package rabbitmq

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/nimbus-serverless/nimbus"
)

// FuzzNew checks that any config is either accepted or refused with a user
// error, never a panic.
func FuzzNew(f *testing.F) {
	for _, seed := range []string{`{"url":"amqp://guest:guest@127.0.0.1:5672/","queue":"orders","prefetch":10}`, `{"url":"amqp://h/","queue":"q","deadLetterExchange":"x","deadLetterRoutingKey":"k"}`, `{"url":"amqps://u:p@h:1/%2f","queue":""}`} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		src, err := New(json.RawMessage(raw))
		if err != nil && !errors.Is(err, nimbus.ErrInvalid) {
			t.Fatalf("New(%q) = %v, want a nimbus.ErrInvalid error", raw, err)
		}
		if err == nil && src == nil {
			t.Fatalf("New(%q) returned neither a source nor an error", raw)
		}
	})
}
