package redis

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/nimbus-serverless/nimbus"
)

// FuzzNew checks that any config is either accepted or refused with a user
// error, never a panic.
func FuzzNew(f *testing.F) {
	for _, seed := range []string{`{"url":"redis://127.0.0.1:6379/0","stream":"s","startPosition":"TRIM_HORIZON"}`, `{"url":"rediss://u:p@h:1/15","stream":"s","claimIdleSeconds":5,"dataField":"d"}`, `{"url":"unix:///tmp/r.sock","stream":"s"}`,
		`{"url":"redis://h:1","stream":"s","orderBy":"stream"}`, `{"url":"redis://h:1","stream":"s","orderBy":"field:customer"}`,
		`{"url":"redis://h:1","stream":"s","orderBy":"field:"}`, `{"url":"redis://h:1","stream":"s","orderBy":"NONE"}`} {
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
