package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nimbus-serverless/nimbus/internal/node/nodetest"
)

// TestManifestVersionProblems: a manifest's publish, aliases and layers
// are checked before anything is deployed.
func TestManifestVersionProblems(t *testing.T) {
	base := "functions:\n  - name: hello\n    runtime: python3.11\n    handler: app.handler\n    code: .\n"
	for _, tc := range []struct{ name, doc, want string }{
		{"published without publish", base + "    aliases: {live: published}\n", "alias live: version published needs publish: true"},
		{"bad version", base + "    aliases: {live: latest}\n", `alias live: version must be a version's number, $LATEST or published, not "latest"`},
		{"numeric name", base + "    publish: true\n    aliases: {\"7\": published}\n", `alias "7": a name is 1 to 128 letters`},
		{"bad weight", base + "    aliases:\n      live: {version: 2, weight: \"3\"}\n", "alias live: weight must be VERSION=SHARE"},
		{"six layers", base + "    layers: [a, b, c, d, e, f]\n", "layers: at most 5, not 6"},
		{"unknown field", base + "    aliases:\n      live: {version: 2, weights: x}\n", "weights"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseManifest([]byte(tc.doc), "/proj")
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error with %q", err, tc.want)
			}
		})
	}
	specs, err := parseManifest([]byte(base+"    publish: true\n    aliases:\n      live: published\n      canary: {version: \"1\", weight: 2=0.25}\n      dev: $LATEST\n"), "/proj")
	if err != nil || !specs[0].Publish || specs[0].Aliases["canary"].Weight != "2=0.25" || specs[0].Aliases["dev"].Version != "$LATEST" {
		t.Fatalf("a good manifest: %v %+v", err, specs)
	}
}

// TestDeployPublishesAndAliases: nimbus deploy -f publishes a version and
// points the manifest's aliases; a second deploy with new code publishes
// the next version and moves the alias, with a canary weight.
func TestDeployPublishesAndAliases(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a node")
	}
	n := nodetest.Start(t, nil)
	endpoint := nodetest.Endpoint(n)
	dir := t.TempDir()
	write := func(release, aliases string) string {
		if err := os.WriteFile(filepath.Join(dir, "app.py"), []byte("def handler(event, context):\n    return {'release': '"+release+"'}\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		m := filepath.Join(dir, "nimbus.yaml")
		doc := "functions:\n  - name: shop\n    runtime: python3.11\n    handler: app.handler\n    code: .\n    publish: true\n    aliases:\n" + aliases
		if err := os.WriteFile(m, []byte(doc), 0o644); err != nil {
			t.Fatal(err)
		}
		return m
	}
	r := runCmd(t, endpoint, "", "deploy", "-f", write("one", "      live: published\n"))
	if r.err != nil || !strings.Contains(r.stderr, "Published version 1 of shop.") || !strings.Contains(r.stderr, "Alias live of shop: 1") {
		t.Fatalf("first deploy: %v\n%s", r.err, r.stderr)
	}
	r = runCmd(t, endpoint, "", "deploy", "-f", write("two", "      live: {version: \"1\", weight: 2=0.5}\n      next: published\n"))
	if r.err != nil || !strings.Contains(r.stderr, "Published version 2 of shop.") || !strings.Contains(r.stderr, "Alias live of shop: 1 (50 %), 2 (50 %)") ||
		!strings.Contains(r.stderr, "Alias next of shop: 2") {
		t.Fatalf("second deploy: %v\n%s", r.err, r.stderr)
	}
	if r = runCmd(t, endpoint, "", "invoke", "shop:next"); r.err != nil || !strings.Contains(r.stdout, `"release": "two"`) {
		t.Fatalf("invoke shop:next: %v %s", r.err, r.stdout)
	}
	if r = runCmd(t, endpoint, "", "invoke", "shop:1"); r.err != nil || !strings.Contains(r.stdout, `"release": "one"`) {
		t.Fatalf("invoke shop:1: %v %s", r.err, r.stdout)
	}
}
