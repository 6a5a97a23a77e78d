package auth

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The parts of SigV4 a verifier reads.
const (
	algorithm       = "AWS4-HMAC-SHA256"
	unsignedPayload = "UNSIGNED-PAYLOAD"
	amzDateFormat   = "20060102T150405Z"
	// MaxSkew is how far a request's date may be from the verifier's clock.
	MaxSkew = 5 * time.Minute
	// maxPresignExpiry is SigV4's longest presigned URL (7 days).
	maxPresignExpiry = 7 * 24 * time.Hour
)

var emptyHash = hex.EncodeToString(sha256.New().Sum(nil))

// Secrets finds the secret of an access key id, and the principal it
// stands for; ok is false for an unknown key.
type Secrets func(accessKeyID string) (secret string, p Principal, ok bool)

// Verifier checks AWS Signature Version 4 on requests: the Authorization
// header or a presigned query string, the payload hash, the clock skew and
// the credential scope's region and service.
//
// The canonical request is rebuilt from the request as received (the
// headers the client says it signed, the path bytes it sent), so the
// verifier does not depend on which headers a given signer chooses to sign.
type Verifier struct {
	Region  string
	Service string // "lambda"
	Secrets Secrets
	// MaxBody caps a body read to check its hash; a longer one is refused
	// with 413.
	MaxBody int64
	// Now is the clock (time.Now when nil).
	Now func() time.Time

	// derived caches signing keys (four HMACs each) by key id and scope:
	// a key signs all day with the same one.
	mu      sync.Mutex
	derived map[string]derivedKey
}

// derivedKey is a signing key and the secret it was derived from.
type derivedKey struct {
	secret string
	key    []byte
}

// maxDerived bounds the signing keys a Verifier caches.
const maxDerived = 4096

// signingKey returns the signing key of secret for sr's scope, from the
// cache when it holds it.
func (v *Verifier) signingKey(secret string, sr *sigRequest) []byte {
	id := sr.keyID + "/" + sr.date + "/" + sr.region + "/" + sr.service
	v.mu.Lock()
	d, ok := v.derived[id]
	v.mu.Unlock()
	if ok && d.secret == secret {
		return d.key
	}
	key := signingKey(secret, sr.date, sr.region, sr.service)
	v.mu.Lock()
	if v.derived == nil || len(v.derived) >= maxDerived {
		v.derived = map[string]derivedKey{}
	}
	v.derived[id] = derivedKey{secret, key}
	v.mu.Unlock()
	return key
}

// sigRequest is the signature part of a request, from its Authorization
// header or its query string.
type sigRequest struct {
	keyID, date, region, service string // credential scope
	signedHeaders                []string
	signature                    string
	amzDate                      time.Time
	expires                      time.Duration // presigned only
	presigned                    bool
	payloadHash                  string // "" when the body must be hashed
}

// Verify checks r's signature and returns the key's principal. When the
// payload hash must be checked the body is read (at most MaxBody bytes) and
// r.Body replaced by a reader of what was read. allowUnsigned permits the
// UNSIGNED-PAYLOAD payload hash (operations whose body carries no setting:
// Nimbus allows it on invokes and on requests with no body). Errors are
// *Error, in Lambda's terms.
func (v *Verifier) Verify(r *http.Request, allowUnsigned bool) (Principal, error) {
	sr, err := parseSig(r)
	if err != nil {
		return Principal{}, err
	}
	if err := v.checkScope(sr); err != nil {
		return Principal{}, err
	}
	if err := v.checkTime(sr); err != nil {
		return Principal{}, err
	}
	secret, p, ok := v.Secrets(sr.keyID)
	if !ok {
		return Principal{}, errUnknownKey
	}
	hashes, err := v.payloadHashes(r, sr, allowUnsigned)
	if err != nil {
		return Principal{}, err
	}
	want, err := hex.DecodeString(sr.signature)
	if err != nil {
		return Principal{}, errSignature
	}
	key := v.signingKey(secret, sr)
	for _, hash := range hashes {
		for _, canon := range canonicalRequests(r, sr, hash) {
			if hmac.Equal(want, signature(key, sr, canon)) {
				return p, nil
			}
		}
	}
	return Principal{}, errSignature
}

// parseSig reads the signature from the Authorization header, or from the
// query string of a presigned URL.
func parseSig(r *http.Request) (*sigRequest, error) {
	if h := r.Header.Get("Authorization"); h != "" {
		return parseHeader(r, h)
	}
	if r.URL.Query().Get("X-Amz-Algorithm") != "" {
		return parsePresigned(r)
	}
	return nil, errMissing
}

func parseHeader(r *http.Request, h string) (*sigRequest, error) {
	alg, rest, _ := strings.Cut(strings.TrimSpace(h), " ")
	if alg != algorithm {
		return nil, incomplete("Unsupported AWS 'algorithm': '" + alg + "'")
	}
	fields, missing := authFields(rest)
	if missing != "" {
		return nil, incomplete("Authorization header requires '" + missing + "' parameter. Authorization=" + algorithm)
	}
	sr := &sigRequest{signature: fields["Signature"]}
	if err := sr.setCredential(fields["Credential"]); err != nil {
		return nil, err
	}
	if err := sr.setSignedHeaders(fields["SignedHeaders"]); err != nil {
		return nil, err
	}
	d, err := requestDate(r)
	if err != nil {
		return nil, err
	}
	sr.amzDate = d
	if ph := r.Header.Get("X-Amz-Content-Sha256"); ph != "" {
		sr.payloadHash = ph
	}
	return sr, nil
}

func parsePresigned(r *http.Request) (*sigRequest, error) {
	q := r.URL.Query()
	if alg := q.Get("X-Amz-Algorithm"); alg != algorithm {
		return nil, incomplete("Unsupported AWS 'algorithm': '" + alg + "'")
	}
	for _, k := range []string{"X-Amz-Credential", "X-Amz-SignedHeaders", "X-Amz-Signature", "X-Amz-Date", "X-Amz-Expires"} {
		if q.Get(k) == "" {
			return nil, incomplete("AWS query-string parameters must include '" + k + "'. Re-examine the query-string parameters.")
		}
	}
	sr := &sigRequest{signature: q.Get("X-Amz-Signature"), presigned: true}
	if err := sr.setCredential(q.Get("X-Amz-Credential")); err != nil {
		return nil, err
	}
	if err := sr.setSignedHeaders(q.Get("X-Amz-SignedHeaders")); err != nil {
		return nil, err
	}
	d, err := time.Parse(amzDateFormat, q.Get("X-Amz-Date"))
	if err != nil {
		return nil, incomplete("Invalid format for X-Amz-Date: " + q.Get("X-Amz-Date"))
	}
	sr.amzDate = d
	secs, err := strconv.Atoi(q.Get("X-Amz-Expires"))
	if err != nil || secs < 0 || time.Duration(secs)*time.Second > maxPresignExpiry {
		return nil, incomplete("X-Amz-Expires must be a whole number of seconds from 0 to 604800")
	}
	sr.expires = time.Duration(secs) * time.Second
	if ph := q.Get("X-Amz-Content-Sha256"); ph != "" {
		sr.payloadHash = ph
	}
	return sr, nil
}

func (sr *sigRequest) setCredential(c string) error {
	parts := strings.Split(c, "/")
	if len(parts) != 5 || parts[4] != "aws4_request" || parts[0] == "" {
		return incomplete("Credential should be scoped to a valid region, and contain 5 parts: <key>/<date>/<region>/<service>/aws4_request. Got '" + c + "'")
	}
	sr.keyID, sr.date, sr.region, sr.service = parts[0], parts[1], parts[2], parts[3]
	return nil
}

func (sr *sigRequest) setSignedHeaders(s string) error {
	hs := strings.Split(strings.ToLower(s), ";")
	if !slices.Contains(hs, "host") {
		return incomplete("'Host' must be a 'SignedHeader' in the AWS Authorization.")
	}
	sr.signedHeaders = hs
	return nil
}

// requestDate is X-Amz-Date, or the Date header (RFC 1123).
func requestDate(r *http.Request) (time.Time, error) {
	if s := r.Header.Get("X-Amz-Date"); s != "" {
		d, err := time.Parse(amzDateFormat, s)
		if err != nil {
			return time.Time{}, incomplete("Invalid format for X-Amz-Date: " + s)
		}
		return d, nil
	}
	if s := r.Header.Get("Date"); s != "" {
		d, err := http.ParseTime(s)
		if err != nil {
			return time.Time{}, incomplete("Invalid format for Date: " + s)
		}
		return d.UTC(), nil
	}
	return time.Time{}, incomplete("Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header. Authorization=" + algorithm)
}

func (v *Verifier) checkScope(sr *sigRequest) error {
	if sr.region != v.Region {
		return invalid("Credential should be scoped to a valid region. ")
	}
	if sr.service != v.Service {
		return invalid("Credential should be scoped to correct service: '" + v.Service + "'. ")
	}
	if d := sr.amzDate.Format("20060102"); sr.date != d {
		return invalid("Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '" + sr.date + "' != '" + d + "', from '" + sr.amzDate.Format(amzDateFormat) + "'.")
	}
	return nil
}

func (v *Verifier) checkTime(sr *sigRequest) error {
	now := time.Now
	if v.Now != nil {
		now = v.Now
	}
	t := now().UTC()
	f := func(x time.Time) string { return x.Format(amzDateFormat) }
	if sr.presigned {
		if t.After(sr.amzDate.Add(sr.expires)) {
			return invalid("Signature expired: " + f(sr.amzDate.Add(sr.expires)) + " is now earlier than " + f(t) + ".")
		}
		if sr.amzDate.After(t.Add(MaxSkew)) {
			return invalid("Signature not yet current: " + f(sr.amzDate) + " is still later than " + f(t.Add(MaxSkew)) + " (" + f(t) + " + 5 min.)")
		}
		return nil
	}
	if sr.amzDate.Before(t.Add(-MaxSkew)) {
		return invalid("Signature expired: " + f(sr.amzDate) + " is now earlier than " + f(t.Add(-MaxSkew)) + " (" + f(t) + " - 5 min.)")
	}
	if sr.amzDate.After(t.Add(MaxSkew)) {
		return invalid("Signature not yet current: " + f(sr.amzDate) + " is still later than " + f(t.Add(MaxSkew)) + " (" + f(t) + " + 5 min.)")
	}
	return nil
}

// payloadHashes returns the payload hashes the canonical request may end
// with, reading and checking the body when the signature covers it. A
// presigned URL that names no hash may have been signed with
// UNSIGNED-PAYLOAD (aws-sdk-go-v2's PresignHTTP, as for S3) or with the
// body's hash (botocore's generate_presigned_url, as SigV4 says for
// services other than S3): both are tried.
func (v *Verifier) payloadHashes(r *http.Request, sr *sigRequest, allowUnsigned bool) ([]string, error) {
	noBody := r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0
	unsignedOK := allowUnsigned || noBody
	switch {
	case sr.payloadHash == unsignedPayload:
		if !unsignedOK {
			return nil, invalid("This operation requires a signed payload; UNSIGNED-PAYLOAD is accepted only on invokes.")
		}
		return []string{unsignedPayload}, nil
	case strings.HasPrefix(sr.payloadHash, "STREAMING-"):
		return nil, invalid("Streaming (aws-chunked) payload signing is not supported by this service; sign the whole payload.")
	case sr.payloadHash != "" && !isHexHash(sr.payloadHash):
		return nil, invalid("x-amz-content-sha256 must be UNSIGNED-PAYLOAD or the hex SHA-256 of the payload.")
	}
	got := emptyHash
	if !noBody {
		body, err := readBody(r, v.MaxBody)
		if err != nil {
			return nil, err
		}
		sum := sha256.Sum256(body)
		got = hex.EncodeToString(sum[:])
	}
	if sr.payloadHash != "" && sr.payloadHash != got {
		return nil, invalid("The provided 'x-amz-content-sha256' header does not match what was computed.")
	}
	if sr.presigned && sr.payloadHash == "" && unsignedOK {
		return []string{got, unsignedPayload}, nil
	}
	return []string{got}, nil
}

func isHexHash(s string) bool {
	if len(s) != 64 {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil
}

// readBody reads r's body (at most limit bytes) and puts it back.
func readBody(r *http.Request, limit int64) ([]byte, error) {
	if limit <= 0 {
		limit = 1 << 20
	}
	if r.ContentLength > limit {
		return nil, tooLarge(limit)
	}
	b, err := readAtMost(r.Body, r.ContentLength, limit)
	r.Body.Close()
	if err != nil {
		return nil, &Error{Status: http.StatusBadRequest, Type: "InvalidRequestContentException", Message: "Could not read the request body: " + err.Error()}
	}
	if int64(len(b)) > limit {
		return nil, tooLarge(limit)
	}
	r.Body = io.NopCloser(bytes.NewReader(b))
	r.ContentLength = int64(len(b))
	return b, nil
}

// readAtMost reads body, of length n when n >= 0, up to limit+1 bytes. A
// body of known length is read into a buffer of exactly that size (a
// growing buffer would hold up to twice a large code upload).
func readAtMost(body io.Reader, n, limit int64) ([]byte, error) {
	if n < 0 {
		return io.ReadAll(io.LimitReader(body, limit+1))
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(body, b); err != nil {
		return nil, err
	}
	var one [1]byte
	if m, _ := body.Read(one[:]); m > 0 {
		return nil, errors.New("the body is longer than its Content-Length")
	}
	return b, nil
}

func tooLarge(limit int64) *Error {
	return &Error{Status: http.StatusRequestEntityTooLarge, Type: "RequestTooLargeException",
		Message: "Request must be smaller than " + strconv.FormatInt(limit, 10) + " bytes for this operation"}
}

// canonicalRequests returns the canonical requests the client may have
// signed: with the path normalized as botocore and the JavaScript SDK do
// (empty and "." segments dropped, ".." resolved) and as sent, as the Go
// SDK does; usually both are the same.
func canonicalRequests(r *http.Request, sr *sigRequest, payloadHash string) []string {
	wire := wirePath(r)
	paths := []string{uriEncode(normalizePath(wire), false)}
	if raw := uriEncode(wire, false); raw != paths[0] {
		paths = append(paths, raw)
	}
	query := canonicalQuery(r.URL.RawQuery, sr.presigned)
	headers := canonicalHeaders(r, sr.signedHeaders)
	signed := strings.Join(sr.signedHeaders, ";")
	out := make([]string, len(paths))
	for i, p := range paths {
		out[i] = strings.Join([]string{r.Method, p, query, headers, signed, payloadHash}, "\n")
	}
	return out
}

// wirePath is the request's path as the client sent it.
func wirePath(r *http.Request) string {
	if p, _, _ := strings.Cut(r.RequestURI, "?"); strings.HasPrefix(p, "/") {
		return p
	}
	if p := r.URL.EscapedPath(); p != "" {
		return p
	}
	return "/"
}

func normalizePath(p string) string {
	var segs []string
	for s := range strings.SplitSeq(p, "/") {
		switch s {
		case "", ".":
		case "..":
			if len(segs) > 0 {
				segs = segs[:len(segs)-1]
			}
		default:
			segs = append(segs, s)
		}
	}
	out := "/" + strings.Join(segs, "/")
	if strings.HasSuffix(p, "/") && out != "/" {
		out += "/"
	}
	return out
}

// canonicalQuery sorts the query's parameters by name and value, each
// encoded as SigV4 says; a presigned request's own signature is left out.
func canonicalQuery(raw string, presigned bool) string {
	if raw == "" {
		return ""
	}
	type kv struct{ k, v string }
	var params []kv
	for part := range strings.SplitSeq(raw, "&") {
		if part == "" {
			continue
		}
		k, v, _ := strings.Cut(part, "=")
		k, v = unescapeQuery(k), unescapeQuery(v)
		if presigned && k == "X-Amz-Signature" {
			continue
		}
		params = append(params, kv{uriEncode(k, true), uriEncode(v, true)})
	}
	slices.SortFunc(params, func(a, b kv) int {
		if c := strings.Compare(a.k, b.k); c != 0 {
			return c
		}
		return strings.Compare(a.v, b.v)
	})
	var b strings.Builder
	for i, p := range params {
		if i > 0 {
			b.WriteByte('&')
		}
		b.WriteString(p.k)
		b.WriteByte('=')
		b.WriteString(p.v)
	}
	return b.String()
}

func unescapeQuery(s string) string {
	if u, err := url.QueryUnescape(s); err == nil {
		return u
	}
	return s
}

// canonicalHeaders lists the signed headers, "name:value\n" each, values
// trimmed with inner runs of spaces folded, repeated headers joined by ",".
func canonicalHeaders(r *http.Request, names []string) string {
	var b strings.Builder
	for _, name := range names {
		b.WriteString(name)
		b.WriteByte(':')
		for i, v := range headerValues(r, name) {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(strings.Join(strings.Fields(v), " "))
		}
		b.WriteByte('\n')
	}
	return b.String()
}

// headerValues finds a header, including those Go's server keeps out of
// r.Header.
func headerValues(r *http.Request, name string) []string {
	switch name {
	case "host":
		return []string{r.Host}
	case "content-length":
		if vs := r.Header.Values(name); len(vs) > 0 {
			return vs
		}
		if r.ContentLength >= 0 {
			return []string{strconv.FormatInt(r.ContentLength, 10)}
		}
	case "transfer-encoding":
		if len(r.TransferEncoding) > 0 {
			return []string{strings.Join(r.TransferEncoding, ",")}
		}
	}
	return r.Header.Values(name)
}

// uriEncode percent-encodes every byte but SigV4's unreserved characters
// (and "/" unless encodeSlash).
func uriEncode(s string, encodeSlash bool) string {
	const hexd = "0123456789ABCDEF"
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.' || c == '~' || c == '/' && !encodeSlash {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hexd[c>>4])
		b.WriteByte(hexd[c&15])
	}
	return b.String()
}

func hmacSHA256(key []byte, data string) []byte {
	h := hmac.New(sha256.New, key)
	h.Write([]byte(data))
	return h.Sum(nil)
}

func signingKey(secret, date, region, service string) []byte {
	k := hmacSHA256([]byte("AWS4"+secret), date)
	k = hmacSHA256(k, region)
	k = hmacSHA256(k, service)
	return hmacSHA256(k, "aws4_request")
}

func signature(key []byte, sr *sigRequest, canonical string) []byte {
	sum := sha256.Sum256([]byte(canonical))
	toSign := algorithm + "\n" + sr.amzDate.Format(amzDateFormat) + "\n" +
		sr.date + "/" + sr.region + "/" + sr.service + "/aws4_request\n" + hex.EncodeToString(sum[:])
	return hmacSHA256(key, toSign)
}

// IsSigned reports whether r carries a SigV4 signature (header or query).
func IsSigned(r *http.Request) bool {
	return r.Header.Get("Authorization") != "" || r.URL.Query().Get("X-Amz-Algorithm") != ""
}

// authFields parses the comma-separated name=value fields of an
// Authorization header after its algorithm (SigV4's and ACS3's alike), and
// names the first of Credential, SignedHeaders and Signature that is
// missing or empty ("" when none is).
func authFields(rest string) (fields map[string]string, missing string) {
	fields = map[string]string{}
	for part := range strings.SplitSeq(rest, ",") {
		if k, val, ok := strings.Cut(strings.TrimSpace(part), "="); ok {
			fields[k] = val
		}
	}
	for _, k := range []string{"Credential", "SignedHeaders", "Signature"} {
		if fields[k] == "" {
			return fields, k
		}
	}
	return fields, ""
}
