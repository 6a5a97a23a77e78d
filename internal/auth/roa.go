package auth

import (
	"crypto/hmac"
	"crypto/md5"
	"crypto/sha1"
	"encoding/base64"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
)

// Alibaba Cloud's older signature of ROA requests, which Function Compute
// 3.0's SDKs send when configured with signatureAlgorithm "v2"
// (@alicloud/openapi-core's doROARequest): the Authorization header
// `acs <key id>:<base64 HMAC-SHA1>` over
//
//	METHOD \n Accept \n Content-MD5 \n Content-Type \n Date \n
//	x-acs-* headers, lower-case, sorted, "name:value\n" (tabs and line
//	breaks removed from the value, trimmed)
//	the path as sent, then "?" and the query sorted by name as "k=v"
//	joined by "&" (values as they are, not encoded), when there is one
//
// The body is not signed unless the request sends Content-MD5 (which is
// then checked against it): a request with a body and no Content-MD5 is
// accepted only where the caller allows an unsigned body (invocations; as
// SigV4's UNSIGNED-PAYLOAD), so that no deploy or setting can be changed
// in flight (docs/security.md).
// Date must be within ACS3MaxSkew, and x-acs-signature-nonce new, as for
// ACS3.
const (
	roaPrefix          = "acs "
	roaSignatureMethod = "HMAC-SHA1"
)

// verifyROA checks r's older ROA signature (see above).
func (v *ACS3Verifier) verifyROA(r *http.Request, allowUnsignedBody bool) (Principal, error) {
	keyID, sig64, ok := strings.Cut(strings.TrimPrefix(r.Header.Get("Authorization"), roaPrefix), ":")
	if !ok || keyID == "" || sig64 == "" {
		return Principal{}, acs3Err(CodeIncompleteSignature, "The Authorization header must be 'acs <AccessKeyId>:<Signature>'.")
	}
	sig, err := base64.StdEncoding.DecodeString(sig64)
	if err != nil {
		return Principal{}, acs3Err(CodeSignatureNotMatch, "The signature must be base64.")
	}
	if m := r.Header.Get("X-Acs-Signature-Method"); m != roaSignatureMethod {
		return Principal{}, acs3Err(CodeIncompleteSignature, "x-acs-signature-method must be HMAC-SHA1 for an 'acs' signature, not '"+m+"'.")
	}
	nonce := r.Header.Get("X-Acs-Signature-Nonce")
	if nonce == "" {
		return Principal{}, acs3Err(CodeIncompleteSignature, "x-acs-signature-nonce is required.")
	}
	date, err := http.ParseTime(r.Header.Get("Date"))
	if err != nil {
		return Principal{}, acs3Err(CodeIncompleteSignature, "Date must be an HTTP date such as Mon, 02 Jan 2006 15:04:05 GMT, not '"+r.Header.Get("Date")+"'.")
	}
	now := time.Now
	if v.Now != nil {
		now = v.Now
	}
	t := now().UTC()
	if date.Before(t.Add(-ACS3MaxSkew)) || date.After(t.Add(ACS3MaxSkew)) {
		return Principal{}, acs3Err(CodeRequestTimeSkewed, "The difference between the request time "+
			date.UTC().Format(acs3DateFormat)+" and the server's time "+t.Format(acs3DateFormat)+" is more than 15 minutes.")
	}
	secret, p, ok := v.Secrets(keyID)
	if !ok {
		return Principal{}, acs3Err(CodeInvalidAccessKeyID, "Specified access key is not found.")
	}
	hasBody := r.Body != nil && r.Body != http.NoBody && r.ContentLength != 0
	md5h := r.Header.Get("Content-Md5")
	if hasBody && md5h == "" && !allowUnsignedBody {
		return Principal{}, acs3Err(CodeIncompleteSignature, "The older 'acs' signature does not cover the body: send this request signed with ACS3-HMAC-SHA256 (the SDK's default signatureAlgorithm) or with a Content-MD5 header. Only invocations may carry an unsigned body.")
	}
	if md5h != "" {
		body, err := readBody(r, v.MaxBody)
		if err != nil {
			return Principal{}, err
		}
		sum := md5.Sum(body)
		if base64.StdEncoding.EncodeToString(sum[:]) != md5h {
			return Principal{}, acs3Err(CodeSignatureNotMatch, "The Content-MD5 header does not match the MD5 of the body.")
		}
	}
	mac := hmac.New(sha1.New, []byte(secret))
	mac.Write([]byte(roaStringToSign(r)))
	if !hmac.Equal(mac.Sum(nil), sig) {
		return Principal{}, acs3Err(CodeSignatureNotMatch, "The request signature we calculated does not match the signature you provided. Check your AccessKey secret and signing method.")
	}
	if !v.freshNonce(&acs3Request{keyID: keyID, nonce: nonce, date: date}, t) {
		return Principal{}, acs3Err(CodeSignatureNonceUsed, "The x-acs-signature-nonce "+nonce+" has been used: the request is a replay.")
	}
	return p, nil
}

// roaStringToSign is the string the older ROA signature signs for r.
func roaStringToSign(r *http.Request) string {
	var b strings.Builder
	for _, h := range []string{"Accept", "Content-Md5", "Content-Type", "Date"} {
		b.WriteString("\n" + r.Header.Get(h))
	}
	b.WriteString("\n")
	var names []string
	for name := range r.Header {
		if n := strings.ToLower(name); strings.HasPrefix(n, "x-acs-") {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	clean := strings.NewReplacer("\t", "", "\n", "", "\r", "", "\f", "")
	for _, n := range names {
		b.WriteString(n + ":" + strings.TrimSpace(clean.Replace(r.Header.Get(n))) + "\n")
	}
	b.WriteString(wirePath(r))
	if q, _ := url.ParseQuery(r.URL.RawQuery); len(q) > 0 {
		keys := make([]string, 0, len(q))
		for k := range q {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		parts := make([]string, len(keys))
		for i, k := range keys {
			parts[i] = k + "=" + q.Get(k)
		}
		b.WriteString("?" + strings.Join(parts, "&"))
	}
	return r.Method + b.String()
}
