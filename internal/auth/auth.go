// Package auth decides who a request comes from and what it may do: AWS
// Signature Version 4 verification against the access keys Nimbus issues
// (sigv4.go), the keys themselves, their secrets sealed at rest under the
// node key (keys.go), roles and function globs (policy.go), the AWS
// shared-credentials file a node writes for its first admin key
// (credfile.go), and a limit on failed attempts per client address
// (limiter.go).
package auth

import (
	"context"
	"fmt"
	"net/http"
	"path"
	"time"
)

// Role is what a key may do.
type Role string

// The roles.
const (
	// Admin may do everything, keys and audit included.
	Admin Role = "admin"
	// Developer manages, reads and invokes the functions its glob matches.
	Developer Role = "developer"
	// Invoker only invokes the functions its glob matches.
	Invoker Role = "invoker"
)

// ParseRole checks a role's name.
func ParseRole(s string) (Role, error) {
	switch r := Role(s); r {
	case Admin, Developer, Invoker:
		return r, nil
	}
	return "", fmt.Errorf("role must be admin, developer or invoker, not %q", s)
}

// Principal is who a request comes from.
type Principal struct {
	Name        string // the key's name
	AccessKeyID string
	Role        Role
	// Functions is the glob (path.Match syntax) of the function names the
	// key may touch; "*" for all. Admin keys touch all.
	Functions string
}

// Anonymous is the principal of every request when authentication is off.
var Anonymous = Principal{Name: "anonymous", Role: Admin, Functions: "*"}

// ValidGlob checks a function glob.
func ValidGlob(g string) error {
	if g == "" {
		return fmt.Errorf("function glob must not be empty (use * for all)")
	}
	if _, err := path.Match(g, ""); err != nil {
		return fmt.Errorf("function glob %q is malformed: %v", g, err)
	}
	return nil
}

// Error is an authentication or authorization failure, in Lambda's terms:
// an HTTP status, an error type and the message Lambda gives.
type Error struct {
	Status  int
	Type    string
	Message string
	// RetryAfter, when set, is how long the client must wait.
	RetryAfter time.Duration
}

func (e *Error) Error() string { return e.Type + ": " + e.Message }

func newErr(typ, msg string) *Error {
	return &Error{Status: http.StatusForbidden, Type: typ, Message: msg}
}

// Lambda's messages.
const (
	msgBadSignature = "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details."
	msgUnknownKey   = "The security token included in the request is invalid."
)

var (
	errMissing    = newErr("MissingAuthenticationTokenException", "Missing Authentication Token")
	errUnknownKey = newErr("UnrecognizedClientException", msgUnknownKey)
	errSignature  = newErr("InvalidSignatureException", msgBadSignature)
)

func incomplete(msg string) *Error { return newErr("IncompleteSignatureException", msg) }
func invalid(msg string) *Error    { return newErr("InvalidSignatureException", msg) }

// Denied is the error of a principal that may not do what it asked.
func Denied(p Principal, action string) *Error {
	return newErr("AccessDeniedException", fmt.Sprintf("Key %s (role %s) is not authorized to perform: %s", p.Name, p.Role, action))
}

type ctxKey struct{}

// With returns ctx carrying p.
func With(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, ctxKey{}, p)
}

// From returns the principal in ctx, and whether there is one.
func From(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(ctxKey{}).(Principal)
	return p, ok
}
