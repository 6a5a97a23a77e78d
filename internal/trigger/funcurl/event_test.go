package funcurl

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	nethttp "net/http"
	"net/http/httptest"
)

func TestBuildEvent(t *testing.T) {
	r := httptest.NewRequest(nethttp.MethodPost, "http://node.example:8080/fn/shop/cart/a%20b?x=1&y=a%20b&x=2&flag", strings.NewReader(`{"n":1}`))
	r.RemoteAddr = "192.0.2.7:5555"
	r.Header.Set("Content-Type", "application/json")
	r.Header.Set("User-Agent", "test/1")
	r.Header.Add("X-Multi", "a")
	r.Header.Add("X-Multi", "b")
	r.Header.Add("Cookie", "a=1; b=2")
	r.Header.Add("Cookie", "c=3")
	r.Header.Set(KeyHeader, "secret-secret-secret")
	now := time.Date(2024, 3, 9, 19, 3, 58, 123e6, time.UTC)
	ev := BuildEvent(r, EventInput{Function: "shop", Path: "/cart/a%20b", Body: []byte(`{"n":1}`),
		RequestID: "req-1", TraceID: "Root=1-x", Time: now})

	want := Event{
		Version: "2.0", RouteKey: "$default", RawPath: "/cart/a%20b", RawQueryString: "x=1&y=a%20b&x=2&flag",
		Cookies: []string{"a=1", "b=2", "c=3"},
		Headers: map[string]string{"content-type": "application/json", "user-agent": "test/1", "x-multi": "a,b",
			"host": "node.example:8080", "x-forwarded-for": "192.0.2.7", "x-forwarded-proto": "http", "x-amzn-trace-id": "Root=1-x"},
		QueryStringParameters: map[string]string{"x": "1,2", "y": "a b", "flag": ""},
		RequestContext: RequestContext{AccountID: "anonymous", APIID: "shop", DomainName: "node.example:8080", DomainPrefix: "shop",
			HTTP:      HTTPContext{Method: "POST", Path: "/cart/a%20b", Protocol: "HTTP/1.1", SourceIP: "192.0.2.7", UserAgent: "test/1"},
			RequestID: "req-1", RouteKey: "$default", Stage: "$default", Time: "09/Mar/2024:19:03:58 +0000", TimeEpoch: now.UnixMilli()},
		Body: `{"n":1}`,
	}
	if !reflect.DeepEqual(ev, want) {
		t.Errorf("event =\n%+v\nwant\n%+v", ev, want)
	}
	var m map[string]any
	if err := json.Unmarshal(ev.Marshal(), &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"version", "routeKey", "rawPath", "rawQueryString", "cookies", "headers", "queryStringParameters", "requestContext", "body", "isBase64Encoded"} {
		if _, ok := m[k]; !ok {
			t.Errorf("JSON event lacks %q", k)
		}
	}
}

func TestBuildEventBodies(t *testing.T) {
	binary := []byte{0, 1, 2, 0xff, 0xfe}
	tests := []struct {
		name, contentType string
		body              []byte
		wantB64           bool
	}{
		{"json", "application/json; charset=utf-8", []byte(`{"a":1}`), false},
		{"text", "text/plain", []byte("héllo"), false},
		{"vendor json", "application/vnd.api+json", []byte(`{}`), false},
		{"xml", "application/xml", []byte(`<a/>`), false},
		{"binary", "application/octet-stream", binary, true},
		{"image", "image/png", binary, true},
		{"form", "application/x-www-form-urlencoded", []byte("a=1&b=2"), true},
		{"no type", "", []byte("plain"), true},
		{"text but invalid utf-8", "text/plain", binary, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(nethttp.MethodPost, "/fn/f/", bytes.NewReader(tt.body))
			if tt.contentType != "" {
				r.Header.Set("Content-Type", tt.contentType)
			}
			ev := BuildEvent(r, EventInput{Function: "f", Path: "/", Body: tt.body})
			if ev.IsBase64Encoded != tt.wantB64 {
				t.Fatalf("isBase64Encoded = %v, want %v", ev.IsBase64Encoded, tt.wantB64)
			}
			got := []byte(ev.Body)
			if tt.wantB64 {
				var err error
				if got, err = base64.StdEncoding.DecodeString(ev.Body); err != nil {
					t.Fatal(err)
				}
			}
			if !bytes.Equal(got, tt.body) {
				t.Errorf("body = %q, want %q", got, tt.body)
			}
		})
	}
	r := httptest.NewRequest(nethttp.MethodGet, "/fn/f", nil)
	ev := BuildEvent(r, EventInput{Function: "f", Path: "/"})
	if ev.Body != "" || ev.IsBase64Encoded || ev.QueryStringParameters != nil || ev.Cookies != nil {
		t.Errorf("GET without body or query: %+v", ev)
	}
	if b := string(ev.Marshal()); strings.Contains(b, `"body"`) || strings.Contains(b, `"queryStringParameters"`) || strings.Contains(b, `"cookies"`) {
		t.Errorf("empty fields are in the JSON: %s", b)
	}
}

func TestForwardHeader(t *testing.T) {
	r := httptest.NewRequest(nethttp.MethodGet, "http://h.example/fn/f/x", nil)
	r.RemoteAddr = "192.0.2.9:1"
	r.Header.Set("Connection", "keep-alive, X-Hop")
	r.Header.Set("X-Hop", "1")
	r.Header.Set("Keep-Alive", "timeout=5")
	r.Header.Set("X-Forwarded-For", "198.51.100.1")
	r.Header.Set(KeyHeader, "secret-secret-secret")
	r.Header.Set("X-Keep", "yes")
	h := ForwardHeader(r)
	for _, gone := range []string{"Connection", "X-Hop", "Keep-Alive", KeyHeader} {
		if h.Get(gone) != "" {
			t.Errorf("%s was forwarded", gone)
		}
	}
	want := map[string]string{"X-Keep": "yes", "X-Forwarded-For": "198.51.100.1, 192.0.2.9",
		"X-Forwarded-Host": "h.example", "X-Forwarded-Proto": "http"}
	for k, v := range want {
		if got := h.Get(k); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	if r.Header.Get(KeyHeader) == "" {
		t.Error("ForwardHeader changed the request's own headers")
	}
	dst := nethttp.Header{"X-Already": {"1"}}
	CopyResponseHeader(dst, nethttp.Header{"Transfer-Encoding": {"chunked"}, "Content-Type": {"text/plain"}, "Set-Cookie": {"a=1", "b=2"},
		"Connection": {"close", " x-drop ,"}, "X-Drop": {"1"}})
	if dst.Get("Transfer-Encoding") != "" || dst.Get("Content-Type") != "text/plain" || len(dst.Values("Set-Cookie")) != 2 || dst.Get("X-Already") != "1" ||
		dst.Get("Connection") != "" || dst.Get("X-Drop") != "" {
		t.Errorf("CopyResponseHeader = %v", dst)
	}
}
