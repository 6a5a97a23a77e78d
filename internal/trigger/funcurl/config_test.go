package funcurl

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	nethttp "net/http"
	"net/http/httptest"

	"github.com/nimbus-serverless/nimbus"
)

func TestParseConfig(t *testing.T) {
	tests := []struct {
		name, raw, wantErr string
	}{
		{name: "none", raw: `{"authType":"NONE"}`},
		{name: "key generated later", raw: `{"authType":"KEY"}`},
		{name: "key given", raw: `{"authType":"KEY","key":"0123456789abcdef"}`},
		{name: "cors", raw: `{"authType":"NONE","cors":{"allowOrigins":["https://a.example","*"],"allowMethods":["GET","*"],"allowHeaders":["x-a","*"],"exposeHeaders":["x-b","*"],"maxAge":600,"allowCredentials":true}}`},
		{name: "stream", raw: `{"authType":"NONE","invokeMode":"RESPONSE_STREAM"}`},
		{name: "empty", raw: ``, wantErr: "config is required"},
		{name: "not an object", raw: `[1]`, wantErr: "must be a JSON object"},
		{name: "trailing data", raw: `{"authType":"NONE"} {}`, wantErr: "unexpected data"},
		{name: "unknown field", raw: `{"authType":"NONE","auth":"x"}`, wantErr: `unknown field "auth"`},
		{name: "wrong type", raw: `{"authType":"NONE","cors":{"maxAge":"1"}}`, wantErr: "cors.maxAge must be a JSON integer"},
		{name: "auth missing", raw: `{}`, wantErr: "authType is required"},
		{name: "auth unknown", raw: `{"authType":"AWS_SIGV4A"}`, wantErr: `authType "AWS_SIGV4A" is not valid`},
		{name: "key with none", raw: `{"authType":"NONE","key":"0123456789abcdef"}`, wantErr: "takes no key"},
		{name: "key short", raw: `{"authType":"KEY","key":"short"}`, wantErr: "16 to 128 characters"},
		{name: "key bad char", raw: `{"authType":"KEY","key":"0123456789abcdef\n"}`, wantErr: "may hold only"},
		{name: "mode", raw: `{"authType":"NONE","invokeMode":"FAST"}`, wantErr: `invokeMode "FAST"`},
		{name: "origin path", raw: `{"authType":"NONE","cors":{"allowOrigins":["https://a.example/x"]}}`, wantErr: "cors.allowOrigins[0]"},
		{name: "origin scheme", raw: `{"authType":"NONE","cors":{"allowOrigins":["ftp://a.example"]}}`, wantErr: "is not an origin"},
		{name: "origin long", raw: `{"authType":"NONE","cors":{"allowOrigins":["https://` + strings.Repeat("a", 250) + `"]}}`, wantErr: "1 to 253 characters"},
		{name: "url methods", raw: `{"authType":"NONE","methods":["GET","POST"]}`},
		{name: "url method lower", raw: `{"authType":"NONE","methods":["get"]}`, wantErr: `methods: "get" is not an HTTP method`},
		{name: "url method unknown", raw: `{"authType":"NONE","methods":["TRACE"]}`, wantErr: `methods: "TRACE"`},
		{name: "method", raw: `{"authType":"NONE","cors":{"allowMethods":["OPTIONS"]}}`, wantErr: "is not a method CORS can allow"},
		{name: "method lower", raw: `{"authType":"NONE","cors":{"allowMethods":["get"]}}`, wantErr: "in capitals"},
		{name: "methods many", raw: `{"authType":"NONE","cors":{"allowMethods":["GET","PUT","HEAD","POST","PATCH","DELETE","*"]}}`, wantErr: "at most 6"},
		{name: "header", raw: `{"authType":"NONE","cors":{"allowHeaders":["bad header"]}}`, wantErr: "not a valid HTTP header name"},
		{name: "expose", raw: `{"authType":"NONE","cors":{"exposeHeaders":["x-a","a:b"]}}`, wantErr: "cors.exposeHeaders[1]"},
		{name: "empty header", raw: `{"authType":"NONE","cors":{"allowHeaders":[""]}}`, wantErr: "1 to 1024"},
		{name: "max age", raw: `{"authType":"NONE","cors":{"maxAge":86401}}`, wantErr: "cors.maxAge must be 0 to 86400"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := ParseConfig(json.RawMessage(tt.raw))
			// Served gives the same answer, the first time (parsed) and the
			// second (cached when valid).
			for range 2 {
				sc, serr := Served(json.RawMessage(tt.raw))
				if !reflect.DeepEqual(sc, c) || fmt.Sprint(serr) != fmt.Sprint(err) {
					t.Fatalf("Served(%s) = %+v, %v; ParseConfig gave %+v, %v", tt.raw, sc, serr, c, err)
				}
			}
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("ParseConfig(%s) = %v, want no error", tt.raw, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("ParseConfig(%s) = %v, want an error containing %q", tt.raw, err, tt.wantErr)
			}
			if !errors.Is(err, nimbus.ErrInvalid) {
				t.Errorf("error %v does not wrap ErrInvalid", err)
			}
		})
	}
}

// TestServedBounded: Served's cache keeps at most maxParsed configs, and a
// changed config (other bytes) is parsed anew.
func TestServedBounded(t *testing.T) {
	for i := range maxParsed + 10 {
		raw := fmt.Sprintf(`{"authType":"NONE","cors":{"maxAge":%d}}`, i%86400)
		c, err := Served(json.RawMessage(raw))
		if err != nil || c.Cors == nil || c.Cors.MaxAge != i%86400 {
			t.Fatalf("Served(%s) = %+v, %v", raw, c, err)
		}
	}
	parsed.Lock()
	n := len(parsed.m)
	parsed.Unlock()
	if n > maxParsed {
		t.Fatalf("%d configs cached, want at most %d", n, maxParsed)
	}
}

func TestWithKeyAndAuthorized(t *testing.T) {
	c := Config{AuthType: AuthKey}.WithKey()
	if len(c.Key) != 43 {
		t.Fatalf("generated key %q, want 43 characters", c.Key)
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("generated key does not validate: %v", err)
	}
	if again := c.WithKey(); again.Key != c.Key {
		t.Error("WithKey replaced an existing key")
	}
	if other := (Config{AuthType: AuthKey}).WithKey(); other.Key == c.Key {
		t.Error("two generated keys are equal")
	}
	round, err := ParseConfig(c.Encode())
	if err != nil || round.Key != c.Key {
		t.Fatalf("round trip = %+v, %v", round, err)
	}
	for _, tt := range []struct {
		header string
		want   bool
	}{{c.Key, true}, {"", false}, {c.Key + "x", false}, {c.Key[:42], false}} {
		r := httptest.NewRequest(nethttp.MethodGet, "/", nil)
		if tt.header != "" {
			r.Header.Set(KeyHeader, tt.header)
		}
		if got := c.Authorized(r); got != tt.want {
			t.Errorf("Authorized with key %q = %v, want %v", tt.header, got, tt.want)
		}
	}
	if !(Config{AuthType: AuthNone}).Authorized(httptest.NewRequest(nethttp.MethodGet, "/", nil)) {
		t.Error("a NONE URL refused a request")
	}
	if (Config{AuthType: AuthKey}).Authorized(httptest.NewRequest(nethttp.MethodGet, "/", nil)) {
		t.Error("a KEY URL without a key accepted a request without one")
	}
	if k := (Config{AuthType: AuthNone, Key: "x"}).WithKey().Key; k != "" {
		t.Errorf("WithKey kept key %q on a NONE URL", k)
	}
}

func TestFindAndValidateFor(t *testing.T) {
	fn := &nimbus.Function{Name: "f", Runtime: "python3.11", Triggers: []nimbus.Trigger{
		{Name: "tick", Type: nimbus.TriggerTimer},
		{Name: "live-url", Type: nimbus.TriggerHTTP, Qualifier: "live"},
		{Name: "web", Type: nimbus.TriggerHTTP},
	}}
	if got := Find(fn, ""); got == nil || got.Name != "web" {
		t.Errorf("Find = %+v, want web", got)
	}
	if got := Find(fn, "live"); got == nil || got.Name != "live-url" || Path("f", got) != "f:live/" {
		t.Errorf("Find(live) = %+v, want live-url at f:live/", got)
	}
	fn.Triggers = fn.Triggers[:1]
	if got := Find(fn, ""); got != nil {
		t.Errorf("Find = %+v, want nil", got)
	}
	long := strings.Repeat("a", 61)
	for q, want := range map[string]string{"": "url", "live": "url-live", long: "url-0123abcd"} {
		if got := TriggerName(q, "0123abcd-ffff"); got != want {
			t.Errorf("TriggerName(%q) = %q, want %q", q, got, want)
		}
	}
	stream := Config{AuthType: AuthNone, InvokeMode: InvokeStream}
	if err := stream.ValidateFor(fn); !errors.Is(err, nimbus.ErrInvalid) {
		t.Errorf("RESPONSE_STREAM for a Python function: %v, want ErrInvalid", err)
	}
	if err := stream.ValidateFor(&nimbus.Function{Name: "h", Runtime: "http"}); err != nil {
		t.Errorf("RESPONSE_STREAM for an HTTP function: %v", err)
	}
	if m := (Config{}).Mode(); m != InvokeBuffered {
		t.Errorf("default mode %q", m)
	}
}

func TestNormalize(t *testing.T) {
	created, err := Normalize(nil, json.RawMessage(`{"authType":"KEY"}`))
	if err != nil {
		t.Fatal(err)
	}
	c, err := ParseConfig(created)
	if err != nil || len(c.Key) != 43 {
		t.Fatalf("created %s (%v), want a generated key", created, err)
	}
	kept, err := Normalize(created, json.RawMessage(`{"authType":"KEY","cors":{"maxAge":5}}`))
	if k, _ := ParseConfig(kept); err != nil || k.Key != c.Key || k.Cors == nil {
		t.Errorf("update without a key = %s (%v), want the old key kept", kept, err)
	}
	set, _ := Normalize(created, json.RawMessage(`{"authType":"KEY","key":"0123456789abcdefXYZ"}`))
	if k, _ := ParseConfig(set); k.Key != "0123456789abcdefXYZ" {
		t.Errorf("a given key was not used: %s", set)
	}
	public, _ := Normalize(created, json.RawMessage(`{"authType":"NONE"}`))
	if string(public) != `{"authType":"NONE"}` {
		t.Errorf("NONE = %s", public)
	}
	if fresh, _ := Normalize(public, json.RawMessage(`{"authType":"KEY"}`)); bytes.Contains(fresh, []byte(c.Key)) {
		t.Error("a key came back from an older config")
	}
	if _, err := Normalize(nil, json.RawMessage(`{"authType":"x"}`)); !errors.Is(err, nimbus.ErrInvalid) {
		t.Errorf("bad config: %v", err)
	}
	if src, err := Factory(json.RawMessage(`{"authType":"NONE"}`)); src != nil || err != nil {
		t.Errorf("Factory = %v, %v", src, err)
	}
}
