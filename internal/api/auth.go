package api

import (
	"context"
	"net/http"
	"strings"

	"github.com/nimbus-serverless/nimbus/internal/auth"
)

// KeyService manages access keys (implemented by *auth.Keys).
type KeyService interface {
	// Create issues a key. Errors: nimbus.ErrInvalid, nimbus.ErrConflict.
	Create(ctx context.Context, name string, role auth.Role, functions string) (auth.Key, error)
	// List returns the keys without their secrets.
	List() []auth.Key
	// Delete removes a key. Errors: nimbus.ErrNotFound, nimbus.ErrConflict
	// (the last admin key).
	Delete(ctx context.Context, name string) error
	// Rotate gives a key a new id and secret. Errors: nimbus.ErrNotFound.
	Rotate(ctx context.Context, name string) (auth.Key, error)
}

// accessOf is what a route does, from its pattern: keys, the audit trail
// and the metrics are administration, invocations invoke, other reads read, the rest
// manages.
func accessOf(pattern string) auth.Access {
	method, path, _ := strings.Cut(pattern, " ")
	switch {
	case strings.HasPrefix(path, "/nimbus/v1/keys"), strings.HasPrefix(path, "/nimbus/v1/audit"), path == "/metrics":
		return auth.Administer
	case method == http.MethodPost && (strings.HasSuffix(path, "invocations") || strings.Contains(path, "/invoke-async")):
		return auth.Invoke
	case method == http.MethodGet || method == http.MethodHead:
		return auth.Read
	}
	return auth.Manage
}

// authenticate returns who r comes from: the principal of its valid
// signature, or auth.Anonymous when authentication is off. Failures count
// against the client's address.
func (s *Server) authenticate(r *http.Request, allowUnsigned bool) (auth.Principal, error) {
	if p, ok := r.Context().Value(authenticatedKey{}).(auth.Principal); ok {
		return p, nil
	}
	v := s.cfg.Verifier
	if v == nil {
		return auth.Anonymous, nil
	}
	if err := s.cfg.Limiter.Check(r); err != nil {
		return auth.Principal{}, err
	}
	p, err := v.Verify(r, allowUnsigned)
	if err != nil {
		if ae, ok := err.(*auth.Error); ok && ae.Status == http.StatusForbidden {
			s.cfg.Limiter.Failed(r)
		}
		return auth.Principal{}, err
	}
	return p, nil
}

type authenticatedKey struct{}

// Authenticated returns ctx marking the requests made with it as coming
// from p, already authenticated: the web console's requests, made in the
// process for the key of a login session. No request from the network
// carries it. Authorization, limits and the audit trail apply as to any
// request of p.
func Authenticated(ctx context.Context, p auth.Principal) context.Context {
	return context.WithValue(ctx, authenticatedKey{}, p)
}

// authorize authenticates r for a route and checks the route's access on
// the function it names; handlers of routes that name their function
// elsewhere (a body, a mapping) call allow themselves.
func (s *Server) authorize(r *http.Request, pattern string, access auth.Access) (*http.Request, error) {
	var p auth.Principal
	var err error
	if pattern == metricsPattern {
		p, err = s.authenticateScrape(r)
	} else {
		p, err = s.authenticate(r, access == auth.Invoke)
	}
	if err != nil {
		return r, err
	}
	fn := ""
	if strings.Contains(pattern, "{name}") {
		fn = r.PathValue("name")
	}
	// The principal goes with a denied request too, for the audit trail.
	r = r.WithContext(auth.With(r.Context(), p))
	err = p.Allow(access, fn, actionOf(pattern))
	if err != nil && access == auth.Invoke {
		name, q, qerr := requestQualifier(r)
		if qerr == nil && s.policyGrants(r.Context(), p, name, q, false) {
			err = nil // the resource policy of the qualifier invoked grants it (policy_routes.go)
		}
	}
	return r, err
}

// actionOf names a route's operation for an error message.
func actionOf(pattern string) string {
	return strings.ReplaceAll(strings.ReplaceAll(pattern, "{$}", ""), "{name}", "*")
}

// allow checks that the caller of r may do access on function fn.
func allow(r *http.Request, access auth.Access, fn string) error {
	noteFunction(r, fn)
	p, ok := auth.From(r.Context())
	if !ok {
		p = auth.Anonymous
	}
	return p.Allow(access, auth.FunctionName(fn), r.Method+" "+r.URL.Path)
}

// sees reports whether the caller of r may see function fn (lists show a
// restricted key only its functions).
func sees(r *http.Request, fn string) bool {
	p, ok := auth.From(r.Context())
	return !ok || p.Matches(fn)
}
