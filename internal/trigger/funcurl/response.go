package funcurl

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	nethttp "net/http"
)

// Response is the HTTP answer a Runtime-API function gave.
type Response struct {
	Status int
	Header nethttp.Header
	Body   []byte
}

// ErrBadResponse is wrapped by the errors of ParseResponse: the function's
// answer cannot be turned into an HTTP response (a function URL answers 502).
var ErrBadResponse = errors.New("invalid function URL response")

func badResponse(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrBadResponse, fmt.Sprintf(format, args...))
}

// rawResponse is the structured answer {statusCode, headers, body,
// isBase64Encoded, cookies}, decoded loosely so that every type error gets
// its own message.
type rawResponse struct {
	StatusCode      json.RawMessage            `json:"statusCode"`
	Headers         map[string]json.RawMessage `json:"headers"`
	Body            json.RawMessage            `json:"body"`
	IsBase64Encoded json.RawMessage            `json:"isBase64Encoded"`
	Cookies         json.RawMessage            `json:"cookies"`
}

// ParseResponse turns a function's answer (its JSON payload) into an HTTP
// response, as Lambda's function URLs do:
//
//   - a JSON object with a "statusCode" member is a structured answer:
//     statusCode (200-599), headers (string, number or boolean values),
//     body (a string, base64 when isBase64Encoded is true) and cookies (each
//     a Set-Cookie header);
//   - any other JSON value (an object without statusCode, an array, a
//     string, a number...) answers 200 with that JSON as the body and
//     Content-Type application/json.
//
// Errors wrap ErrBadResponse and say what is wrong.
func ParseResponse(payload []byte) (Response, error) {
	trimmed := bytes.TrimSpace(payload)
	if !json.Valid(trimmed) {
		return Response{}, badResponse("the function's answer is not valid JSON")
	}
	if len(trimmed) > 0 && trimmed[0] == '{' {
		var probe map[string]json.RawMessage
		if err := json.Unmarshal(trimmed, &probe); err == nil {
			if _, ok := probe["statusCode"]; ok {
				return parseStructured(trimmed)
			}
		}
	}
	h := nethttp.Header{}
	h.Set("Content-Type", "application/json")
	return Response{Status: nethttp.StatusOK, Header: h, Body: append([]byte(nil), trimmed...)}, nil
}

func parseStructured(payload []byte) (Response, error) {
	var raw rawResponse
	if err := json.Unmarshal(payload, &raw); err != nil {
		return Response{}, badResponse("headers must be a JSON object of header names to values")
	}
	status, err := parseStatus(raw.StatusCode)
	if err != nil {
		return Response{}, err
	}
	resp := Response{Status: status, Header: nethttp.Header{}}
	if err := parseHeaders(raw.Headers, resp.Header); err != nil {
		return Response{}, err
	}
	if err := parseCookies(raw.Cookies, resp.Header); err != nil {
		return Response{}, err
	}
	resp.Body, err = parseBody(raw.Body, raw.IsBase64Encoded)
	return resp, err
}

func parseStatus(raw json.RawMessage) (int, error) {
	n, err := strconv.Atoi(string(raw))
	if err != nil {
		return 0, badResponse("statusCode must be an integer, not %s", clip(raw))
	}
	if n < 200 || n > 599 {
		return 0, badResponse("statusCode %d is not a final HTTP status (200-599)", n)
	}
	return n, nil
}

func parseHeaders(raw map[string]json.RawMessage, out nethttp.Header) error {
	for name, v := range raw {
		if !validHeaderName(name) {
			return badResponse("%q is not a valid header name", clip([]byte(name)))
		}
		val, ok, err := headerValue(v)
		if err != nil {
			return badResponse("header %s: %v", name, err)
		}
		if !ok || skipResponseHeader(name) {
			continue
		}
		out.Add(name, val)
	}
	return nil
}

// headerValue accepts a string, number or boolean (as their JSON text);
// null is skipped (ok false).
func headerValue(v json.RawMessage) (string, bool, error) {
	switch {
	case string(v) == "null":
		return "", false, nil
	case len(v) > 0 && v[0] == '"':
		var s string
		if err := json.Unmarshal(v, &s); err != nil {
			return "", false, err
		}
		if !validHeaderValue(s) {
			return "", false, errors.New("the value holds a control character (such as a line break)")
		}
		return s, true, nil
	case string(v) == "true" || string(v) == "false" || (len(v) > 0 && (v[0] == '-' || ('0' <= v[0] && v[0] <= '9'))):
		return string(v), true, nil
	}
	return "", false, fmt.Errorf("the value must be a string, not %s", clip(v))
}

func parseCookies(raw json.RawMessage, out nethttp.Header) error {
	if len(raw) == 0 || string(raw) == "null" {
		return nil
	}
	var cs []string
	if err := json.Unmarshal(raw, &cs); err != nil {
		return badResponse("cookies must be an array of strings, not %s", clip(raw))
	}
	for _, c := range cs {
		if !validHeaderValue(c) {
			return badResponse("cookie %q holds a control character", clip([]byte(c)))
		}
		out.Add("Set-Cookie", c)
	}
	return nil
}

func parseBody(raw, isB64 json.RawMessage) ([]byte, error) {
	encoded := false
	if len(isB64) > 0 && string(isB64) != "null" {
		if err := json.Unmarshal(isB64, &encoded); err != nil {
			return nil, badResponse("isBase64Encoded must be true or false, not %s", clip(isB64))
		}
	}
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return nil, badResponse("body must be a string, not %s (use JSON.stringify or json.dumps)", clip(raw))
	}
	if !encoded {
		return []byte(s), nil
	}
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		b, err = base64.RawStdEncoding.DecodeString(s)
	}
	if err != nil {
		return nil, badResponse("body is not valid base64 although isBase64Encoded is true")
	}
	return b, nil
}

// skipResponseHeader reports headers the server sets itself.
func skipResponseHeader(name string) bool {
	switch strings.ToLower(name) {
	case "content-length", "transfer-encoding", "connection", "keep-alive", "upgrade", "trailer", "te", "proxy-connection":
		return true
	}
	return false
}

// clip shortens a value quoted in an error message.
func clip(b []byte) string {
	const n = 40
	if len(b) > n {
		return string(b[:n]) + "..."
	}
	return string(b)
}

// validHeaderName reports whether s is an HTTP token (RFC 9110).
func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !tokenChar(s[i]) {
			return false
		}
	}
	return true
}

func tokenChar(b byte) bool {
	switch {
	case 'a' <= b && b <= 'z', 'A' <= b && b <= 'Z', '0' <= b && b <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", b) >= 0
}

// validHeaderValue refuses control characters other than tab.
func validHeaderValue(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < ' ' && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}
