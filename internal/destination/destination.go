// Package destination delivers the outcome of an asynchronous invocation to
// the destination its function's event invoke configuration names: another
// Nimbus function (invoked asynchronously), an HTTP webhook (signed with
// HMAC-SHA256 and retried with back-off) or a NATS subject (a JetStream
// publish when a stream captures the subject). What is sent is Lambda's
// destination record (Record).
//
// Parse validates a destination string; Sender.Send delivers a record;
// Verify checks a webhook delivery's signature on the receiving side.
package destination

import (
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"unicode"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/lazyre"
)

// Kind is the kind of a destination.
type Kind string

// Destination kinds.
const (
	Function Kind = "function" // another Nimbus function, invoked asynchronously
	Webhook  Kind = "webhook"  // an http:// or https:// URL, POSTed to
	NATS     Kind = "nats"     // a NATS subject, published on
)

// MaxLength bounds a destination string. Lambda's bound is 350 characters;
// Nimbus allows more for webhook URLs with query strings.
const MaxLength = 2048

// natsPrefix introduces a NATS subject destination.
const natsPrefix = "nats:"

// Target is a parsed destination.
type Target struct {
	Kind Kind
	// Name is the function's name (Function), the URL (Webhook) or the
	// subject (NATS).
	Name string
}

// String returns the canonical form of the destination, which Parse reads
// back as the same Target.
func (t Target) String() string {
	if t.Kind == NATS {
		return natsPrefix + t.Name
	}
	return t.Name
}

var (
	nameRE = lazyre.New(`^[a-zA-Z0-9_-]{1,64}$`)
	arnRE  = lazyre.New(`^arn:aws[a-zA-Z-]*:lambda:([a-z]{2}(?:-gov)?-[a-z]+-\d):(\d{12}):function:(.*)$`)
)

// Parse validates a destination and returns its target. Accepted forms:
//
//   - a function name (my-function) or a Lambda function ARN
//     (arn:aws:lambda:<region>:<account>:function:<name>, optionally with
//     the qualifier $LATEST); the ARN's region and account must be region
//     and account when those are not empty;
//   - an http:// or https:// URL (a webhook);
//   - nats:<subject>, a NATS subject without wildcards, not in the system
//     ($...) or inbox (_INBOX.) namespaces.
//
// Errors wrap nimbus.ErrInvalid, with a message for the user.
func Parse(dest, region, account string) (Target, error) {
	if dest == "" {
		return Target{}, nimbus.Invalidf("The destination is empty: %s", forms)
	}
	if len(dest) > MaxLength {
		return Target{}, invalid(dest[:64]+"...", fmt.Sprintf("it is %d characters long, more than the %d allowed", len(dest), MaxLength))
	}
	if i := strings.IndexFunc(dest, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }); i >= 0 {
		return Target{}, invalid(dest, fmt.Sprintf("it contains a space or control character at byte %d", i))
	}
	lower := strings.ToLower(dest)
	switch {
	case strings.HasPrefix(lower, "arn:"):
		return parseARN(dest, region, account)
	case strings.HasPrefix(lower, "http://"), strings.HasPrefix(lower, "https://"):
		return parseURL(dest)
	case strings.HasPrefix(lower, natsPrefix):
		return parseSubject(dest, dest[len(natsPrefix):])
	case nameRE().MatchString(dest):
		return Target{Kind: Function, Name: dest}, nil
	}
	return Target{}, invalid(dest, "it is not a function name (1 to 64 of a-z, A-Z, 0-9, - and _), a function ARN, an http(s) URL or nats:<subject>")
}

// forms lists the accepted destination forms, for error messages.
const forms = "a destination is a function name or ARN (arn:aws:lambda:<region>:<account>:function:<name>), an http:// or https:// URL, or nats:<subject>"

func invalid(dest, why string) error {
	return nimbus.Invalidf("The destination %s is invalid: %s (%s)", dest, why, forms)
}

func parseARN(dest, region, account string) (Target, error) {
	m := arnRE().FindStringSubmatch(dest)
	if m == nil {
		service := ""
		if parts := strings.SplitN(dest, ":", 4); len(parts) > 2 {
			service = parts[2]
		}
		if service != "" && service != "lambda" {
			return Target{}, invalid(dest, "Nimbus cannot deliver to "+service+" resources")
		}
		return Target{}, invalid(dest, "it is not a Lambda function ARN")
	}
	arnRegion, arnAccount := m[1], m[2]
	name, qualifier, qualified := strings.Cut(m[3], ":")
	if !nameRE().MatchString(name) {
		return Target{}, invalid(dest, "the function name must be 1 to 64 of a-z, A-Z, 0-9, - and _")
	}
	if qualified && qualifier != "$LATEST" {
		return Target{}, invalid(dest, "Nimbus runs only the $LATEST version of a function, so a function destination takes no other qualifier")
	}
	if region != "" && arnRegion != region || account != "" && arnAccount != account {
		return Target{}, invalid(dest, fmt.Sprintf("it names region %s, account %s; this Nimbus is region %s, account %s", arnRegion, arnAccount, region, account))
	}
	return Target{Kind: Function, Name: name}, nil
}

func parseURL(dest string) (Target, error) {
	u, err := url.Parse(dest)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return Target{}, invalid(dest, "it is not a valid URL: "+err.Error())
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return Target{}, invalid(dest, "the URL scheme must be http or https, in lower case")
	}
	if u.Hostname() == "" {
		return Target{}, invalid(u.Redacted(), "the URL has no host")
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return Target{}, invalid(u.Redacted(), "the port must be 1 to 65535")
		}
	}
	if u.Fragment != "" || strings.Contains(dest, "#") {
		return Target{}, invalid(u.Redacted(), "a webhook URL takes no #fragment")
	}
	return Target{Kind: Webhook, Name: dest}, nil
}

// parseSubject checks a NATS subject: tokens separated by dots, none empty,
// no wildcards, not in the server's own namespaces.
func parseSubject(dest, subject string) (Target, error) {
	if subject == "" {
		return Target{}, invalid(dest, "the NATS subject is empty")
	}
	if strings.ContainsAny(subject, "*>") {
		return Target{}, invalid(dest, "a NATS subject destination cannot have wildcards (* or >)")
	}
	for _, tok := range strings.Split(subject, ".") {
		if tok == "" {
			return Target{}, invalid(dest, "the NATS subject has an empty token (a leading, trailing or double dot)")
		}
	}
	if strings.HasPrefix(subject, "$") || strings.HasPrefix(subject, "_INBOX.") {
		return Target{}, invalid(dest, "subjects starting with $ or _INBOX. belong to the NATS server and its clients")
	}
	return Target{Kind: NATS, Name: subject}, nil
}
