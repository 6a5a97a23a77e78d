package kafka

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nimbus-serverless/nimbus"
)

func TestNewValidatesConfig(t *testing.T) {
	long := strings.Repeat("g", 256)
	tests := []struct {
		name, raw, wantErr string
	}{
		{"empty", ``, "brokers is required"},
		{"null", `null`, "brokers is required"},
		{"not an object", `[]`, "kafka trigger config"},
		{"unknown field", `{"brokers":["a:1"],"topic":"t","bogus":1}`, `unknown field "bogus"`},
		{"no brokers", `{"topic":"t"}`, "brokers is required"},
		{"empty brokers", `{"brokers":[],"topic":"t"}`, "brokers is required"},
		{"broker without port", `{"brokers":["localhost"],"topic":"t"}`, `brokers[0] "localhost": must be host:port`},
		{"broker port zero", `{"brokers":["a:1","b:0"],"topic":"t"}`, `brokers[1] "b:0": port must be`},
		{"broker port text", `{"brokers":["a:x"],"topic":"t"}`, "port must be"},
		{"broker no host", `{"brokers":[":9092"],"topic":"t"}`, "host is missing"},
		{"no topic", `{"brokers":["a:1"]}`, "topic is required"},
		{"bad topic", `{"brokers":["a:1"],"topic":"a b"}`, `topic "a b" is not a valid`},
		{"dot topic", `{"brokers":["a:1"],"topic":".."}`, "is not a valid"},
		{"long topic", `{"brokers":["a:1"],"topic":"` + strings.Repeat("t", 250) + `"}`, "is not a valid"},
		{"bad start", `{"brokers":["a:1"],"topic":"t","startPosition":"AT_TIMESTAMP"}`, `startPosition "AT_TIMESTAMP": must be LATEST or TRIM_HORIZON`},
		{"lowercase start", `{"brokers":["a:1"],"topic":"t","startPosition":"latest"}`, "startPosition"},
		{"long group", `{"brokers":["a:1"],"topic":"t","group":"` + long + `"}`, "group is longer"},
		{"control group", `{"brokers":["a:1"],"topic":"t","group":"a\u0001"}`, "group contains control"},
		{"wrong type", `{"brokers":"a:1","topic":"t"}`, "kafka trigger config"},
		{"session not a duration", `{"brokers":["a:1"],"topic":"t","sessionTimeout":"soon"}`, `sessionTimeout "soon": must be a duration from 1s to 30m0s`},
		{"session a number", `{"brokers":["a:1"],"topic":"t","sessionTimeout":10}`, "kafka trigger config"},
		{"session too short", `{"brokers":["a:1"],"topic":"t","sessionTimeout":"999ms"}`, `sessionTimeout "999ms"`},
		{"session too long", `{"brokers":["a:1"],"topic":"t","sessionTimeout":"31m"}`, `sessionTimeout "31m"`},
		{"session negative", `{"brokers":["a:1"],"topic":"t","sessionTimeout":"-10s"}`, `sessionTimeout "-10s"`},
		{"session below a millisecond", `{"brokers":["a:1"],"topic":"t","sessionTimeout":"1.0005s"}`, "whole milliseconds"},
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
		})
	}
}

func TestSessionTimeout(t *testing.T) {
	for raw, want := range map[string]time.Duration{
		``:                          DefaultSessionTimeout,
		`,"sessionTimeout":"1s"`:    time.Second,
		`,"sessionTimeout":"1m30s"`: 90 * time.Second,
		`,"sessionTimeout":"30m"`:   30 * time.Minute,
	} {
		src, err := newSource(json.RawMessage(`{"brokers":["a:1"],"topic":"t"` + raw + `}`))
		if err != nil {
			t.Errorf("config with %s: %v", raw, err)
			continue
		}
		if src.session != want {
			t.Errorf("config with %s: session timeout %s, want %s", raw, src.session, want)
		}
	}
}

func TestNewAcceptsConfig(t *testing.T) {
	tests := []struct {
		raw       string
		wantStart string
		wantSrc   string
	}{
		{`{"brokers":["127.0.0.1:9092"],"topic":"orders"}`, StartLatest, "kafka://127.0.0.1:9092/orders"},
		{`{"brokers":["k1:9092","k2:9092"],"topic":"a.b_c-d","startPosition":"TRIM_HORIZON","group":"g"}`, StartTrimHorizon, "kafka://k1:9092/a.b_c-d"},
		{`{"brokers":["[::1]:9092"],"topic":"t","startPosition":"LATEST"}`, StartLatest, "kafka://[::1]:9092/t"},
	}
	for _, tt := range tests {
		src, err := newSource(json.RawMessage(tt.raw))
		if err != nil {
			t.Fatalf("New(%s): %v", tt.raw, err)
		}
		if got := src.Config().StartPosition; got != tt.wantStart {
			t.Errorf("New(%s).StartPosition = %q, want %q", tt.raw, got, tt.wantStart)
		}
		if src.source != tt.wantSrc {
			t.Errorf("New(%s) source = %q, want %q", tt.raw, src.source, tt.wantSrc)
		}
	}
}

func FuzzNew(f *testing.F) {
	f.Add(`{"brokers":["127.0.0.1:9092"],"topic":"orders"}`)
	f.Add(`{"brokers":["k1:9092","[::1]:1"],"topic":"a.b","startPosition":"TRIM_HORIZON","group":"g"}`)
	f.Add(`{"brokers":[":"],"topic":"..","group":"\u0000"}`)
	f.Fuzz(func(t *testing.T, raw string) {
		src, err := newSource(json.RawMessage(raw))
		if err != nil {
			if !errors.Is(err, nimbus.ErrInvalid) {
				t.Fatalf("New(%q) = %v, not a user error", raw, err)
			}
			return
		}
		c := src.Config()
		if len(c.Brokers) == 0 || !validTopic().MatchString(c.Topic) || (c.StartPosition != StartLatest && c.StartPosition != StartTrimHorizon) {
			t.Fatalf("New(%q) accepted %+v", raw, c)
		}
	})
}
