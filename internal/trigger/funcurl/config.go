// Package funcurl is the "http" trigger type: a function URL. A function with
// an enabled trigger of this type answers HTTP requests at
// /fn/{name}/... on the Nimbus API address (internal/api serves it).
//
// This package holds what needs no server: the trigger's Config and its
// validation, the key check, CORS, the event that Runtime-API functions
// receive (Lambda's function URL payload format 2.0, event.go) and the parser
// of their answers (response.go). Its name follows the trigger type; import
// it under another name (e.g. urltrigger) beside net/http.
package funcurl

import (
	"bytes"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	nethttp "net/http"
	"slices"
	"strings"
	"sync"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/trigger"
)

// Auth types. NONE makes the URL public; KEY requires the trigger's key in
// the X-Nimbus-Key header; AWS_IAM requires a SigV4 signature by an access
// key allowed to invoke the function (the API checks it, as Lambda does).
const (
	AuthNone = "NONE"
	AuthKey  = "KEY"
	AuthIAM  = "AWS_IAM"
)

// Invoke modes, as Lambda names them. An HTTP function's answer is relayed
// as the engine hands it over in either mode; Runtime-API functions are
// BUFFERED only.
const (
	InvokeBuffered = "BUFFERED"
	InvokeStream   = "RESPONSE_STREAM"
)

// KeyHeader carries the key of a URL whose auth type is KEY. It is removed
// from the request before the function sees it.
const KeyHeader = "X-Nimbus-Key"

// Limits, as Lambda's function URLs have them.
const (
	// MaxRequestBody is the largest request body a URL accepts.
	MaxRequestBody = 6 << 20
	// MaxResponse is the largest answer a function may give.
	MaxResponse = 6 << 20
)

// Key lengths: a generated key is 32 random bytes in unpadded base64url (43
// characters); a key the user chooses must be 16 to 128 characters.
const (
	minKeyLen = 16
	maxKeyLen = 128
)

// Config is an http trigger's Config (nimbus.Trigger.Config).
type Config struct {
	// AuthType is AuthNone or AuthKey (required).
	AuthType string `json:"authType"`
	// Key is the secret callers send in X-Nimbus-Key when AuthType is
	// AuthKey; WithKey generates one when it is empty.
	Key string `json:"key,omitempty"`
	// Cors, when set, answers preflight requests and adds CORS headers to
	// every answer.
	Cors *CORS `json:"cors,omitempty"`
	// InvokeMode is InvokeBuffered (the default) or InvokeStream.
	InvokeMode string `json:"invokeMode,omitempty"`
	// Methods, when set, are the HTTP methods the URL answers; any other
	// is answered 405 (Function Compute's http trigger's methods). Empty:
	// every method.
	Methods []string `json:"methods,omitempty"`
}

// methods are the HTTP methods Config.Methods may name.
var methods = []string{"GET", "POST", "PUT", "DELETE", "HEAD", "PATCH", "OPTIONS"}

// Allows reports whether the URL answers method.
func (c Config) Allows(method string) bool {
	return len(c.Methods) == 0 || slices.Contains(c.Methods, method)
}

// ParseConfig decodes and validates a stored or submitted Config. Unknown
// fields are refused, so a misspelt setting does not pass silently. Errors
// wrap nimbus.ErrInvalid and name the bad field.
func ParseConfig(raw json.RawMessage) (Config, error) {
	var c Config
	if len(bytes.TrimSpace(raw)) == 0 {
		return c, nimbus.Invalidf("the http trigger's config is required: {\"authType\": \"NONE\"} for a public URL or {\"authType\": \"KEY\"} for one that needs a key")
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return c, nimbus.Invalidf("the http trigger's config is not valid: %s", describeJSONError(err))
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return c, nimbus.Invalidf("the http trigger's config is not valid: unexpected data after the JSON object")
	}
	return c, c.Validate()
}

// parsed caches ParseConfig's successful results by their stored bytes for
// Served: a URL's request would otherwise decode its trigger's JSON again,
// which took about 1 % of the node's CPU per request on the warm path.
var parsed struct {
	sync.Mutex
	m map[string]Config
}

// maxParsed bounds parsed; it is emptied when full (a cache of the URLs
// in use, which a node serving more than this many refills).
const maxParsed = 4096

// Served is ParseConfig for serving a request: the same result, cached
// for the same bytes. The Config it returns is shared: its Cors and
// Methods must not be changed.
func Served(raw json.RawMessage) (Config, error) {
	parsed.Lock()
	c, ok := parsed.m[string(raw)]
	parsed.Unlock()
	if ok {
		return c, nil
	}
	c, err := ParseConfig(raw)
	if err != nil {
		return c, err
	}
	parsed.Lock()
	if parsed.m == nil || len(parsed.m) >= maxParsed {
		parsed.m = make(map[string]Config)
	}
	parsed.m[string(raw)] = c
	parsed.Unlock()
	return c, nil
}

func describeJSONError(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) && te.Field != "" {
		return fmt.Sprintf("field %s must be a JSON %s, not %s", te.Field, jsonKind(te.Type.Kind().String()), te.Value)
	}
	if errors.As(err, &te) {
		return "it must be a JSON object, not " + te.Value
	}
	return err.Error()
}

func jsonKind(k string) string {
	switch k {
	case "int", "int64":
		return "integer"
	case "struct", "ptr":
		return "object"
	case "slice":
		return "array"
	case "bool":
		return "boolean"
	}
	return k
}

// Validate checks every field. Errors wrap nimbus.ErrInvalid.
func (c Config) Validate() error {
	switch c.AuthType {
	case AuthNone, AuthIAM:
		if c.Key != "" {
			return nimbus.Invalidf("key: a URL whose authType is %s takes no key (use authType KEY to require one)", c.AuthType)
		}
	case AuthKey:
		if c.Key != "" {
			if err := validateKey(c.Key); err != nil {
				return err
			}
		}
	case "":
		return nimbus.Invalidf("authType is required: NONE (a public URL), KEY (callers send the key in the %s header) or AWS_IAM (callers sign with SigV4)", KeyHeader)
	default:
		return nimbus.Invalidf("authType %q is not valid: use NONE (a public URL), KEY (callers send the key in the %s header) or AWS_IAM (callers sign with SigV4)", c.AuthType, KeyHeader)
	}
	switch c.InvokeMode {
	case "", InvokeBuffered, InvokeStream:
	default:
		return nimbus.Invalidf("invokeMode %q is not valid: use BUFFERED or RESPONSE_STREAM", c.InvokeMode)
	}
	for _, m := range c.Methods {
		if !slices.Contains(methods, m) {
			return nimbus.Invalidf("methods: %q is not an HTTP method a URL may restrict to (%s)", m, strings.Join(methods, ", "))
		}
	}
	if c.Cors != nil {
		return c.Cors.Validate()
	}
	return nil
}

func validateKey(k string) error {
	if len(k) < minKeyLen || len(k) > maxKeyLen {
		return nimbus.Invalidf("key must be %d to %d characters long, not %d (leave it empty to have one generated)", minKeyLen, maxKeyLen, len(k))
	}
	for i := 0; i < len(k); i++ {
		if !keyChar(k[i]) {
			return nimbus.Invalidf("key may hold only letters, digits and - _ . ~ + / =, not %q", k[i])
		}
	}
	return nil
}

func keyChar(b byte) bool {
	switch {
	case 'a' <= b && b <= 'z', 'A' <= b && b <= 'Z', '0' <= b && b <= '9':
		return true
	}
	switch b {
	case '-', '_', '.', '~', '+', '/', '=':
		return true
	}
	return false
}

// NewKey returns a random key: 32 bytes in unpadded base64url.
func NewKey() string {
	var b [32]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand panics instead)
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// WithKey returns c with a generated key if its auth type is KEY and it has
// none, and without a key if its auth type is NONE. Call it before storing a
// config.
func (c Config) WithKey() Config {
	switch c.AuthType {
	case AuthKey:
		if c.Key == "" {
			c.Key = NewKey()
		}
	case AuthNone, AuthIAM:
		c.Key = ""
	}
	return c
}

// Mode returns the invoke mode, InvokeBuffered when unset.
func (c Config) Mode() string {
	if c.InvokeMode == "" {
		return InvokeBuffered
	}
	return c.InvokeMode
}

// Encode returns the config as stored in nimbus.Trigger.Config.
func (c Config) Encode() json.RawMessage {
	b, _ := json.Marshal(c) // plain strings, slices and numbers: cannot fail
	return b
}

// Authorized reports whether r may call the URL: always for NONE; for KEY
// when X-Nimbus-Key holds the key (compared in constant time); never for
// AWS_IAM, whose signature the API checks instead.
func (c Config) Authorized(r *nethttp.Request) bool {
	switch c.AuthType {
	case AuthNone:
		return true
	case AuthIAM:
		return false
	}
	got := r.Header.Get(KeyHeader)
	return c.Key != "" && subtle.ConstantTimeCompare([]byte(got), []byte(c.Key)) == 1
}

// URLTriggerName is the name of the trigger that Lambda's
// CreateFunctionUrlConfig creates for a function's own URL; TriggerName
// names those of aliases.
const URLTriggerName = "url"

// TriggerName is the name of the http trigger CreateFunctionUrlConfig
// creates for qualifier (an alias; "" for the function's own URL):
// "url-<alias>", or "url-" and the start of id when the alias is too long
// for a trigger name.
func TriggerName(qualifier, id string) string {
	switch {
	case qualifier == "":
		return URLTriggerName
	case len(URLTriggerName)+1+len(qualifier) <= maxTriggerName:
		return URLTriggerName + "-" + qualifier
	}
	return URLTriggerName + "-" + id[:8]
}

// maxTriggerName is the longest trigger name (registry.ValidateTriggerName).
const maxTriggerName = 64

// Find returns the function URL of qualifier: fn's http trigger whose
// Qualifier it is ("": the function's own URL, else an alias's); nil when
// there is none. A function has at most one URL per qualifier.
func Find(fn *nimbus.Function, qualifier string) *nimbus.Trigger {
	for i := range fn.Triggers {
		if t := &fn.Triggers[i]; t.Type == nimbus.TriggerHTTP && t.Qualifier == qualifier {
			return t
		}
	}
	return nil
}

// Path is where the URL of fn's trigger t is served, after the API's
// prefix: "<name>/", or "<name>:<alias>/" for an alias's URL.
func Path(function string, t *nimbus.Trigger) string {
	if t.Qualifier == "" {
		return function + "/"
	}
	return function + ":" + t.Qualifier + "/"
}

// IsHTTPFunction reports whether fn is an HTTP function (runtime "http"),
// which receives the raw request rather than an event.
func IsHTTPFunction(fn *nimbus.Function) bool { return fn.Runtime == "http" }

// ValidateFor checks what depends on the function: RESPONSE_STREAM needs an
// HTTP function, since Nimbus's Runtime API does not stream responses yet.
func (c Config) ValidateFor(fn *nimbus.Function) error {
	if c.InvokeMode == InvokeStream && !IsHTTPFunction(fn) {
		return nimbus.Invalidf("invokeMode RESPONSE_STREAM is not supported for function %s (runtime %s): Nimbus streams only the answers of HTTP functions (runtime http) so far; use BUFFERED", fn.Name, fn.Runtime)
	}
	return nil
}

// Factory is the http trigger type's trigger.Factory: it validates the
// config. A function URL has no Source (its requests arrive at the API), so
// the Source is always nil.
func Factory(raw json.RawMessage) (trigger.Source, error) {
	_, err := ParseConfig(raw)
	return nil, err
}

// Normalize validates a config about to be stored (next) and completes it:
// a KEY URL without a key keeps the key of the config it replaces (prev, nil
// on creation) or gets a generated one, and a NONE URL loses its key. Every
// path that stores an http trigger must call it, or a KEY URL could be
// stored without a key (and refuse every request).
func Normalize(prev, next json.RawMessage) (json.RawMessage, error) {
	c, err := ParseConfig(next)
	if err != nil {
		return nil, err
	}
	if c.AuthType == AuthKey && c.Key == "" && len(prev) > 0 {
		if old, err := ParseConfig(prev); err == nil && old.AuthType == AuthKey {
			c.Key = old.Key
		}
	}
	return c.WithKey().Encode(), nil
}
