package auth

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"
)

// The parts of Alibaba Cloud's V3 signature (ACS3-HMAC-SHA256) a verifier
// reads, as @alicloud/openapi-core signs ROA requests (Function Compute
// 3.0's SDKs).
const (
	acs3Algorithm  = "ACS3-HMAC-SHA256"
	acs3DateFormat = "2006-01-02T15:04:05Z"
	// ACS3MaxSkew is how far an ACS3 request's x-acs-date may be from the
	// verifier's clock: Alibaba Cloud's gateways allow 15 minutes.
	ACS3MaxSkew = 15 * time.Minute
	// maxNonces bounds the signature nonces remembered for replay checks.
	maxNonces = 1 << 16
)

// Function Compute's error codes for authentication failures.
const (
	CodeSignatureNotMatch   = "SignatureNotMatch"
	CodeInvalidAccessKeyID  = "InvalidAccessKeyId.NotFound"
	CodeMissingSignature    = "MissingAuthorization"
	CodeIncompleteSignature = "IncompleteSignature"
	CodeRequestTimeSkewed   = "RequestTimeTooSkewed"
	CodeSignatureNonceUsed  = "SignatureNonceUsed"
	CodeContentSHA256       = "InvalidContentSHA256"
)

// ACS3Verifier checks Alibaba Cloud V3 signatures (ACS3-HMAC-SHA256), and
// the older ROA signature (roa.go), against
// the same access keys as the SigV4 Verifier: the Authorization header
// `ACS3-HMAC-SHA256 Credential=<key id>,SignedHeaders=<h1;h2>,Signature=<hex>`,
// x-acs-date within ACS3MaxSkew, x-acs-content-sha256 equal to the body's
// SHA-256, and an x-acs-signature-nonce not seen before within the skew
// window (a replayed request is refused).
//
// The canonical request is rebuilt from the request as received:
// method, the path as sent, the query sorted by name with values
// percent-encoded (RFC 3986), the signed headers (lower-case, values trimmed,
// sorted and joined by commas), the signed header names and the payload
// hash; the string to sign is the algorithm and the hex SHA-256 of the
// canonical request, signed with HMAC-SHA256 of the secret.
type ACS3Verifier struct {
	Secrets Secrets
	// MaxBody caps a body read to check its hash.
	MaxBody int64
	// Now is the clock (time.Now when nil).
	Now func() time.Time

	mu     sync.Mutex
	nonces map[string]time.Time // key id + nonce → its request's date
}

// acs3Request is the signature part of a request.
type acs3Request struct {
	keyID         string
	signedHeaders []string
	signature     []byte
	date          time.Time
	nonce         string
	payloadHash   string
}

func acs3Err(code, msg string) *Error {
	return &Error{Status: http.StatusForbidden, Type: code, Message: msg}
}

// Verify checks r's signature and returns the key's principal. The body is
// read (at most MaxBody bytes) to check its hash and r.Body replaced by a
// reader of what was read. Errors are *Error whose Type is Function
// Compute's error code.
//
// allowUnsignedBody is for operations whose body carries no setting
// (invocations): only there may an older ROA signature leave the body
// unsigned (roa.go); an ACS3 signature always covers it.
func (v *ACS3Verifier) Verify(r *http.Request, allowUnsignedBody bool) (Principal, error) {
	if strings.HasPrefix(r.Header.Get("Authorization"), roaPrefix) {
		return v.verifyROA(r, allowUnsignedBody)
	}
	sr, err := parseACS3(r)
	if err != nil {
		return Principal{}, err
	}
	now := time.Now
	if v.Now != nil {
		now = v.Now
	}
	t := now().UTC()
	if sr.date.Before(t.Add(-ACS3MaxSkew)) || sr.date.After(t.Add(ACS3MaxSkew)) {
		return Principal{}, acs3Err(CodeRequestTimeSkewed, "The difference between the request time "+
			sr.date.Format(acs3DateFormat)+" and the server's time "+t.Format(acs3DateFormat)+" is more than 15 minutes.")
	}
	secret, p, ok := v.Secrets(sr.keyID)
	if !ok {
		return Principal{}, acs3Err(CodeInvalidAccessKeyID, "Specified access key is not found.")
	}
	if err := v.checkPayload(r, sr); err != nil {
		return Principal{}, err
	}
	canon := acs3Canonical(r, sr)
	sum := sha256.Sum256([]byte(canon))
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(acs3Algorithm + "\n" + hex.EncodeToString(sum[:])))
	if !hmac.Equal(mac.Sum(nil), sr.signature) {
		return Principal{}, acs3Err(CodeSignatureNotMatch, "The request signature we calculated does not match the signature you provided. Check your AccessKey secret and signing method.")
	}
	if !v.freshNonce(sr, t) {
		return Principal{}, acs3Err(CodeSignatureNonceUsed, "The x-acs-signature-nonce "+sr.nonce+" has been used: the request is a replay.")
	}
	return p, nil
}

func parseACS3(r *http.Request) (*acs3Request, error) {
	h := r.Header.Get("Authorization")
	if h == "" {
		return nil, acs3Err(CodeMissingSignature, "The request is not signed: an Authorization header with an ACS3-HMAC-SHA256 signature is required.")
	}
	alg, rest, _ := strings.Cut(strings.TrimSpace(h), " ")
	if alg != acs3Algorithm {
		return nil, acs3Err(CodeIncompleteSignature, "Unsupported signature algorithm '"+alg+"': this node verifies ACS3-HMAC-SHA256.")
	}
	fields, missing := authFields(rest)
	if missing != "" {
		return nil, acs3Err(CodeIncompleteSignature, "The Authorization header lacks its "+missing+".")
	}
	sig, err := hex.DecodeString(fields["Signature"])
	if err != nil {
		return nil, acs3Err(CodeSignatureNotMatch, "The signature must be hexadecimal.")
	}
	sr := &acs3Request{keyID: fields["Credential"], signature: sig,
		signedHeaders: strings.Split(strings.ToLower(fields["SignedHeaders"]), ";"),
		nonce:         r.Header.Get("X-Acs-Signature-Nonce"), payloadHash: r.Header.Get("X-Acs-Content-Sha256")}
	for _, need := range []string{"host", "x-acs-date", "x-acs-content-sha256", "x-acs-signature-nonce"} {
		if !slices.Contains(sr.signedHeaders, need) {
			return nil, acs3Err(CodeIncompleteSignature, "The header "+need+" must be signed.")
		}
	}
	d, err := time.Parse(acs3DateFormat, r.Header.Get("X-Acs-Date"))
	if err != nil {
		return nil, acs3Err(CodeIncompleteSignature, "x-acs-date must be an ISO 8601 UTC time such as 2024-01-02T15:04:05Z, not '"+r.Header.Get("X-Acs-Date")+"'.")
	}
	sr.date = d
	if sr.nonce == "" {
		return nil, acs3Err(CodeIncompleteSignature, "x-acs-signature-nonce is required.")
	}
	return sr, nil
}

// checkPayload reads the body and checks it against x-acs-content-sha256.
func (v *ACS3Verifier) checkPayload(r *http.Request, sr *acs3Request) error {
	got := emptyHash
	if r.Body != nil && r.Body != http.NoBody && r.ContentLength != 0 {
		body, err := readBody(r, v.MaxBody)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(body)
		got = hex.EncodeToString(sum[:])
	}
	if !strings.EqualFold(sr.payloadHash, got) {
		return acs3Err(CodeContentSHA256, "The x-acs-content-sha256 header does not match the SHA-256 of the body.")
	}
	return nil
}

// acs3Canonical is the canonical request of r.
func acs3Canonical(r *http.Request, sr *acs3Request) string {
	path := wirePath(r)
	path = strings.NewReplacer("+", "%20", "*", "%2A", "%7E", "~").Replace(path)
	q, _ := url.ParseQuery(r.URL.RawQuery)
	keys := make([]string, 0, len(q))
	for k := range q {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, k+"="+acs3Encode(q.Get(k)))
	}
	var hb strings.Builder
	for _, name := range sr.signedHeaders {
		var vals []string
		if name == "host" {
			vals = []string{r.Host}
		} else {
			for _, v := range r.Header.Values(name) {
				vals = append(vals, strings.TrimSpace(v))
			}
		}
		slices.Sort(vals)
		hb.WriteString(name + ":" + strings.Join(vals, ",") + "\n")
	}
	return strings.Join([]string{r.Method, path, strings.Join(parts, "&"), hb.String(),
		strings.Join(sr.signedHeaders, ";"), strings.ToLower(sr.payloadHash)}, "\n")
}

// acs3Encode percent-encodes s as JavaScript's encodeURIComponent with
// !'()* escaped too: everything but A-Z a-z 0-9 - _ . ~.
func acs3Encode(s string) string {
	return strings.ReplaceAll(url.QueryEscape(s), "+", "%20")
}

// freshNonce records sr's nonce and reports whether it was new. Nonces
// older than the skew window are forgotten (a request that old is refused
// by its date); past maxNonces the oldest half goes.
func (v *ACS3Verifier) freshNonce(sr *acs3Request, now time.Time) bool {
	id := sr.keyID + "\x00" + sr.nonce
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.nonces == nil {
		v.nonces = map[string]time.Time{}
	}
	if _, seen := v.nonces[id]; seen {
		return false
	}
	if len(v.nonces) >= maxNonces {
		for k, d := range v.nonces {
			if d.Before(now.Add(-ACS3MaxSkew)) || len(v.nonces) >= maxNonces/2 {
				delete(v.nonces, k)
			}
		}
	}
	v.nonces[id] = sr.date
	return true
}
