package nats

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/nimbus-serverless/nimbus"
)

func TestNewValidatesConfig(t *testing.T) {
	long := strings.Repeat("s", 256)
	tests := []struct {
		name, raw, wantErr string
	}{
		{"empty", ``, "url is required"},
		{"unknown field", `{"url":"nats://a:1","subject":"a","durable":"x"}`, `unknown field "durable"`},
		{"wrong type", `{"url":4222}`, "nats trigger config"},
		{"no url", `{"subject":"a"}`, "url is required"},
		{"url without scheme", `{"url":"127.0.0.1:4222","subject":"a"}`, "url is not a server URL"},
		{"url with password is not echoed", `{"url":"nats://u:secret@","subject":"a"}`, "url is not a server URL"},
		{"url bad scheme", `{"url":"http://a:4222","subject":"a"}`, `scheme "http": must be nats, tls, ws or wss`},
		{"second url bad", `{"url":"nats://a:1,b:2","subject":"a"}`, "url is not a server URL"},
		{"core without subject", `{"url":"nats://a:1"}`, "subject is required"},
		{"subject space", `{"url":"nats://a:1","subject":"a b"}`, `subject "a b": spaces`},
		{"subject empty token", `{"url":"nats://a:1","subject":"a..b"}`, "empty token"},
		{"subject trailing dot", `{"url":"nats://a:1","subject":"a."}`, "empty token"},
		{"subject gt not last", `{"url":"nats://a:1","subject":"a.>.b"}`, "'>' must be the last token"},
		{"subject partial wildcard", `{"url":"nats://a:1","subject":"a.b*"}`, "must be whole tokens"},
		{"queue with space", `{"url":"nats://a:1","subject":"a","queue":"q 1"}`, `queue "q 1"`},
		{"queue too long", `{"url":"nats://a:1","subject":"a","queue":"` + long + `"}`, "queue"},
		{"consumer without stream", `{"url":"nats://a:1","subject":"a","consumer":"c"}`, "consumer is only valid with stream"},
		{"start without stream", `{"url":"nats://a:1","subject":"a","startPosition":"LATEST"}`, "startPosition is only valid with stream"},
		{"stream with dot", `{"url":"nats://a:1","stream":"a.b"}`, `stream "a.b": no spaces`},
		{"stream too long", `{"url":"nats://a:1","stream":"` + long + `"}`, "longer than 255"},
		{"stream with queue", `{"url":"nats://a:1","stream":"S","queue":"q"}`, "queue is only valid without stream"},
		{"stream bad filter", `{"url":"nats://a:1","stream":"S","subject":"a..b"}`, `subject "a..b"`},
		{"bad consumer", `{"url":"nats://a:1","stream":"S","consumer":"c*"}`, `consumer "c*"`},
		{"bad start", `{"url":"nats://a:1","stream":"S","startPosition":"EARLIEST"}`, `startPosition "EARLIEST": must be LATEST or TRIM_HORIZON`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(json.RawMessage(tt.raw))
			if err == nil {
				t.Fatalf("New(%s) = nil error, want %q", tt.raw, tt.wantErr)
			}
			if !errors.Is(err, nimbus.ErrInvalid) {
				t.Errorf("error %v is not nimbus.ErrInvalid", err)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error = %q, want it to contain %q", err, tt.wantErr)
			}
			if strings.Contains(err.Error(), "secret") {
				t.Errorf("error %q shows the password", err)
			}
		})
	}
}

func TestNewAcceptsConfig(t *testing.T) {
	tests := []struct {
		raw, wantSource, wantStart string
		jetStream                  bool
	}{
		{`{"url":"nats://127.0.0.1:4222","subject":"a.b"}`, "nats://127.0.0.1:4222/a.b", "", false},
		{`{"url":"nats://u:p@n1:4222, nats://n2:4222","subject":"a.*.>","queue":"workers.v1"}`, "nats://n1:4222/a.*.>", "", false},
		{`{"url":"tls://n1:4222","stream":"ORDERS"}`, "nats://n1:4222/ORDERS", StartLatest, true},
		{`{"url":"nats://n1:4222","stream":"ORDERS","subject":"orders.eu.>","consumer":"fn-orders","startPosition":"TRIM_HORIZON"}`, "nats://n1:4222/ORDERS", StartTrimHorizon, true},
	}
	for _, tt := range tests {
		src, err := newSource(json.RawMessage(tt.raw))
		if err != nil {
			t.Fatalf("New(%s): %v", tt.raw, err)
		}
		if src.source != tt.wantSource || src.Config().StartPosition != tt.wantStart || src.Config().JetStream() != tt.jetStream {
			t.Errorf("New(%s): source %q start %q jetstream %v, want %q %q %v", tt.raw,
				src.source, src.Config().StartPosition, src.Config().JetStream(), tt.wantSource, tt.wantStart, tt.jetStream)
		}
	}
}

func TestDefaultNames(t *testing.T) {
	tests := []struct{ group, durable, queue string }{
		{"fn-orders", "fn-orders", "fn-orders"},
		{"fn/orders.v1 x", "fn_orders_v1_x", "fn/orders.v1_x"},
		{"a*b>c", "a_b_c", "a_b_c"},
		{"", "", ""},
	}
	for _, tt := range tests {
		if got := durableName(tt.group); got != tt.durable {
			t.Errorf("durableName(%q) = %q, want %q", tt.group, got, tt.durable)
		}
		if got := queueName(tt.group); got != tt.queue {
			t.Errorf("queueName(%q) = %q, want %q", tt.group, got, tt.queue)
		}
	}
}

func FuzzNew(f *testing.F) {
	f.Add(`{"url":"nats://127.0.0.1:4222","subject":"a.*.>","queue":"q"}`)
	f.Add(`{"url":"nats://a:1,tls://b:2","stream":"S","subject":"x.>","consumer":"c","startPosition":"TRIM_HORIZON"}`)
	f.Add(`{"url":"nats://u:p@","subject":"a..b"}`)
	f.Fuzz(func(t *testing.T, raw string) {
		src, err := newSource(json.RawMessage(raw))
		if err != nil {
			if !errors.Is(err, nimbus.ErrInvalid) {
				t.Fatalf("New(%q) = %v, not a user error", raw, err)
			}
			return
		}
		c := src.Config()
		if c.JetStream() {
			if validName(c.Stream) != "" || (c.Subject != "" && validSubject(c.Subject) != "") || c.Queue != "" {
				t.Fatalf("New(%q) accepted %+v", raw, c)
			}
			return
		}
		if validSubject(c.Subject) != "" || c.Consumer != "" || c.StartPosition != "" {
			t.Fatalf("New(%q) accepted %+v", raw, c)
		}
	})
}
