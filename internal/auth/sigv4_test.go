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
