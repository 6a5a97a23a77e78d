package s3

import (
	"bytes"
	"encoding/json"
	"net/url"
	"strings"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/lazyre"
)

// Key encodings of Config.KeyEncoding.
const (
	// KeyEncodingURL: object keys arrive URL-encoded, as AWS S3 and MinIO
	// send them ("a+b%2Fc" is "a b/c"). A key that cannot be URL-encoded
	// (it holds a space or a bad %-escape) is taken as it is.
	KeyEncodingURL = "url"
	// KeyEncodingNone: object keys arrive as they are (versitygw 1.8).
	KeyEncodingNone = "none"
)

// Limits of a Config.
const (
	maxEvents    = 32
	maxAffix     = 1024 // S3's longest key
	maxBucketLen = 255
	minSecretLen = 8
	maxSecretLen = 256
)

// Config is an object-storage trigger's configuration (nimbus.Trigger.Config
// of type "s3").
type Config struct {
	// Bucket is the bucket whose events fire the function (required).
	Bucket string `json:"bucket"`
	// Events are event types, exact ("s3:ObjectCreated:Put") or ending in
	// a wildcard ("s3:ObjectCreated:*", "s3:*"); the "s3:" prefix may be
	// left out. Empty means every event.
	Events []string `json:"events,omitempty"`
	// Prefix and Suffix filter on the decoded object key.
	Prefix string `json:"prefix,omitempty"`
	Suffix string `json:"suffix,omitempty"`
	// Secret, when set, must come with each notification: as the query
	// parameter "secret", as "Authorization: Bearer <secret>" or as the
	// header "X-Nimbus-Secret".
	Secret string `json:"secret,omitempty"`
	// KeyEncoding is KeyEncodingURL (default) or KeyEncodingNone.
	KeyEncoding string `json:"keyEncoding,omitempty"`
}

// eventPattern matches an event type or a wildcard pattern.
var eventPattern = lazyre.New(`^s3:(\*|[A-Za-z0-9]+(:[A-Za-z0-9]+)*(:\*)?)$`)

// ParseConfig decodes and validates an object-storage trigger's Config.
// Errors are user errors (nimbus.ErrInvalid) naming the bad field.
func ParseConfig(raw json.RawMessage) (Config, error) {
	var c Config
	if len(bytes.TrimSpace(raw)) == 0 {
		return c, nimbus.Invalidf("s3 config: bucket is required")
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return c, nimbus.Invalidf("s3 config: %s", strings.TrimPrefix(err.Error(), "json: "))
	}
	if err := c.validate(); err != nil {
		return c, err
	}
	for i, e := range c.Events {
		if !strings.HasPrefix(e, "s3:") {
			c.Events[i] = "s3:" + e
		}
	}
	if c.KeyEncoding == "" {
		c.KeyEncoding = KeyEncodingURL
	}
	return c, nil
}

func (c Config) validate() error {
	switch {
	case c.Bucket == "":
		return nimbus.Invalidf("s3 config: bucket is required")
	case len(c.Bucket) > maxBucketLen || strings.ContainsAny(c.Bucket, "/*? \t\r\n"):
		return nimbus.Invalidf("s3 config: bucket %q is not a bucket name", c.Bucket)
	case len(c.Events) > maxEvents:
		return nimbus.Invalidf("s3 config: events has %d entries, at most %d are allowed", len(c.Events), maxEvents)
	case len(c.Prefix) > maxAffix || len(c.Suffix) > maxAffix:
		return nimbus.Invalidf("s3 config: prefix and suffix must be at most %d bytes", maxAffix)
	case c.KeyEncoding != "" && c.KeyEncoding != KeyEncodingURL && c.KeyEncoding != KeyEncodingNone:
		return nimbus.Invalidf("s3 config: keyEncoding %q must be %q or %q", c.KeyEncoding, KeyEncodingURL, KeyEncodingNone)
	}
	for i, e := range c.Events {
		full := e
		if !strings.HasPrefix(full, "s3:") {
			full = "s3:" + e
		}
		if !eventPattern().MatchString(full) {
			return nimbus.Invalidf("s3 config: events[%d] %q is not an event type such as s3:ObjectCreated:* or s3:ObjectRemoved:Delete", i, e)
		}
	}
	return validateSecret(c.Secret)
}

func validateSecret(s string) error {
	if s == "" {
		return nil
	}
	if len(s) < minSecretLen || len(s) > maxSecretLen {
		return nimbus.Invalidf("s3 config: secret must be %d to %d characters", minSecretLen, maxSecretLen)
	}
	for _, r := range s {
		if r <= ' ' || r > '~' {
			return nimbus.Invalidf("s3 config: secret must be printable ASCII without spaces")
		}
	}
	return nil
}

// Match reports whether a record passes the trigger's filters: bucket,
// event type, and key prefix and suffix (on the decoded key).
func (c Config) Match(r Record) bool {
	if r.Bucket != c.Bucket || !c.matchEvent(r.EventName) {
		return false
	}
	key := c.Key(r)
	return strings.HasPrefix(key, c.Prefix) && strings.HasSuffix(key, c.Suffix)
}

func (c Config) matchEvent(name string) bool {
	if len(c.Events) == 0 {
		return true
	}
	for _, p := range c.Events {
		if base, ok := strings.CutSuffix(p, "*"); ok {
			if strings.HasPrefix(name, base) {
				return true
			}
		} else if name == p {
			return true
		}
	}
	return false
}

// Key returns the record's object key decoded as KeyEncoding says.
func (c Config) Key(r Record) string {
	if c.KeyEncoding == KeyEncodingNone || strings.Contains(r.RawKey, " ") {
		return r.RawKey
	}
	k, err := url.QueryUnescape(r.RawKey)
	if err != nil {
		return r.RawKey
	}
	return k
}
