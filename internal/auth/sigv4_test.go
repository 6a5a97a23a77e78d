package auth

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
)

const (
	testKeyID  = "NIMBUSTESTKEY0000001"
	testSecret = "s3cr3t/with+chars=="
)

func testVerifier(now time.Time) *Verifier {
	return &Verifier{
		Region: "us-east-1", Service: "lambda", MaxBody: 1 << 20,
		Now: func() time.Time { return now },
		Secrets: func(id string) (string, Principal, bool) {
			if id == testKeyID {
				return testSecret, Principal{Name: "k", AccessKeyID: id, Role: Developer, Functions: "*"}, true
			}
			return "", Principal{}, false
		},
	}
}

// serve passes the request through a real HTTP server, so the verifier sees
// what Go's server makes of the bytes a client sent.
func serve(t *testing.T, v *Verifier, allowUnsigned bool, send func(url string) *http.Request) error {
	t.Helper()
	var got error
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, got = v.Verify(r, allowUnsigned)
		if got == nil && r.Body != nil {
			b, _ := io.ReadAll(r.Body)
			w.Header().Set("X-Body-Len", strings.TrimSpace(string(rune('0'+len(b)%10))))
		}
	}))
	defer srv.Close()
	req := send(srv.URL)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return got
}

func signed(t *testing.T, method, url string, body []byte, region string, secret string, at time.Time, tweak func(*http.Request)) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Amz-Invocation-Type", "RequestResponse")
	sum := sha256.Sum256(body)
	creds := aws.Credentials{AccessKeyID: testKeyID, SecretAccessKey: secret}
	if err := v4.NewSigner().SignHTTP(context.Background(), creds, req, hex.EncodeToString(sum[:]), "lambda", region, at); err != nil {
		t.Fatal(err)
	}
	if tweak != nil {
		tweak(req)
	}
	return req
}

func TestVerifyGoSigner(t *testing.T) {
	now := time.Now().UTC()
	v := testVerifier(now)
	body := []byte(`{"hello":"world"}`)
	paths := []string{
		"/2015-03-31/functions/my-fn/invocations",
		"/2015-03-31/functions/arn%3Aaws%3Alambda%3Aus-east-1%3A000000000000%3Afunction%3Amy-fn/invocations?Qualifier=%24LATEST",
		"/2015-03-31/functions/?MaxItems=10&Marker=a%20b",
		"/nimbus/v1/functions/x/logs?since=2026-12-06T00%3A00%3A00Z&limit=5",
	}
	for _, p := range paths {
		if err := serve(t, v, false, func(u string) *http.Request { return signed(t, "POST", u+p, body, "us-east-1", testSecret, now, nil) }); err != nil {
			t.Errorf("%s: %v", p, err)
		}
		if err := serve(t, v, false, func(u string) *http.Request { return signed(t, "GET", u+p, nil, "us-east-1", testSecret, now, nil) }); err != nil {
			t.Errorf("GET %s: %v", p, err)
		}
	}
}

func TestVerifyRefuses(t *testing.T) {
	now := time.Now().UTC()
	v := testVerifier(now)
	url := "/2015-03-31/functions/f/invocations"
	body := []byte(`{"a":1}`)
	cases := []struct {
		name string
		req  func(u string) *http.Request
		typ  string
		msg  string
	}{
		{"anonymous", func(u string) *http.Request { r, _ := http.NewRequest("POST", u+url, bytes.NewReader(body)); return r },
			"MissingAuthenticationTokenException", "Missing Authentication Token"},
		{"wrong secret", func(u string) *http.Request { return signed(t, "POST", u+url, body, "us-east-1", "nope", now, nil) },
			"InvalidSignatureException", "does not match"},
		{"unknown key", func(u string) *http.Request {
			return signed(t, "POST", u+url, body, "us-east-1", testSecret, now, func(r *http.Request) {
				r.Header.Set("Authorization", strings.Replace(r.Header.Get("Authorization"), testKeyID, "AKIAUNKNOWN", 1))
			})
		}, "UnrecognizedClientException", "security token"},
		{"old", func(u string) *http.Request {
			return signed(t, "POST", u+url, body, "us-east-1", testSecret, now.Add(-6*time.Minute), nil)
		}, "InvalidSignatureException", "Signature expired"},
		{"future", func(u string) *http.Request {
			return signed(t, "POST", u+url, body, "us-east-1", testSecret, now.Add(6*time.Minute), nil)
		}, "InvalidSignatureException", "not yet current"},
		{"region", func(u string) *http.Request { return signed(t, "POST", u+url, body, "eu-west-1", testSecret, now, nil) },
			"InvalidSignatureException", "valid region"},
		{"body changed", func(u string) *http.Request {
			return signed(t, "POST", u+url, body, "us-east-1", testSecret, now, func(r *http.Request) {
				r.Body = io.NopCloser(strings.NewReader(`{"a":2}`))
			})
		}, "InvalidSignatureException", "does not match"},
		{"path changed", func(u string) *http.Request {
			r := signed(t, "POST", u+url, body, "us-east-1", testSecret, now, nil)
			r2 := signed(t, "POST", u+"/2015-03-31/functions/g/invocations", body, "us-east-1", testSecret, now, nil)
			r2.Header.Set("Authorization", r.Header.Get("Authorization"))
			r2.Header.Set("X-Amz-Date", r.Header.Get("X-Amz-Date"))
			return r2
		}, "InvalidSignatureException", "does not match"},
		{"signed header changed", func(u string) *http.Request {
			return signed(t, "POST", u+url, body, "us-east-1", testSecret, now, func(r *http.Request) {
				r.Header.Set("X-Amz-Invocation-Type", "Event")
			})
		}, "InvalidSignatureException", "does not match"},
		{"other algorithm", func(u string) *http.Request {
			r, _ := http.NewRequest("POST", u+url, bytes.NewReader(body))
			r.Header.Set("Authorization", "AWS AKID:sig")
			return r
		}, "IncompleteSignatureException", "algorithm"},
		{"no signature", func(u string) *http.Request {
			r, _ := http.NewRequest("POST", u+url, bytes.NewReader(body))
			r.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential="+testKeyID+"/20261206/us-east-1/lambda/aws4_request, SignedHeaders=host")
			return r
		}, "IncompleteSignatureException", "Signature"},
		{"host unsigned", func(u string) *http.Request {
			r, _ := http.NewRequest("POST", u+url, bytes.NewReader(body))
			r.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential="+testKeyID+"/20261206/us-east-1/lambda/aws4_request, SignedHeaders=x-amz-date, Signature=00")
			return r
		}, "IncompleteSignatureException", "Host"},
		{"unsigned payload on a write", func(u string) *http.Request {
			r, _ := http.NewRequest("POST", u+url, bytes.NewReader(body))
			r.Header.Set("X-Amz-Content-Sha256", "UNSIGNED-PAYLOAD")
			_ = v4.NewSigner().SignHTTP(context.Background(), aws.Credentials{AccessKeyID: testKeyID, SecretAccessKey: testSecret}, r, "UNSIGNED-PAYLOAD", "lambda", "us-east-1", now)
			return r
		}, "InvalidSignatureException", "UNSIGNED-PAYLOAD"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := serve(t, v, false, c.req)
			e, ok := err.(*Error)
			if !ok {
				t.Fatalf("err = %v, want *Error %s", err, c.typ)
			}
			if e.Type != c.typ || !strings.Contains(e.Message, c.msg) || e.Status != 403 {
				t.Fatalf("got %d %s %q, want 403 %s containing %q", e.Status, e.Type, e.Message, c.typ, c.msg)
			}
		})
	}
}

func TestVerifyUnsignedPayloadAndPresigned(t *testing.T) {
	now := time.Now().UTC()
	v := testVerifier(now)
	creds := aws.Credentials{AccessKeyID: testKeyID, SecretAccessKey: testSecret}
	err := serve(t, v, true, func(u string) *http.Request {
		r, _ := http.NewRequest("POST", u+"/2015-03-31/functions/f/invocations", strings.NewReader("{}"))
		r.Header.Set("X-Amz-Content-Sha256", "UNSIGNED-PAYLOAD")
		_ = v4.NewSigner().SignHTTP(context.Background(), creds, r, "UNSIGNED-PAYLOAD", "lambda", "us-east-1", now)
		return r
	})
	if err != nil {
		t.Fatalf("UNSIGNED-PAYLOAD on an invoke: %v", err)
	}
	presign := func(u string, at time.Time, expires string) *http.Request {
		r, _ := http.NewRequest("GET", u+"/2015-03-31/functions/f?Qualifier=1&X-Amz-Expires="+expires, nil)
		signedURL, _, err := v4.NewSigner().PresignHTTP(context.Background(), creds, r, "UNSIGNED-PAYLOAD", "lambda", "us-east-1", at)
		if err != nil {
			t.Fatal(err)
		}
		r2, _ := http.NewRequest("GET", signedURL, nil)
		return r2
	}
	if err := serve(t, v, false, func(u string) *http.Request { return presign(u, now, "300") }); err != nil {
		t.Fatalf("presigned: %v", err)
	}
	// Signed over the empty body's hash, as botocore presigns for services
	// other than S3.
	err = serve(t, v, false, func(u string) *http.Request {
		r, _ := http.NewRequest("GET", u+"/2015-03-31/functions/f?X-Amz-Expires=60", nil)
		signedURL, _, err := v4.NewSigner().PresignHTTP(context.Background(), creds, r, emptyHash, "lambda", "us-east-1", now)
		if err != nil {
			t.Fatal(err)
		}
		r2, _ := http.NewRequest("GET", signedURL, nil)
		return r2
	})
	if err != nil {
		t.Fatalf("presigned over the empty body's hash: %v", err)
	}
	err = serve(t, v, false, func(u string) *http.Request { return presign(u, now.Add(-10*time.Minute), "300") })
	if e, ok := err.(*Error); !ok || !strings.Contains(e.Message, "Signature expired") {
		t.Fatalf("expired presigned URL: %v", err)
	}
	err = serve(t, v, false, func(u string) *http.Request {
		r := presign(u, now, "300")
		r.URL.RawQuery = strings.Replace(r.URL.RawQuery, "Qualifier=1", "Qualifier=2", 1)
		return r
	})
	if e, ok := err.(*Error); !ok || e.Type != "InvalidSignatureException" {
		t.Fatalf("tampered presigned URL: %v", err)
	}
}

func TestVerifyBodyLimit(t *testing.T) {
	now := time.Now().UTC()
	v := testVerifier(now)
	v.MaxBody = 10
	err := serve(t, v, false, func(u string) *http.Request {
		return signed(t, "POST", u+"/x", bytes.Repeat([]byte("a"), 11), "us-east-1", testSecret, now, nil)
	})
	if e, ok := err.(*Error); !ok || e.Status != 413 {
		t.Fatalf("over-long body: %v", err)
	}
}

// FuzzVerify feeds arbitrary Authorization headers, paths and queries: the
// verifier answers with an *Error, never panics, and never accepts.
func FuzzVerify(f *testing.F) {
	f.Add("AWS4-HMAC-SHA256 Credential="+testKeyID+"/20261206/us-east-1/lambda/aws4_request, SignedHeaders=host;x-amz-date, Signature=abcd", "/a/b", "x=1", "20261206T000000Z")
	f.Add("AWS4-HMAC-SHA256 Credential=/////, SignedHeaders=;;host, Signature=", "/../..//", "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Expires=-1", "")
	f.Fuzz(func(t *testing.T, authz, path, query, date string) {
		now, _ := time.Parse(amzDateFormat, "20261206T000000Z")
		v := testVerifier(now)
		r := httptest.NewRequest("GET", "http://h/", nil)
		r.URL.Path, r.URL.RawQuery, r.RequestURI = path, query, path+"?"+query
		r.Header.Set("Authorization", authz)
		r.Header.Set("X-Amz-Date", date)
		p, err := v.Verify(r, false)
		if err == nil {
			t.Fatalf("accepted a forged request as %+v", p)
		}
		if _, ok := err.(*Error); !ok {
			t.Fatalf("error %T %v is not *Error", err, err)
		}
	})
}

// FuzzVerifyMutated signs a request correctly with aws-sdk-go-v2, then
// changes one byte of its method, path, query, a signed header or the
// body: the verifier must refuse it (or accept it only when the change
// leaves the canonical request as it was, which the fuzzer checks by
// rebuilding it).
func FuzzVerifyMutated(f *testing.F) {
	f.Add(uint8(0), uint16(0), uint8(1))
	f.Add(uint8(1), uint16(5), uint8('x'))
	f.Add(uint8(2), uint16(3), uint8('%'))
	f.Add(uint8(3), uint16(1), uint8(0xff))
	f.Add(uint8(4), uint16(2), uint8(' '))
	f.Add(uint8(5), uint16(40), uint8('0'))
	f.Fuzz(func(t *testing.T, part uint8, at uint16, with uint8) {
		now, _ := time.Parse(amzDateFormat, "20261206T000000Z")
		v := testVerifier(now)
		body := []byte(`{"name":"Ada","n":[1,2,3]}`)
		r := httptest.NewRequest("POST", "http://nimbus.local:9000/2015-03-31/functions/team-a-x/invocations?Qualifier=%24LATEST&b=2", bytes.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		r.Header.Set("X-Amz-Invocation-Type", "RequestResponse")
		sum := sha256.Sum256(body)
		creds := aws.Credentials{AccessKeyID: testKeyID, SecretAccessKey: testSecret}
		if err := v4.NewSigner().SignHTTP(context.Background(), creds, r, hex.EncodeToString(sum[:]), "lambda", "us-east-1", now); err != nil {
			t.Fatal(err)
		}
		r.RequestURI = r.URL.RequestURI()
		if _, err := v.Verify(r, false); err != nil {
			t.Fatalf("the correctly signed request: %v", err)
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		r.ContentLength = int64(len(body))
		mutate := func(s string) string {
			if s == "" {
				return string([]byte{with})
			}
			b := []byte(s)
			b[int(at)%len(b)] = with
			return string(b)
		}
		var before string
		switch part % 6 {
		case 0:
			before, r.Method = r.Method, mutate(r.Method)
		case 1:
			p, q, _ := strings.Cut(r.RequestURI, "?")
			before, r.RequestURI = r.RequestURI, mutate(p)+"?"+q
		case 2:
			before = r.URL.RawQuery
			r.URL.RawQuery = mutate(r.URL.RawQuery)
			p, _, _ := strings.Cut(r.RequestURI, "?")
			r.RequestURI = p + "?" + r.URL.RawQuery
		case 3:
			before = r.Header.Get("X-Amz-Invocation-Type")
			r.Header.Set("X-Amz-Invocation-Type", mutate(before))
		case 4:
			before, r.Host = r.Host, mutate(r.Host)
		case 5:
			b := []byte(mutate(string(body)))
			before = string(body)
			r.Body, r.ContentLength = io.NopCloser(bytes.NewReader(b)), int64(len(b))
		}
		p, err := v.Verify(r, false)
		if err == nil && !sameCanonical(part%6, before, r, body) {
			t.Fatalf("accepted a request changed after signing (part %d: %q) as %+v", part%6, before, p)
		}
		if _, ok := err.(*Error); err != nil && !ok {
			t.Fatalf("error %T %v is not *Error", err, err)
		}
	})
}

// sameCanonical reports whether a mutation left what SigV4 signs as it
// was: the same byte written back, a header value's spaces folded, a query
// or path byte that encodes to the same thing.
func sameCanonical(part uint8, before string, r *http.Request, body []byte) bool {
	switch part {
	case 0:
		return r.Method == before
	case 1:
		return r.RequestURI == before || normalizePath(wirePath(r)) == "/2015-03-31/functions/team-a-x/invocations"
	case 2:
		return canonicalQuery(r.URL.RawQuery, false) == canonicalQuery(before, false)
	case 3:
		return strings.Join(strings.Fields(r.Header.Get("X-Amz-Invocation-Type")), " ") == strings.Join(strings.Fields(before), " ")
	case 4:
		return r.Host == before
	case 5:
		b, _ := io.ReadAll(r.Body)
		return bytes.Equal(b, body)
	}
	return false
}

// BenchmarkVerify is the verifier alone on a signed invoke: the body hashed,
// the canonical request built, the signing key derived and the HMACs.
func BenchmarkVerify(b *testing.B) {
	now := time.Now().UTC()
	v := testVerifier(now)
	body := []byte(`{"sleep_ms":0}`)
	r := httptest.NewRequest("POST", "http://127.0.0.1:9000/2015-03-31/functions/noop/invocations", bytes.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	sum := sha256.Sum256(body)
	creds := aws.Credentials{AccessKeyID: testKeyID, SecretAccessKey: testSecret}
	if err := v4.NewSigner().SignHTTP(context.Background(), creds, r, hex.EncodeToString(sum[:]), "lambda", "us-east-1", now); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	// CPU time as well as wall time: on a shared machine the wall time
	// includes waiting for a core.
	cpu0 := cpuTime()
	for b.Loop() {
		r.Body, r.ContentLength = io.NopCloser(bytes.NewReader(body)), int64(len(body))
		if _, err := v.Verify(r, false); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N), "cpu-ns/op")
}

// cpuTime is the CPU time (user and system) this process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// TestVerifyCachedKeyFollowsSecret: the cached signing key of an access key
// is not used once the key's secret changed.
func TestVerifyCachedKeyFollowsSecret(t *testing.T) {
	now := time.Now().UTC()
	v := testVerifier(now)
	secret := testSecret
	v.Secrets = func(id string) (string, Principal, bool) {
		return secret, Principal{Name: "k", Role: Admin}, id == testKeyID
	}
	body := []byte(`{}`)
	send := func(u string) *http.Request {
		return signed(t, "POST", u+"/x", body, "us-east-1", testSecret, now, nil)
	}
	if err := serve(t, v, false, send); err != nil {
		t.Fatalf("signed with the secret: %v", err)
	}
	secret = "another secret"
	if err := serve(t, v, false, send); err == nil {
		t.Fatal("a request signed with the old secret was accepted after the secret changed")
	}
}
