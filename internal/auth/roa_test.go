package auth

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// roaAuth is the Authorization @alicloud/openapi-core 1.0.8's
// Utils.getStringToSign and getROASignature (the older signature Function
// Compute 3.0's Node SDK sends with signatureAlgorithm "v2") make for
// roaReq's request, key AKID, secret SECRET.
const roaAuth = "acs AKID:C0VrYGK80FLcdaNhbmTk5f8RtnE="

func roaReq(mod func(r *http.Request)) *http.Request {
	r := httptest.NewRequest("GET", "http://127.0.0.1:9000/2023-03-30/functions/my-fn?qualifier=LATEST&prefix=a%20b", nil)
	for k, v := range map[string]string{"date": "Sun, 06 Dec 2026 16:00:00 GMT", "accept": "application/json",
		"x-acs-signature-nonce": "nonce-1", "x-acs-signature-method": "HMAC-SHA1", "x-acs-signature-version": "1.0",
		"x-acs-version": "2023-03-30", "x-acs-action": "GetFunction", "user-agent": "AlibabaCloud test", "Authorization": roaAuth} {
		r.Header.Set(k, v)
	}
	if mod != nil {
		mod(r)
	}
	return r
}

// TestROAVerify: the SDK's older ROA signature verifies (once), and a
// change to what it covers, an unknown key, a skewed date, another
// signature method, an unsigned body where the operation does not allow
// one and a body that does not match its Content-MD5 are refused with
// Function Compute's codes.
func TestROAVerify(t *testing.T) {
	now := time.Date(2026, 12, 6, 16, 5, 0, 0, time.UTC)
	v := acs3Verifier(now)
	p, err := v.Verify(roaReq(nil), false)
	if err != nil || p.AccessKeyID != "AKID" {
		t.Fatalf("Verify of the SDK's request: %v, %v", p, err)
	}
	// An invocation may carry a body the signature does not cover.
	inv := roaReq(func(r *http.Request) {
		r.Body, r.ContentLength = io.NopCloser(strings.NewReader("event")), 5
		r.Header.Set("x-acs-signature-nonce", "nonce-1")
	})
	if _, err := acs3Verifier(now).Verify(inv, true); err != nil {
		t.Errorf("Verify of an invocation with an unsigned body: %v", err)
	}
	for _, tc := range []struct {
		name string
		mod  func(r *http.Request)
		code string
	}{
		{"replay", nil, CodeSignatureNonceUsed},
		{"other path", func(r *http.Request) { r.URL.Path, r.RequestURI = "/2023-03-30/functions/other", "" }, CodeSignatureNotMatch},
		{"other query", func(r *http.Request) { r.URL.RawQuery, r.RequestURI = "qualifier=1&prefix=a%20b", "" }, CodeSignatureNotMatch},
		{"other method", func(r *http.Request) { r.Method = "DELETE" }, CodeSignatureNotMatch},
		{"other x-acs header", func(r *http.Request) { r.Header.Set("x-acs-action", "DeleteFunction") }, CodeSignatureNotMatch},
		{"added x-acs header", func(r *http.Request) { r.Header.Set("x-acs-extra", "1") }, CodeSignatureNotMatch},
		{"unknown key", func(r *http.Request) { r.Header.Set("Authorization", "acs NOPE:C0VrYGK80FLcdaNhbmTk5f8RtnE=") }, CodeInvalidAccessKeyID},
		{"bad form", func(r *http.Request) { r.Header.Set("Authorization", "acs AKID") }, CodeIncompleteSignature},
		{"not base64", func(r *http.Request) { r.Header.Set("Authorization", "acs AKID:!!") }, CodeSignatureNotMatch},
		{"other method name", func(r *http.Request) { r.Header.Set("x-acs-signature-method", "HMAC-SHA256") }, CodeIncompleteSignature},
		{"no nonce", func(r *http.Request) { r.Header.Del("x-acs-signature-nonce") }, CodeIncompleteSignature},
		{"bad date", func(r *http.Request) { r.Header.Set("date", "yesterday") }, CodeIncompleteSignature},
		{"skewed date", func(r *http.Request) { r.Header.Set("date", "Sun, 06 Dec 2026 15:00:00 GMT") }, CodeRequestTimeSkewed},
		{"unsigned body outside an invoke", func(r *http.Request) {
			r.Body, r.ContentLength = io.NopCloser(strings.NewReader(`{"functionName":"x"}`)), 20
		}, CodeIncompleteSignature},
		{"body not its Content-MD5", func(r *http.Request) {
			r.Body, r.ContentLength = io.NopCloser(strings.NewReader("tampered")), 8
			r.Header.Set("Content-MD5", "1B2M2Y8AsgTpgAmY7PhCfg==") // the empty body's
		}, CodeSignatureNotMatch},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := v.Verify(roaReq(tc.mod), false)
			var ae *Error
			if !errors.As(err, &ae) || ae.Type != tc.code || ae.Status != http.StatusForbidden {
				t.Errorf("Verify: %v, want %s", err, tc.code)
			}
		})
	}
}
