package trigger

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/nimbus-serverless/nimbus"
)

func TestRedactText(t *testing.T) {
	for in, want := range map[string]string{
		"amqp://guest:guest@127.0.0.1:5672/":                       "amqp://guest:****@127.0.0.1:5672/",
		"amqps://u:p%40ss@h/vhost?heartbeat=5":                     "amqps://u:****@h/vhost?heartbeat=5",
		"nats://s3cr3t@h:4222":                                     "nats://****@h:4222",
		"redis://:pw@h:6379/0":                                     "redis://:****@h:6379/0",
		"mqtt://u:p:q@h":                                           "mqtt://u:****@h",
		"nats://a:b@h1:4222,nats://c:d@h2:4222":                    "nats://a:****@h1:4222,nats://c:****@h2:4222",
		`connect to "amqp://u:pw@h": refused; mqtt://x:y@z failed`: `connect to "amqp://u:****@h": refused; mqtt://x:****@z failed`,
		"amqp://127.0.0.1:5672/":                                   "amqp://127.0.0.1:5672/",
		"mail bob@example.com":                                     "mail bob@example.com",
		"https://h/path@x":                                         "https://h/path@x",
		"":                                                         "",
	} {
		if got := RedactText(in); got != want {
			t.Errorf("RedactText(%q) = %q, want %q", in, got, want)
		}
	}
}

var urlSecrets = Secrets{URLs: []string{"url"}, Values: []string{"secret"}}

func TestSecretsRedact(t *testing.T) {
	tests := []struct{ in, want string }{
		{`{"url":"amqp://u:pw@h:5672/","queue":"q","prefetch":1e3}`, `{"prefetch":1e3,"queue":"q","url":"amqp://u:****@h:5672/"}`},
		{`{"secret":"0123456789","bucket":"b"}`, `{"bucket":"b","secret":"****"}`},
		{`{"outer":[{"url":"nats://tok@h"}]}`, `{"outer":[{"url":"nats://****@h"}]}`},
		{`{"secret":""}`, `{"secret":""}`},                                         // nothing to hide
		{`{"url":"amqp://h/", "queue": "q"}`, `{"url":"amqp://h/", "queue": "q"}`}, // unchanged: as it was
		{`{"queue":"amqp://u:pw@h"}`, `{"queue":"amqp://u:pw@h"}`},                 // not a secret member
		{`not json`, `not json`},
		{``, ``},
	}
	for _, tt := range tests {
		if got := string(urlSecrets.Redact(json.RawMessage(tt.in))); got != tt.want {
			t.Errorf("Redact(%s) = %s, want %s", tt.in, got, tt.want)
		}
	}
}

func TestSecretsRestore(t *testing.T) {
	stored := `{"url":"amqp://u:pw@h:5672/","secret":"0123456789"}`
	tests := []struct {
		name, update, stored, want, err string
	}{
		{"shown back", `{"url":"amqp://u:****@h:5672/","secret":"****"}`, stored, `{"secret":"0123456789","url":"amqp://u:pw@h:5672/"}`, ""},
		{"other vhost", `{"url":"amqp://u:****@h:5672/other"}`, stored, `{"url":"amqp://u:pw@h:5672/other"}`, ""},
		{"new password", `{"url":"amqp://u:new@h:5672/","secret":"abcdefghij"}`, stored, `{"url":"amqp://u:new@h:5672/","secret":"abcdefghij"}`, ""},
		{"no secrets", `{"url":"amqp://h:5672/"}`, stored, `{"url":"amqp://h:5672/"}`, ""},
		{"other host", `{"url":"amqp://u:****@evil:5672/"}`, stored, "", "url holds a credential shown as"},
		{"other port", `{"url":"amqp://u:****@h:5673/"}`, stored, "", "url holds a credential"},
		{"other user", `{"url":"amqp://admin:****@h:5672/"}`, stored, "", "url holds a credential"},
		{"other scheme", `{"url":"amqps://u:****@h:5672/"}`, stored, "", "url holds a credential"},
		{"none stored", `{"url":"amqp://u:****@h:5672/"}`, `{"url":"amqp://h:5672/"}`, "", "url holds a credential"},
		{"token", `{"url":"nats://****@h:4222"}`, `{"url":"nats://tok@h:4222"}`, `{"url":"nats://tok@h:4222"}`, ""},
		{"token for a password", `{"url":"nats://****@h:4222"}`, `{"url":"nats://u:p@h:4222"}`, "", "url holds a credential"},
		{"list", `{"url":"nats://a:****@h1:1, nats://h2:2"}`, `{"url":"nats://a:b@h1:1,nats://h2:2"}`, `{"url":"nats://a:b@h1:1, nats://h2:2"}`, ""},
		{"list grown", `{"url":"nats://h0:1,nats://a:****@h1:1"}`, `{"url":"nats://a:b@h1:1"}`, "", "url holds a credential"},
		{"secret not stored", `{"secret":"****"}`, `{"bucket":"b"}`, "", "secret is \"****\""},
		{"new trigger", `{"url":"amqp://u:****@h/"}`, ``, "", "url holds a credential"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var st json.RawMessage
			if tt.stored != "" {
				st = json.RawMessage(tt.stored)
			}
			got, err := urlSecrets.Restore(json.RawMessage(tt.update), st)
			switch {
			case tt.err != "":
				if !errors.Is(err, nimbus.ErrInvalid) || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("Restore = %s, %v; want an ErrInvalid with %q", got, err, tt.err)
				}
				if strings.Contains(err.Error(), "pw") {
					t.Errorf("error %q shows the stored password", err)
				}
			case err != nil:
				t.Fatalf("Restore: %v", err)
			case string(got) != tt.want:
				t.Errorf("Restore = %s, want %s", got, tt.want)
			}
		})
	}
}

// secretSource is a Source whose Config holds a secret.
type secretSource struct{}

func (secretSource) Run(context.Context, Sink, Options) error { return nil }
func (secretSource) Secrets() Secrets                         { return Secrets{Values: []string{"key"}} }

func TestSecretsOf(t *testing.T) {
	cfg := json.RawMessage(`{"key":"k1","url":"mqtt://u:p@h","password":"x"}`)
	guessed := `{"key":"k1","password":"****","url":"mqtt://u:****@h"}`
	for name, tt := range map[string]struct {
		f    Factory
		want string
	}{
		"redactor":   {func(json.RawMessage) (Source, error) { return secretSource{}, nil }, `{"key":"****","password":"x","url":"mqtt://u:p@h"}`},
		"no secrets": {func(json.RawMessage) (Source, error) { return nil, nil }, string(cfg)},
		"refused":    {func(json.RawMessage) (Source, error) { return nil, errors.New("no") }, guessed},
		"panics":     {func(json.RawMessage) (Source, error) { panic("bug") }, guessed},
		"unknown":    {nil, guessed},
	} {
		if got := string(RedactConfig(tt.f, cfg)); got != tt.want {
			t.Errorf("%s: RedactConfig = %s, want %s", name, got, tt.want)
		}
	}
}

func TestStatusReasonRedacted(t *testing.T) {
	s := NewStatus()
	s.Error(errors.New(`dial "amqp://guest:hunter2@h:5672/": refused`))
	if r := s.View().Reason; strings.Contains(r, "hunter2") || !strings.Contains(r, "amqp://guest:****@h:5672/") {
		t.Errorf("reason %q, want the password redacted", r)
	}
}
