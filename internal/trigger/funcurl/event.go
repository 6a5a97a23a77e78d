package funcurl

import (
	"encoding/base64"
	"encoding/json"
	"mime"
	"net"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"

	nethttp "net/http"
)

// Event is Lambda's function URL request, payload format 2.0: what a
// Runtime-API function receives for each request to its URL.
type Event struct {
	Version               string            `json:"version"`
	RouteKey              string            `json:"routeKey"`
	RawPath               string            `json:"rawPath"`
	RawQueryString        string            `json:"rawQueryString"`
	Cookies               []string          `json:"cookies,omitempty"`
	Headers               map[string]string `json:"headers"`
	QueryStringParameters map[string]string `json:"queryStringParameters,omitempty"`
	RequestContext        RequestContext    `json:"requestContext"`
	Body                  string            `json:"body,omitempty"`
	IsBase64Encoded       bool              `json:"isBase64Encoded"`
}

// RequestContext is the event's requestContext.
type RequestContext struct {
	AccountID    string      `json:"accountId"`
	APIID        string      `json:"apiId"`
	DomainName   string      `json:"domainName"`
	DomainPrefix string      `json:"domainPrefix"`
	HTTP         HTTPContext `json:"http"`
	RequestID    string      `json:"requestId"`
	RouteKey     string      `json:"routeKey"`
	Stage        string      `json:"stage"`
	Time         string      `json:"time"`
	TimeEpoch    int64       `json:"timeEpoch"`
}

// HTTPContext is the event's requestContext.http.
type HTTPContext struct {
	Method    string `json:"method"`
	Path      string `json:"path"`
	Protocol  string `json:"protocol"`
	SourceIP  string `json:"sourceIp"`
	UserAgent string `json:"userAgent"`
}

// EventInput is what BuildEvent needs beside the request.
type EventInput struct {
	// Function is the function's name: the event's apiId and domainPrefix
	// (Lambda's URL id).
	Function string
	// Path is the request's path after /fn/{name}, escaped as sent ("/"
	// at least).
	Path      string
	Body      []byte
	RequestID string
	TraceID   string
	Time      time.Time
}

// eventTime is the format of requestContext.time.
const eventTime = "02/Jan/2006:15:04:05 -0700"

// BuildEvent returns the format 2.0 event of r: headers lowercased with
// repeated ones comma-joined, cookies taken out of the Cookie header, the
// query decoded into queryStringParameters (repeated keys comma-joined), and
// a body that is not text (see IsText) base64-encoded. The X-Nimbus-Key
// header is left out.
func BuildEvent(r *nethttp.Request, in EventInput) Event {
	ev := Event{
		Version: "2.0", RouteKey: "$default",
		RawPath: in.Path, RawQueryString: r.URL.RawQuery,
		Headers:               eventHeaders(r, in.TraceID),
		Cookies:               cookies(r.Header),
		QueryStringParameters: queryParams(r.URL.RawQuery),
	}
	ev.RequestContext = RequestContext{
		AccountID: "anonymous", APIID: in.Function, DomainName: r.Host, DomainPrefix: in.Function,
		RequestID: in.RequestID, RouteKey: "$default", Stage: "$default",
		Time: in.Time.UTC().Format(eventTime), TimeEpoch: in.Time.UnixMilli(),
		HTTP: HTTPContext{Method: r.Method, Path: in.Path, Protocol: r.Proto,
			SourceIP: SourceIP(r), UserAgent: r.UserAgent()},
	}
	ev.Body, ev.IsBase64Encoded = eventBody(r, in.Body)
	return ev
}

// eventBody is an event's body: as it is when it is text (IsText), else
// base64-encoded (b64 true).
func eventBody(r *nethttp.Request, body []byte) (s string, b64 bool) {
	switch {
	case len(body) == 0:
		return "", false
	case IsText(r.Header.Get("Content-Type"), body):
		return string(body), false
	}
	return base64.StdEncoding.EncodeToString(body), true
}

// Marshal encodes the event.
func (ev Event) Marshal() []byte {
	b, _ := json.Marshal(ev) // strings, maps and numbers: cannot fail
	return b
}

func eventHeaders(r *nethttp.Request, traceID string) map[string]string {
	h := make(map[string]string, len(r.Header)+4)
	for k, vs := range r.Header {
		lk := strings.ToLower(k)
		if lk == "cookie" || lk == strings.ToLower(KeyHeader) {
			continue
		}
		h[lk] = strings.Join(vs, ",")
	}
	h["host"] = r.Host
	ip := SourceIP(r)
	if xff := h["x-forwarded-for"]; xff != "" {
		h["x-forwarded-for"] = xff + ", " + ip
	} else {
		h["x-forwarded-for"] = ip
	}
	h["x-forwarded-proto"] = scheme(r)
	if traceID != "" {
		h["x-amzn-trace-id"] = traceID
	}
	return h
}

func scheme(r *nethttp.Request) string {
	if r.TLS != nil {
		return "https"
	}
	return "http"
}

// SourceIP is the address the request came from (the TCP peer).
func SourceIP(r *nethttp.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// cookies splits the Cookie headers into "name=value" items.
func cookies(h nethttp.Header) []string {
	var out []string
	for _, line := range h.Values("Cookie") {
		for c := range strings.SplitSeq(line, ";") {
			if c = strings.TrimSpace(c); c != "" {
				out = append(out, c)
			}
		}
	}
	return out
}

// queryParams decodes the query; keys that repeat have their values
// comma-joined. Parts that do not decode are passed on as sent.
func queryParams(raw string) map[string]string {
	if raw == "" {
		return nil
	}
	out := make(map[string]string)
	for part := range strings.SplitSeq(raw, "&") {
		if part == "" {
			continue
		}
		k, v, _ := strings.Cut(part, "=")
		k, v = unescape(k), unescape(v)
		if old, ok := out[k]; ok {
			v = old + "," + v
		}
		out[k] = v
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

func unescape(s string) string {
	if u, err := url.QueryUnescape(s); err == nil {
		return u
	}
	return s
}

// IsText reports whether a body of this content type is passed as text
// (else it is base64-encoded): text/*, JSON, XML, JavaScript, YAML, and
// GraphQL types, when the body is valid UTF-8. Form posts
// (application/x-www-form-urlencoded), multipart bodies and bodies without a
// content type are base64-encoded, as Lambda does.
func IsText(contentType string, body []byte) bool {
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil || !utf8.Valid(body) {
		return false
	}
	if strings.HasPrefix(mt, "text/") || strings.HasSuffix(mt, "+json") || strings.HasSuffix(mt, "+xml") {
		return true
	}
	switch mt {
	case "application/json", "application/xml", "application/javascript", "application/ecmascript",
		"application/x-yaml", "application/yaml", "application/graphql", "application/x-ndjson":
		return true
	}
	return false
}
