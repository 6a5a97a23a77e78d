package funcurl

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	nethttp "net/http"
)

func TestParseResponse(t *testing.T) {
	tests := []struct {
		name, payload string
		status        int
		header        nethttp.Header
		body          string
	}{
		{"object without statusCode", `{"message":"hi"}`, 200, nethttp.Header{"Content-Type": {"application/json"}}, `{"message":"hi"}`},
		{"string", `"Hello, world!"`, 200, nethttp.Header{"Content-Type": {"application/json"}}, `"Hello, world!"`},
		{"number", ` 42 `, 200, nethttp.Header{"Content-Type": {"application/json"}}, `42`},
		{"null", `null`, 200, nethttp.Header{"Content-Type": {"application/json"}}, `null`},
		{"array", `[{"statusCode":500}]`, 200, nethttp.Header{"Content-Type": {"application/json"}}, `[{"statusCode":500}]`},
		{"structured", `{"statusCode":201,"headers":{"content-type":"text/plain","x-n":7,"x-b":true,"x-null":null},"body":"Created","cookies":["a=1; Path=/","b=2"]}`,
			201, nethttp.Header{"Content-Type": {"text/plain"}, "X-N": {"7"}, "X-B": {"true"}, "Set-Cookie": {"a=1; Path=/", "b=2"}}, "Created"},
		{"base64", `{"statusCode":200,"body":"AAH/","isBase64Encoded":true}`, 200, nethttp.Header{}, "\x00\x01\xff"},
		{"base64 unpadded", `{"statusCode":200,"body":"AAE","isBase64Encoded":true}`, 200, nethttp.Header{}, "\x00\x01"},
		{"no body", `{"statusCode":204}`, 204, nethttp.Header{}, ""},
		{"null fields", `{"statusCode":404,"headers":null,"body":null,"cookies":null,"isBase64Encoded":null}`, 404, nethttp.Header{}, ""},
		{"server headers dropped", `{"statusCode":200,"headers":{"Content-Length":"99","Transfer-Encoding":"chunked"},"body":"x"}`, 200, nethttp.Header{}, "x"},
		{"unknown fields ignored", `{"statusCode":200,"multiValueHeaders":{"a":["b"]},"body":"x"}`, 200, nethttp.Header{}, "x"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseResponse([]byte(tt.payload))
			if err != nil {
				t.Fatalf("ParseResponse(%s): %v", tt.payload, err)
			}
			if got.Status != tt.status || string(got.Body) != tt.body || !reflect.DeepEqual(got.Header, tt.header) {
				t.Errorf("ParseResponse(%s) = %d %v %q, want %d %v %q", tt.payload, got.Status, got.Header, got.Body, tt.status, tt.header, tt.body)
			}
		})
	}
}

func TestParseResponseErrors(t *testing.T) {
	tests := []struct{ name, payload, want string }{
		{"not json", `hello`, "not valid JSON"},
		{"empty", ``, "not valid JSON"},
		{"status string", `{"statusCode":"200"}`, "statusCode must be an integer"},
		{"status float", `{"statusCode":200.5}`, "statusCode must be an integer"},
		{"status range", `{"statusCode":99}`, "not a final HTTP status"},
		{"status informational", `{"statusCode":101}`, "not a final HTTP status"},
		{"status big", `{"statusCode":600}`, "not a final HTTP status"},
		{"headers array", `{"statusCode":200,"headers":["a"]}`, "headers must be a JSON object"},
		{"header object value", `{"statusCode":200,"headers":{"a":{"b":1}}}`, "header a: the value must be a string"},
		{"header name", `{"statusCode":200,"headers":{"bad name":"x"}}`, "is not a valid header name"},
		{"header injection", `{"statusCode":200,"headers":{"x":"a\r\nSet-Cookie: evil=1"}}`, "control character"},
		{"cookies type", `{"statusCode":200,"cookies":"a=1"}`, "cookies must be an array of strings"},
		{"cookie injection", `{"statusCode":200,"cookies":["a=1\nx"]}`, "control character"},
		{"body object", `{"statusCode":200,"body":{"a":1}}`, "body must be a string"},
		{"base64 flag type", `{"statusCode":200,"body":"x","isBase64Encoded":"yes"}`, "isBase64Encoded must be true or false"},
		{"bad base64", `{"statusCode":200,"body":"!!!","isBase64Encoded":true}`, "not valid base64"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseResponse([]byte(tt.payload))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("ParseResponse(%s) = %v, want an error containing %q", tt.payload, err, tt.want)
			}
			if !errors.Is(err, ErrBadResponse) {
				t.Errorf("error %v does not wrap ErrBadResponse", err)
			}
		})
	}
}
