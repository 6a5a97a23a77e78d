package mqtt

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/nimbus-serverless/nimbus"
)

// FuzzNew checks that any config is either accepted or refused with a user
// error, never a panic.
func FuzzNew(f *testing.F) {
	for _, seed := range []string{`{"url":"mqtt://127.0.0.1:1883","topic":"a/+/#","qos":1,"shared":true}`, `{"url":"ws://u:p@h/mqtt","topic":"#","clientId":"c","deadLetterTopic":"d"}`, `{"url":"tls://h","topic":"a//b/+"}`, `{"url":"mqtt://h","topic":"a","orderBy":"none","receiveMaximum":65535}`, `{"url":"mqtt://h","topic":"a","orderBy":"x"}`} {
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
