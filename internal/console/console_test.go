package console_test

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"

	"github.com/nimbus-serverless/nimbus/internal/node"
)

// TestLogin: the console asks for a login; a wrong secret, an unknown key
// and a form without its token are refused with a message; the right key
// opens a session in an HttpOnly, SameSite=Strict cookie scoped to the
// console, and sends the visitor where they were going; signing out ends
// it.
func TestLogin(t *testing.T) {
	s := startSite(t, nil)
	b := s.browser(t)
	res, _ := b.get("/console/functions?sort=memory")
	if res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != "/console/login?next=%2Fconsole%2Ffunctions%3Fsort%3Dmemory" {
		t.Fatalf("without a session: %d %s", res.StatusCode, res.Header.Get("Location"))
	}
	res, page := b.login(s.admin.AccessKeyID, "wrong")
	if res.StatusCode != http.StatusUnauthorized {
		t.Fatalf("wrong secret: %d", res.StatusCode)
	}
	mustContain(t, "wrong secret", page, "The access key id or secret is not right.", s.admin.AccessKeyID)
	if res, _ = b.login("NIMBUSNOSUCHKEY00000", s.admin.SecretAccessKey); res.StatusCode != http.StatusUnauthorized {
		t.Fatalf("unknown key: %d", res.StatusCode)
	}
	res, page = b.do("POST", "/console/login", url.Values{"access_key_id": {s.admin.AccessKeyID}, "secret_access_key": {s.admin.SecretAccessKey}}, nil)
	if res.StatusCode != http.StatusForbidden || !strings.Contains(page, "form expired") {
		t.Fatalf("no token: %d %s", res.StatusCode, page)
	}
	res, _ = b.login(s.admin.AccessKeyID, s.admin.SecretAccessKey)
	if res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != "/console/functions" {
		t.Fatalf("login: %d %s", res.StatusCode, res.Header.Get("Location"))
	}
	var ck *http.Cookie
	for _, c := range res.Cookies() {
		if c.Name == "nimbus_session" {
			ck = c
		}
	}
	if ck == nil || !ck.HttpOnly || ck.SameSite != http.SameSiteStrictMode || ck.Path != "/console/" || ck.MaxAge <= 0 {
		t.Fatalf("session cookie: %+v", ck)
	}
	if strings.Contains(ck.Value, s.admin.SecretAccessKey) {
		t.Fatal("the cookie carries the secret")
	}
	res, page = b.get("/console/functions")
	if res.StatusCode != http.StatusOK {
		t.Fatalf("functions after login: %d %s", res.StatusCode, page)
	}
	mustContain(t, "functions page", page, "No functions yet", "Sign out")
	res, _ = b.do("POST", "/console/logout", url.Values{"csrf": {token(t, page)}}, nil)
	if res.StatusCode != http.StatusSeeOther {
		t.Fatalf("logout: %d", res.StatusCode)
	}
	if res, _ = b.get("/console/functions"); res.StatusCode != http.StatusSeeOther {
		t.Fatalf("after logout: %d", res.StatusCode)
	}
}

// TestSessionFollowsTheKey: a tampered cookie is no session, and deleting
// a key ends its sessions at once.
func TestSessionFollowsTheKey(t *testing.T) {
	s := startSite(t, nil)
	var key struct{ AccessKeyId, SecretAccessKey string }
	if code := s.api(t, s.admin, "POST", "/nimbus/v1/keys", map[string]string{"name": "ops", "role": "developer", "functions": "*"}, &key); code != http.StatusCreated {
		t.Fatalf("create key: %d %+v", code, key)
	}
	b := s.browser(t)
	if res, _ := b.login(key.AccessKeyId, key.SecretAccessKey); res.StatusCode != http.StatusSeeOther {
		t.Fatalf("login: %d", res.StatusCode)
	}
	if res, _ := b.get("/console/functions"); res.StatusCode != http.StatusOK {
		t.Fatalf("with a session: %d", res.StatusCode)
	}
	u, _ := url.Parse(s.base + "/console/")
	cks := b.c.Jar.Cookies(u)
	tampered := *cks[0]
	tampered.Value = strings.Replace(tampered.Value, "e", "f", 1)
	b2 := s.browser(t)
	b2.c.Jar.SetCookies(u, []*http.Cookie{&tampered})
	if res, _ := b2.get("/console/functions"); res.StatusCode != http.StatusSeeOther {
		t.Fatalf("tampered cookie: %d", res.StatusCode)
	}
	if code := s.api(t, s.admin, "DELETE", "/nimbus/v1/keys/ops", nil, nil); code/100 != 2 {
		t.Fatalf("delete key: %d", code)
	}
	if res, _ := b.get("/console/functions"); res.StatusCode != http.StatusSeeOther {
		t.Fatalf("after the key's deletion: %d", res.StatusCode)
	}
}

// TestRestrictedKey: a key limited to some functions sees only those in
// the list and is refused the page of another, as by the API.
func TestRestrictedKey(t *testing.T) {
	s := startSite(t, nil)
	s.deploy(t, s.admin, "team-a-api")
	s.deploy(t, s.admin, "billing")
	var key struct{ AccessKeyId, SecretAccessKey string }
	if code := s.api(t, s.admin, "POST", "/nimbus/v1/keys", map[string]string{"name": "team-a", "role": "developer", "functions": "team-a-*"}, &key); code != http.StatusCreated {
		t.Fatalf("create key: %d", code)
	}
	b := s.browser(t)
	b.login(key.AccessKeyId, key.SecretAccessKey)
	_, page := b.get("/console/functions")
	mustContain(t, "restricted list", page, "team-a-api", "1 of 1 functions")
	if strings.Contains(page, "billing") {
		t.Fatal("a restricted key sees another team's function")
	}
	res, page := b.get("/console/functions/billing")
	if res.StatusCode != http.StatusForbidden || !strings.Contains(page, "not authorized") {
		t.Fatalf("another's function: %d %s", res.StatusCode, page)
	}
	if res, _ = b.get("/console/functions/team-a-api"); res.StatusCode != http.StatusOK {
		t.Fatalf("its own function: %d", res.StatusCode)
	}
}

// TestCSRF: a console action without the session's token, or from another
// site, is refused; with them it runs.
func TestCSRF(t *testing.T) {
	s := startSite(t, nil)
	s.deploy(t, s.admin, "echo")
	b := s.browser(t)
	b.login(s.admin.AccessKeyID, s.admin.SecretAccessKey)
	_, page := b.get("/console/functions/echo")
	tok := token(t, page)
	form := url.Values{"payload": {`{"x":1}`}}
	if res, _ := b.do("POST", "/console/functions/echo/invoke", form, nil); res.StatusCode != http.StatusForbidden {
		t.Fatalf("no token: %d", res.StatusCode)
	}
	form.Set("csrf", "forged")
	if res, _ := b.do("POST", "/console/functions/echo/invoke", form, nil); res.StatusCode != http.StatusForbidden {
		t.Fatalf("forged token: %d", res.StatusCode)
	}
	form.Set("csrf", tok)
	if res, _ := b.do("POST", "/console/functions/echo/invoke", form, map[string]string{"Origin": "http://evil.example"}); res.StatusCode != http.StatusForbidden {
		t.Fatalf("other origin: %d", res.StatusCode)
	}
	res, out := b.do("POST", "/console/functions/echo/invoke", form, map[string]string{"HX-Request": "true", "Origin": s.base})
	if res.StatusCode != http.StatusOK || res.Header.Get("HX-Trigger") != "invoked" {
		t.Fatalf("invoke: %d %v %s", res.StatusCode, res.Header, out)
	}
	mustContain(t, "invoke result", out, "Succeeded", `{&#34;echo&#34;: {&#34;x&#34;: 1}}`, "hello from echo", "REPORT RequestId")
	res, out = b.do("POST", "/console/functions/echo/invoke", url.Values{"csrf": {tok}, "payload": {`{"fail": true}`}}, map[string]string{"HX-Request": "true"})
	mustContain(t, "failed invoke", out, "Failed: Unhandled", "asked to fail")
	res, out = b.do("POST", "/console/functions/echo/invoke", url.Values{"csrf": {tok}, "payload": {`{not json`}}, map[string]string{"HX-Request": "true"})
	mustContain(t, "bad payload", out, "not valid JSON")
}

// TestBadRequests: bad parameters and unknown pages answer a page that
// says what is wrong, with the right status.
func TestBadRequests(t *testing.T) {
	s := startSite(t, nil)
	s.deploy(t, s.admin, "echo")
	b := s.browser(t)
	b.login(s.admin.AccessKeyID, s.admin.SecretAccessKey)
	for _, c := range []struct {
		path string
		code int
		want string
	}{
		{"/console/nope", 404, "There is no console page at /console/nope."},
		{"/console/functions/missing", 404, "Function not found"},
		{"/console/functions/bad%20name", 400, ""},
		{"/console/usage?from=yesterday", 400, "from must be a date such as 2026-12-01"},
		{"/console/usage?from=2026-12-05&to=2026-12-01", 400, "is before from"},
		{"/console/usage.csv?to=x", 400, "to must be a date"},
		{"/console/functions/echo/logs?since=soon", 400, "since must be a time"},
		{"/console/functions/echo?window=1y", 200, `aria-current="true" data-window="1h"`},
	} {
		res, page := b.get(c.path)
		if res.StatusCode != c.code || !strings.Contains(page, c.want) {
			t.Errorf("GET %s = %d, want %d with %q:\n%s", c.path, res.StatusCode, c.code, c.want, page)
		}
	}
}

// TestAuthOff: with --auth none the console asks for no login.
func TestAuthOff(t *testing.T) {
	s := startSite(t, func(c *node.Config) { c.Auth = node.AuthNone })
	b := s.browser(t)
	res, page := b.get("/console/functions")
	if res.StatusCode != http.StatusOK || strings.Contains(page, "Sign out") {
		t.Fatalf("auth none: %d %s", res.StatusCode, page)
	}
	if res, _ = b.get("/console/login"); res.StatusCode != http.StatusSeeOther {
		t.Fatalf("login page with auth none: %d", res.StatusCode)
	}
}

// TestNoConsole: --no-console leaves /console/ to the API, which knows no
// such route.
func TestNoConsole(t *testing.T) {
	s := startSite(t, func(c *node.Config) { c.NoConsole = true })
	res, page := s.browser(t).get("/console/")
	if res.StatusCode != http.StatusNotFound && res.StatusCode != http.StatusForbidden || strings.Contains(page, "<html") {
		t.Fatalf("--no-console: %d %s", res.StatusCode, page)
	}
}

// TestAssets: the embedded assets are served with an ETag that a
// revalidation matches, and the vendored libraries' licences are there.
func TestAssets(t *testing.T) {
	s := startSite(t, func(c *node.Config) { c.Auth = node.AuthNone })
	b := s.browser(t)
	for _, p := range []string{"console.js", "console.css", "vendor/htmx-2.0.11/htmx.min.js", "vendor/htmx-2.0.11/LICENSE",
		"vendor/uplot-1.6.32/uPlot.iife.min.js", "vendor/uplot-1.6.32/LICENSE"} {
		res, body := b.get("/console/assets/" + p)
		tag := res.Header.Get("ETag")
		if res.StatusCode != http.StatusOK || tag == "" || len(body) == 0 {
			t.Fatalf("%s: %d etag %q", p, res.StatusCode, tag)
		}
		if res, _ = b.do("GET", "/console/assets/"+p, nil, map[string]string{"If-None-Match": tag}); res.StatusCode != http.StatusNotModified {
			t.Fatalf("%s revalidated: %d", p, res.StatusCode)
		}
	}
	res, page := b.get("/console/")
	csp := res.Header.Get("Content-Security-Policy")
	if !strings.Contains(csp, "script-src 'self'") || res.Header.Get("X-Frame-Options") != "DENY" {
		t.Fatalf("headers: %v", res.Header)
	}
	mustContain(t, "overview", page, "/console/assets/vendor/htmx-2.0.11/htmx.min.js")
}

// TestBadForms: a test invoke's form too large for any event is refused
// (never run with an empty event), and forms that lack their field are
// refused rather than given a default.
func TestBadForms(t *testing.T) {
	s := startSite(t, nil)
	s.deploy(t, s.admin, "echo")
	b := s.browser(t)
	b.login(s.admin.AccessKeyID, s.admin.SecretAccessKey)
	_, page := b.get("/console/functions/echo")
	tok := token(t, page)
	htmx := map[string]string{"HX-Request": "true", "X-CSRF-Token": tok}
	huge := url.Values{"payload": {`{"x":"` + strings.Repeat("%", 7<<20) + `"}`}}
	res, out := b.do("POST", "/console/functions/echo/invoke", huge, htmx)
	if res.StatusCode != http.StatusRequestEntityTooLarge || !strings.Contains(out, "at most 6 MB") {
		t.Fatalf("a 21 MB form: %d %s", res.StatusCode, out)
	}
	res, out = b.do("POST", "/console/functions/echo/invoke", url.Values{"event": {"{}"}}, htmx)
	if res.StatusCode != http.StatusBadRequest || !strings.Contains(out, "no payload field") {
		t.Fatalf("no payload: %d %s", res.StatusCode, out)
	}
	res, out = b.do("POST", "/console/functions/echo/dead-letters/redrive", url.Values{}, htmx)
	if res.StatusCode != http.StatusBadRequest || !strings.Contains(out, "no seq field") {
		t.Fatalf("redrive without seq: %d %s", res.StatusCode, out)
	}
	res, out = b.do("POST", "/console/functions/echo/dead-letters/redrive", url.Values{"seq": {"x"}}, htmx)
	if res.StatusCode != http.StatusBadRequest {
		t.Fatalf("redrive of seq x: %d %s", res.StatusCode, out)
	}
	res, out = b.do("POST", "/console/functions/echo/triggers/t1/explode", url.Values{}, htmx)
	if res.StatusCode != http.StatusNotFound {
		t.Fatalf("a trigger action that is none: %d %s", res.StatusCode, out)
	}
	// A function's page by ARN goes to its own address.
	res, _ = b.get("/console/functions/arn:aws:lambda:us-east-1:000000000000:function:echo?window=24h")
	if res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != "/console/functions/echo?window=24h" {
		t.Fatalf("by ARN: %d %s", res.StatusCode, res.Header.Get("Location"))
	}
}

// TestOverviewNodeFigures: the node's instances and memory (every
// function's) are shown to admin keys only, as /metrics is.
func TestOverviewNodeFigures(t *testing.T) {
	s := startSite(t, nil)
	var key struct{ AccessKeyId, SecretAccessKey string }
	if code := s.api(t, s.admin, "POST", "/nimbus/v1/keys", map[string]string{"name": "dev", "role": "developer", "functions": "team-*"}, &key); code != http.StatusCreated {
		t.Fatalf("create key: %d", code)
	}
	admin, dev := s.browser(t), s.browser(t)
	admin.login(s.admin.AccessKeyID, s.admin.SecretAccessKey)
	dev.login(key.AccessKeyId, key.SecretAccessKey)
	_, page := admin.get("/console/")
	mustContain(t, "admin overview", page, "<dt>Instances</dt>", "<dt>Memory</dt>")
	_, page = dev.get("/console/")
	mustContain(t, "developer overview", page, "<dt>Version</dt>", `id="node-admin-only"`)
	if strings.Contains(page, "<dt>Instances</dt>") {
		t.Fatal("a developer key sees the node's instances")
	}
}

// TestLoginLinkLifetime: a login link is valid for at most 5 minutes from
// now, whatever date it claims; it only asks to confirm the sign-in (a
// GET signs nobody in).
func TestLoginLinkLifetime(t *testing.T) {
	s := startSite(t, nil)
	link := func(at time.Time, expires int) string {
		req, _ := http.NewRequest("GET", s.base+"/console/login/link?X-Amz-Expires="+strconv.Itoa(expires), nil)
		u, _, err := v4.NewSigner().PresignHTTP(t.Context(), s.admin, req,
			"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", "lambda", "us-east-1", at)
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimPrefix(u, s.base)
	}
	b := s.browser(t)
	res, page := b.get(link(time.Now().Add(4*time.Minute), 300))
	if res.StatusCode != http.StatusForbidden || !strings.Contains(page, "at most 5 minutes") {
		t.Fatalf("a link dated 4 minutes ahead, for 5: %d %s", res.StatusCode, page)
	}
	res, page = b.get(link(time.Now(), 60))
	if res.StatusCode != http.StatusOK || !strings.Contains(page, `id="link-confirm"`) {
		t.Fatalf("a link for a minute: %d %s", res.StatusCode, page)
	}
	if res, _ = b.get("/console/functions"); res.StatusCode != http.StatusSeeOther {
		t.Fatalf("the link's page signed the browser in by itself: %d", res.StatusCode)
	}
}
