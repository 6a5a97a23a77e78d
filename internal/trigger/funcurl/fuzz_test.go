package funcurl

import (
	"strings"
	"testing"
)

// FuzzParseResponse checks that no answer of a function makes the parser
// panic or let through a header that would break the HTTP response.
func FuzzParseResponse(f *testing.F) {
	for _, seed := range []string{
		`{"statusCode":200,"headers":{"a":"b"},"body":"x","cookies":["c=1"]}`,
		`{"statusCode":200,"body":"AAE=","isBase64Encoded":true}`,
		`{"statusCode":"x"}`, `{"statusCode":200,"headers":{"a\n":"b"}}`,
		`"text"`, `[1,2]`, `{"x":1}`, `null`, ``, `{`, `{"statusCode":1e3}`,
		`{"statusCode":200,"headers":{"a":-1.5e3,"b":false}}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, payload []byte) {
		resp, err := ParseResponse(payload)
		if err != nil {
			return
		}
		if resp.Status < 200 || resp.Status > 599 {
			t.Fatalf("status %d", resp.Status)
		}
		for k, vs := range resp.Header {
			if !validHeaderName(k) {
				t.Fatalf("header name %q", k)
			}
			for _, v := range vs {
				if strings.ContainsAny(v, "\r\n\x00") {
					t.Fatalf("header %s value %q", k, v)
				}
			}
		}
	})
}

// FuzzParseConfig checks that a config either is refused or survives a
// round trip through Encode unchanged.
func FuzzParseConfig(f *testing.F) {
	for _, seed := range []string{
		`{"authType":"NONE"}`, `{"authType":"KEY","key":"0123456789abcdef"}`,
		`{"authType":"NONE","cors":{"allowOrigins":["*"],"allowMethods":["GET"],"maxAge":5}}`,
		`{"authType":"KEY","cors":{"allowOrigins":["https://a.example:8443"]},"invokeMode":"RESPONSE_STREAM"}`,
		`{}`, `[]`, `{"authType":1}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		c, err := ParseConfig(raw)
		if err != nil {
			return
		}
		again, err := ParseConfig(c.Encode())
		if err != nil {
			t.Fatalf("a valid config %s does not parse after Encode: %v", raw, err)
		}
		if string(again.Encode()) != string(c.Encode()) {
			t.Fatalf("round trip changed %s into %s", c.Encode(), again.Encode())
		}
	})
}
