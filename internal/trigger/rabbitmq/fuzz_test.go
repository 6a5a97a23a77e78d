package rabbitmq

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/trigger"
)

// FuzzNew checks that any config is either accepted or refused with a user
// error, never a panic.
func FuzzNew(f *testing.F) {
	for _, seed := range []string{`{"url":"amqp://guest:guest@127.0.0.1:5672/","queue":"orders","prefetch":10}`, `{"url":"amqp://h/","queue":"q","deadLetterExchange":"x","deadLetterRoutingKey":"k"}`, `{"url":"amqps://u:p@h:1/%2f","queue":""}`, `{"url":"amqp://h/","queue":"q","orderBy":"header:x-tenant"}`, `{"url":"amqp://h/","queue":"q","orderBy":"routingKey","prefetch":65535}`, `{"url":"amqp://h/","queue":"q","orderBy":"header:"}`, `{"url":"amqp://h/","queue":"q","orderBy":"queue"}`} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		src, err := New(json.RawMessage(raw))
		if err != nil && !errors.Is(err, nimbus.ErrInvalid) {
			t.Fatalf("New(%q) = %v, want a nimbus.ErrInvalid error", raw, err)
		}
		if err != nil {
			return
		}
		if src == nil {
			t.Fatalf("New(%q) returned neither a source nor an error", raw)
		}
		// An accepted config has a known ordering and a prefetch AMQP can carry.
		s := src.(*Source)
		switch o := s.order; {
		case o.by == OrderNone || o.by == OrderQueue || o.by == OrderRoutingKey:
		case o.by == OrderHeader && o.header != "" && len(o.header) <= maxShortString:
		default:
			t.Fatalf("New(%q) accepted ordering %+v", raw, o)
		}
		if p := s.settings(trigger.Options{BatchSize: 10000, Concurrency: 1000}).prefetch; p < 1 || p > maxPrefetch {
			t.Fatalf("New(%q): prefetch %d out of range", raw, p)
		}
	})
}
