package trigger

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/lazyre"
)

// Redacted is what a secret of a trigger's Config is shown as: in API
// answers, CLI output, states' reasons and logs.
const Redacted = "****"

// Secrets names the members of a trigger type's Config that hold secrets,
// at any depth of the Config's JSON objects.
type Secrets struct {
	// URLs are members holding a URL, or a comma-separated list of URLs,
	// whose userinfo may carry credentials: the password is secret, and so
	// is a user given without a password (it may be a token, as in
	// nats://TOKEN@host).
	URLs []string
	// Values are string members that are secret as a whole (the s3
	// trigger's secret).
	Values []string
}

// Redactor is implemented by a Source whose Config holds secrets. The API
// redacts them in every answer, asking the Source that the type's Factory
// makes of the stored Config.
type Redactor interface {
	// Secrets names the Config members that hold secrets.
	Secrets() Secrets
}

// SecretsOf returns the secrets of config, a Config of the type that f
// makes: its Source's, when it is a Redactor (none, when it is not). When
// f is nil, refuses config or panics, it returns GuessSecrets(config), so a
// config that is no longer valid is still redacted.
func SecretsOf(f Factory, config json.RawMessage) (s Secrets) {
	if f == nil {
		return GuessSecrets(config)
	}
	defer func() {
		if recover() != nil {
			s = GuessSecrets(config)
		}
	}()
	src, err := f(config)
	if err != nil {
		return GuessSecrets(config)
	}
	if r, ok := src.(Redactor); ok {
		return r.Secrets()
	}
	return Secrets{}
}

// secretName matches the names of members GuessSecrets takes for secrets.
var secretName = lazyre.New(`(?i)passw|secret|token|passphrase|credential`)

// GuessSecrets returns the members of config that look secret: strings
// holding URLs with credentials, and members named like a password, a
// secret or a token.
func GuessSecrets(config json.RawMessage) Secrets {
	var s Secrets
	walkStrings(decodeConfig(config), func(name string, v string) {
		switch {
		case secretName().MatchString(name):
			s.Values = append(s.Values, name)
		case userinfo().MatchString(v):
			s.URLs = append(s.URLs, name)
		}
	})
	return s
}

// RedactConfig returns config, a Config of the type f makes, with its
// secrets (SecretsOf) replaced by Redacted.
func RedactConfig(f Factory, config json.RawMessage) json.RawMessage {
	return SecretsOf(f, config).Redact(config)
}

// Redact returns config with the secrets s names replaced by Redacted. A
// config without any is returned as it is; one that changed is encoded
// again (members sorted by name).
func (s Secrets) Redact(config json.RawMessage) json.RawMessage {
	v := decodeConfig(config)
	if v == nil {
		return config
	}
	changed := false
	v = s.rewrite(v, func(name, str string) string {
		out := str
		switch {
		case slices.Contains(s.Values, name) && str != "":
			out = Redacted
		case slices.Contains(s.URLs, name):
			out = RedactText(str)
		}
		changed = changed || out != str
		return out
	})
	if !changed {
		return config
	}
	return encodeConfig(v)
}

// RestoreConfig returns update, a new Config for a trigger whose stored
// Config is stored (nil: a new trigger), with each secret that is
// Redacted (as an answer showed it) replaced by the stored one. A password
// is kept only for the same scheme, user and host: an update that points a
// redacted password elsewhere, or a new trigger with a redacted secret, is
// refused (nimbus.ErrInvalid) rather than stored as "****".
func RestoreConfig(f Factory, update, stored json.RawMessage) (json.RawMessage, error) {
	if !bytes.Contains(update, []byte(Redacted)) {
		return update, nil
	}
	s := SecretsOf(f, stored)
	if stored == nil {
		s = SecretsOf(f, update)
	}
	return s.Restore(update, stored)
}

// Restore is RestoreConfig for the secrets s names.
func (s Secrets) Restore(update, stored json.RawMessage) (json.RawMessage, error) {
	v := decodeConfig(update)
	if v == nil || !bytes.Contains(update, []byte(Redacted)) {
		return update, nil
	}
	old := map[string]string{} // the stored secrets by path
	s.walkPaths(decodeConfig(stored), "", func(path, str string) { old[path] = str })
	var err error
	changed := false
	v = s.rewritePaths(v, "", func(path, name, str string) string {
		if err != nil || !strings.Contains(str, Redacted) {
			return str
		}
		var out string
		if slices.Contains(s.Values, name) {
			out, err = restoreValue(path, str, old[path])
		} else {
			out, err = restoreURLs(path, str, old[path])
		}
		changed = changed || out != str
		return out
	})
	if err != nil {
		return nil, err
	}
	if !changed {
		return update, nil
	}
	return encodeConfig(v), nil
}

// restoreValue keeps the stored secret when the update shows it Redacted.
func restoreValue(path, str, old string) (string, error) {
	if str != Redacted {
		return str, nil
	}
	if old == "" || old == Redacted {
		return "", nimbus.Invalidf("config: %s is %q, how answers show a secret, and there is no stored one to keep: give the secret itself", path, Redacted)
	}
	return old, nil
}

// restoreURLs puts the stored credentials back into the URLs of a list
// whose credentials are Redacted, URL by URL.
func restoreURLs(path, str, old string) (string, error) {
	parts, olds := strings.Split(str, ","), strings.Split(old, ",")
	for i, p := range parts {
		u := splitURL(p)
		if u == nil || (u.pass != Redacted && (u.hasPass || u.user != Redacted)) {
			continue
		}
		var o *urlParts
		if i < len(olds) {
			o = splitURL(olds[i])
		}
		if o == nil || !strings.EqualFold(o.scheme, u.scheme) || o.host != u.host || o.hasPass != u.hasPass ||
			(u.hasPass && o.user != u.user) {
			return "", nimbus.Invalidf("config: %s holds a credential shown as %q: give it again when you change the server, the scheme or the user it is for", path, Redacted)
		}
		parts[i] = u.with(o.user, o.pass)
	}
	return strings.Join(parts, ","), nil
}

// userinfo finds the credentials of a URL in a text: scheme://USERINFO@.
var userinfo = lazyre.New(`([A-Za-z][A-Za-z0-9+.\-]*://)([^/?#\s@"'<>\[\]]+)@`)

// RedactText returns s with the credentials of every URL in it replaced
// by Redacted: the password (scheme://user:****@host), or a user given
// alone, which may be a token (scheme://****@host).
func RedactText(s string) string {
	if !strings.Contains(s, "@") {
		return s
	}
	return userinfo().ReplaceAllStringFunc(s, func(m string) string {
		scheme, info, _ := strings.Cut(m, "://")
		if user, _, ok := strings.Cut(strings.TrimSuffix(info, "@"), ":"); ok {
			return scheme + "://" + user + ":" + Redacted + "@"
		}
		return scheme + "://" + Redacted + "@"
	})
}

// urlParts is a URL split around its userinfo.
type urlParts struct {
	scheme     string // up to and including "://"
	user, pass string // as written (percent-encoded)
	hasPass    bool
	host       string // the authority after the userinfo
	rest       string // from the host on
}

// splitURL splits s, which must hold scheme://userinfo@ at its start
// (after spaces), or returns nil.
func splitURL(s string) *urlParts {
	m := userinfo().FindStringSubmatchIndex(s)
	if m == nil || strings.TrimSpace(s[:m[0]]) != "" {
		return nil
	}
	u := &urlParts{scheme: s[:m[3]], rest: s[m[1]:]}
	u.user, u.pass, u.hasPass = strings.Cut(s[m[4]:m[5]], ":")
	u.host = u.rest
	if i := strings.IndexAny(u.host, "/?#"); i >= 0 {
		u.host = u.host[:i]
	}
	return u
}

// with returns the URL with other credentials.
func (u *urlParts) with(user, pass string) string {
	if u.hasPass {
		return u.scheme + user + ":" + pass + "@" + u.rest
	}
	return u.scheme + user + "@" + u.rest
}

// decodeConfig decodes a JSON config, keeping numbers as they are; nil
// when it is not JSON.
func decodeConfig(config json.RawMessage) any {
	if len(bytes.TrimSpace(config)) == 0 {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(config))
	dec.UseNumber()
	var v any
	if dec.Decode(&v) != nil {
		return nil
	}
	return v
}

func encodeConfig(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil { // cannot happen: v was decoded from JSON
		panic(fmt.Sprintf("trigger: encode config: %v", err))
	}
	return b
}

// walkStrings calls f with the name and value of every string member of
// v's objects, at any depth.
func walkStrings(v any, f func(name, value string)) {
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			if s, ok := x.(string); ok {
				f(k, s)
			} else {
				walkStrings(x, f)
			}
		}
	case []any:
		for _, x := range v {
			walkStrings(x, f)
		}
	}
}

// rewrite replaces every string member of v's objects named in s with
// what f makes of it.
func (s Secrets) rewrite(v any, f func(name, value string) string) any {
	return s.rewritePaths(v, "", func(_, name, value string) string { return f(name, value) })
}

// rewritePaths is rewrite, telling f each member's path ("a.b[2].c").
func (s Secrets) rewritePaths(v any, path string, f func(path, name, value string) string) any {
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			p := join(path, k)
			if str, ok := x.(string); ok && (slices.Contains(s.URLs, k) || slices.Contains(s.Values, k)) {
				v[k] = f(p, k, str)
			} else {
				v[k] = s.rewritePaths(x, p, f)
			}
		}
	case []any:
		for i, x := range v {
			v[i] = s.rewritePaths(x, fmt.Sprintf("%s[%d]", path, i), f)
		}
	}
	return v
}

// walkPaths calls f with the path and value of every string member of v
// named in s.
func (s Secrets) walkPaths(v any, path string, f func(path, value string)) {
	s.rewritePaths(v, path, func(p, _, value string) string {
		f(p, value)
		return value
	})
}

func join(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}
