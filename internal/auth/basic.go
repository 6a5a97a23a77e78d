package auth

import (
	"crypto/subtle"
	"net/http"
	"strings"
)

// IsBasic reports whether r carries HTTP Basic credentials.
func IsBasic(r *http.Request) bool {
	h := r.Header.Get("Authorization")
	return len(h) > 6 && strings.EqualFold(h[:6], "Basic ")
}

// VerifyBasic checks HTTP Basic credentials, user the access key id and
// password its secret, and returns the key's principal. Nimbus accepts it
// only where a scraper cannot sign (GET /metrics: Prometheus's
// basic_auth). The secret is compared in constant time; an unknown key
// and a wrong secret get the same error. Errors are *Error, in Lambda's
// terms (403 MissingAuthenticationTokenException,
// UnrecognizedClientException).
func (v *Verifier) VerifyBasic(r *http.Request) (Principal, error) {
	id, secret, ok := r.BasicAuth()
	if !ok || id == "" {
		return Principal{}, errMissing
	}
	want, p, found := v.Secrets(id)
	if !found {
		// Compare anyway, so that an unknown key takes as long.
		want = strings.Repeat("x", len(secret))
	}
	if subtle.ConstantTimeCompare([]byte(secret), []byte(want)) != 1 || !found {
		return Principal{}, errUnknownKey
	}
	return p, nil
}
