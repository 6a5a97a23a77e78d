package console_test

import (
	"context"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"

	"github.com/nimbus-serverless/nimbus/internal/node"
	"github.com/nimbus-serverless/nimbus/internal/node/nodetest"
)

// site is a node with authentication on and the admin key it wrote.
type site struct {
	n     *node.Node
	base  string
	admin aws.Credentials
}

// startSite starts a node with authentication on (mod may change its
// config further).
func startSite(t *testing.T, mod func(*node.Config)) *site {
	t.Helper()
	if testing.Short() {
		t.Skip("starts a node")
	}
	var dir string
	var mode string
	n := nodetest.Start(t, func(c *node.Config) {
		c.Auth, c.PrestartedHelpers = node.AuthSigV4, 0
		if mod != nil {
			mod(c)
		}
		dir, mode = c.DataDir, c.Auth
	})
	s := &site{n: n, base: nodetest.Endpoint(n)}
	if mode == node.AuthSigV4 {
		s.admin = credentialsIn(t, filepath.Join(dir, "credentials"))
	}
	return s
}

func credentialsIn(t *testing.T, path string) aws.Credentials {
	t.Helper()
	sc, err := config.LoadSharedConfigProfile(context.Background(), "nimbus", func(o *config.LoadSharedConfigOptions) {
		o.CredentialsFiles, o.ConfigFiles = []string{path}, []string{}
	})
	if err != nil || !sc.Credentials.HasKeys() {
		t.Fatalf("profile nimbus of %s: %v", path, err)
	}
	return sc.Credentials
}

// api sends a SigV4-signed API request and decodes a JSON answer into out.
func (s *site) api(t *testing.T, creds aws.Credentials, method, path string, body any, out any) int {
	t.Helper()
	return nodetest.Call(t, s.base, creds, method, path, body, out)
}

// deploy creates a Python function that logs a line and echoes its event.
func (s *site) deploy(t *testing.T, creds aws.Credentials, name string) {
	t.Helper()
	zip := nodetest.Zip(t, map[string]string{"lambda_function.py": `
import json
def handler(event, context):
    print("hello from " + context.function_name)
    if isinstance(event, dict) and event.get("fail"):
        raise ValueError("asked to fail")
    return {"echo": event}
`})
	body := map[string]any{"FunctionName": name, "Runtime": "python3.11", "Handler": "lambda_function.handler",
		"Role": "arn:aws:iam::000000000000:role/x", "Code": map[string]any{"ZipFile": zip}}
	var out map[string]any
	if code := s.api(t, creds, "POST", "/2015-03-31/functions", body, &out); code != http.StatusCreated {
		t.Fatalf("create %s = %d %v", name, code, out)
	}
}

// browser is a cookie-keeping HTTP client of the console (no JavaScript).
type browser struct {
	t    *testing.T
	base string
	c    *http.Client
}

func (s *site) browser(t *testing.T) *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{t: t, base: s.base, c: &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	}}}
}

// do sends a request and returns the answer with its body read.
func (b *browser) do(method, path string, form url.Values, hdr map[string]string) (*http.Response, string) {
	b.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequestWithContext(b.t.Context(), method, b.base+path, body)
	if err != nil {
		b.t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	res, err := b.c.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer res.Body.Close()
	rb, _ := io.ReadAll(res.Body)
	return res, string(rb)
}

func (b *browser) get(path string) (*http.Response, string) { return b.do("GET", path, nil, nil) }

var csrfInput = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// token is the CSRF token in a page.
func token(t *testing.T, page string) string {
	t.Helper()
	m := csrfInput.FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("no CSRF token in the page:\n%s", page)
	}
	return m[1]
}

// login signs in with creds and returns the login answer.
func (b *browser) login(id, secret string) (*http.Response, string) {
	b.t.Helper()
	_, page := b.get("/console/login")
	return b.do("POST", "/console/login", url.Values{"csrf": {token(b.t, page)}, "next": {"/console/functions"},
		"access_key_id": {id}, "secret_access_key": {secret}}, nil)
}

func mustContain(t *testing.T, what, page string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(page, w) {
			t.Fatalf("%s lacks %q:\n%s", what, w, page)
		}
	}
}
