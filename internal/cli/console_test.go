package cli

import (
	"bufio"
	"net/http"
	"net/http/cookiejar"
	"os"
	"path/filepath"
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
	id, secret := readCredentials(t, filepath.Join(dir, "credentials"))
	r := runCmd(t, endpoint, "", "console", "--access-key-id", id, "--secret-access-key", secret)
	link := strings.TrimSpace(r.stdout)
	if r.err != nil || !strings.HasPrefix(link, endpoint+"/console/login/link?") || !strings.Contains(link, "X-Amz-Expires=60") ||
		strings.Contains(link, secret) || !strings.Contains(r.stderr, "within a minute") {
		t.Fatalf("nimbus console: %v %q %q", r.err, r.stdout, r.stderr)
	}
	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Jar: jar}
	res, err := browser.Get(link) // follows the redirect to the overview
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK || res.Request.URL.Path != "/console/" {
		t.Fatalf("following the link: %d at %s", res.StatusCode, res.Request.URL)
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

// readCredentials reads the key of a credentials file nimbus serve wrote.
func readCredentials(t *testing.T, path string) (id, secret string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), " = ")
		switch {
		case ok && k == "aws_access_key_id":
			id = v
		case ok && k == "aws_secret_access_key":
			secret = v
		}
	}
	if id == "" || secret == "" {
		t.Fatalf("no key in %s", path)
	}
	return id, secret
}
