package cli

import (
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/nimbus-serverless/nimbus/internal/node"
	"github.com/nimbus-serverless/nimbus/internal/node/nodetest"
)

// TestConsoleLink: `nimbus console` prints a login link signed with the
// CLI's key that opens a console session in a browser, the secret
// never in it.
func TestConsoleLink(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a node")
	}
	var dir string
	n := nodetest.Start(t, func(c *node.Config) { c.Auth, c.PrestartedHelpers, dir = node.AuthSigV4, 0, c.DataDir })
	endpoint := nodetest.Endpoint(n)
	id, secret := nodetest.Credentials(t, filepath.Join(dir, "credentials"))
	r := runCmd(t, endpoint, "", "console", "--access-key-id", id, "--secret-access-key", secret)
	link := strings.TrimSpace(r.stdout)
	if r.err != nil || !strings.HasPrefix(link, endpoint+"/console/login/link?") || !strings.Contains(link, "X-Amz-Expires=60") ||
		strings.Contains(link, secret) || !strings.Contains(r.stderr, "within a minute") {
		t.Fatalf("nimbus console: %v %q %q", r.err, r.stdout, r.stderr)
	}
	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Jar: jar}
	page := getPage(t, browser, link)
	if !strings.Contains(page, "Sign in as key <strong id=\"link-key\">admin</strong>") {
		t.Fatalf("the link's page asks nothing:\n%s", page)
	}
	res := confirm(t, browser, endpoint, page)
	if res.StatusCode != http.StatusOK || res.Request.URL.Path != "/console/" {
		t.Fatalf("confirming the link: %d at %s", res.StatusCode, res.Request.URL)
	}
	// A link signs in once.
	if res = confirm(t, browser, endpoint, page); res.StatusCode != http.StatusForbidden {
		t.Fatalf("a ticket confirmed twice: %d", res.StatusCode)
	}
	res, err := http.Get(link)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusForbidden {
		t.Fatalf("a used link: %d", res.StatusCode)
	}
	// With a function, the link opens its page.
	r = runCmd(t, endpoint, "", "console", "hello", "--access-key-id", id, "--secret-access-key", secret)
	jar2, _ := cookiejar.New(nil)
	b2 := &http.Client{Jar: jar2}
	res = confirm(t, b2, endpoint, getPage(t, b2, strings.TrimSpace(r.stdout)))
	if res.Request.URL.Path != "/console/functions/hello" { // 404: there is no function hello
		t.Fatalf("the link of a function opens %s", res.Request.URL)
	}
	if r = runCmd(t, endpoint, "", "console", "no good"); r.err == nil || !strings.Contains(r.err.Error(), "not a function name") {
		t.Fatalf("a bad function name: %v", r.err)
	}
	// A link whose signature does not match is refused.
	res, err = http.Get(strings.Replace(link, "X-Amz-Expires=60", "X-Amz-Expires=59", 1))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusForbidden {
		t.Fatalf("a tampered link: %d", res.StatusCode)
	}

	// A node with --auth none asks for no login: the link (or the
	// address, without a key) opens the console all the same.
	open := nodetest.Start(t, nil)
	r = runCmd(t, nodetest.Endpoint(open), "", "console")
	if r.err != nil {
		t.Fatalf("console of an open node: %v", r.err)
	}
	res, err = http.Get(strings.TrimSpace(r.stdout))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK || res.Request.URL.Path != "/console/" {
		t.Fatalf("the console of an open node: %d at %s", res.StatusCode, res.Request.URL)
	}
}

// getPage GETs url with client and returns the page.
func getPage(t *testing.T, client *http.Client, url string) string {
	t.Helper()
	res, err := client.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %s", url, res.StatusCode, b)
	}
	return string(b)
}

var hiddenInput = regexp.MustCompile(`name="(csrf|ticket)" value="([^"]+)"`)

// confirm posts the confirmation form of a login link's page.
func confirm(t *testing.T, client *http.Client, endpoint, page string) *http.Response {
	t.Helper()
	form := url.Values{}
	for _, m := range hiddenInput.FindAllStringSubmatch(page, -1) {
		form.Set(m[1], html.UnescapeString(m[2]))
	}
	// The form's token is the browser's login cookie (put back for a
	// replay: a successful sign-in clears it).
	u, _ := url.Parse(endpoint + "/console/")
	client.Jar.SetCookies(u, []*http.Cookie{{Name: "nimbus_login", Value: form.Get("csrf"), Path: "/console/"}})
	res, err := client.PostForm(endpoint+"/console/login/link", form)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	return res
}
