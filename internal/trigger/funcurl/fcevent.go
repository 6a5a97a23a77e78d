package funcurl

import (
	"bytes"
	"encoding/json"
	nethttp "net/http"
	"strconv"
	"unicode/utf8"
)

// FCEvent is the event Function Compute 3.0 gives a function of its
// built-in runtimes for a request to its http trigger (payload version
// "v1"): https://www.alibabacloud.com/help/en/functioncompute/fc/http-trigger-invoking-function.
// Headers have canonical keys (Content-Type), repeated ones comma-joined;
// queryParameters are decoded, repeated keys comma-joined; timeEpoch is a
// string of milliseconds.
type FCEvent struct {
	Version         string            `json:"version"`
	RawPath         string            `json:"rawPath"`
	Body            string            `json:"body"`
	IsBase64Encoded bool              `json:"isBase64Encoded"`
	Headers         map[string]string `json:"headers"`
	QueryParameters map[string]string `json:"queryParameters"`
	RequestContext  FCRequestContext  `json:"requestContext"`
}

// FCRequestContext is FCEvent's requestContext.
type FCRequestContext struct {
	AccountID    string      `json:"accountId"`
	DomainName   string      `json:"domainName"`
	DomainPrefix string      `json:"domainPrefix"`
	HTTP         HTTPContext `json:"http"`
	RequestID    string      `json:"requestId"`
	Time         string      `json:"time"`
	TimeEpoch    string      `json:"timeEpoch"`
}

// BuildFCEvent returns Function Compute's event of r (see FCEvent); the
// body is base64-encoded when it is not text (IsText), as in BuildEvent.
// The X-Nimbus-Key header is left out.
func BuildFCEvent(r *nethttp.Request, account string, in EventInput) FCEvent {
	h := make(map[string]string, len(r.Header)+1)
	for k, vs := range r.Header {
		if nethttp.CanonicalHeaderKey(k) == nethttp.CanonicalHeaderKey(KeyHeader) {
			continue
		}
		h[nethttp.CanonicalHeaderKey(k)] = joinComma(vs)
	}
	h["Host"] = r.Host
	q := queryParams(r.URL.RawQuery)
	if q == nil {
		q = map[string]string{}
	}
	ev := FCEvent{Version: "v1", RawPath: in.Path, Headers: h, QueryParameters: q,
		RequestContext: FCRequestContext{
			AccountID: account, DomainName: r.Host, DomainPrefix: in.Function, RequestID: in.RequestID,
			Time: in.Time.UTC().Format("2006-01-02T15:04:05Z"), TimeEpoch: strconv.FormatInt(in.Time.UnixMilli(), 10),
			HTTP: HTTPContext{Method: r.Method, Path: unescape(in.Path), Protocol: r.Proto, SourceIP: SourceIP(r), UserAgent: r.UserAgent()},
		}}
	ev.Body, ev.IsBase64Encoded = eventBody(r, in.Body)
	return ev
}

// Marshal encodes the event.
func (ev FCEvent) Marshal() []byte {
	b, _ := json.Marshal(ev) // strings and maps: cannot fail
	return b
}

func joinComma(vs []string) string {
	var b bytes.Buffer
	for i, v := range vs {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(v)
	}
	return b.String()
}

// ParseFCResponse turns the answer of a function with Function Compute's
// conventions into an HTTP response, as Function Compute's http triggers
// do for built-in runtimes: a JSON object with a "statusCode" member is a
// structured answer (statusCode, headers, body, isBase64Encoded: the same
// members and rules as ParseResponse's); anything else (the bytes a
// handler returned as they are) is the body of a 200, as application/json
// when it is JSON, text/plain when it is other UTF-8 text, else
// application/octet-stream.
func ParseFCResponse(payload []byte) (Response, error) {
	trimmed := bytes.TrimSpace(payload)
	if len(trimmed) > 0 && trimmed[0] == '{' && json.Valid(trimmed) {
		var probe map[string]json.RawMessage
		if err := json.Unmarshal(trimmed, &probe); err == nil {
			if _, ok := probe["statusCode"]; ok {
				return parseStructured(trimmed)
			}
		}
	}
	h := nethttp.Header{}
	switch {
	case len(trimmed) > 0 && json.Valid(trimmed):
		h.Set("Content-Type", "application/json")
	case utf8.Valid(payload):
		h.Set("Content-Type", "text/plain; charset=utf-8")
	default:
		h.Set("Content-Type", "application/octet-stream")
	}
	return Response{Status: nethttp.StatusOK, Header: h, Body: append([]byte(nil), payload...)}, nil
}
