package cli

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/nimbus-serverless/nimbus/internal/image/imagetest"
	"github.com/nimbus-serverless/nimbus/internal/node"
	"github.com/nimbus-serverless/nimbus/internal/node/nodetest"
)

// noopImageBinary builds internal/node's aws-lambda-go no-op function
// (testdata/noop), static: it answers an event with its sleep_ms, or with
// "-echo ADDR" serves HTTP echoing the body.
func noopImageBinary(t *testing.T) []byte {
	t.Helper()
	out := filepath.Join(t.TempDir(), "bootstrap")
	cmd := exec.Command("go", "build", "-o", out, "../node/testdata/noop")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build the no-op function: %v\n%s", err, b)
	}
	bin, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// TestImageEndToEnd deploys container images with the CLI against a real
// node and an in-process registry: `deploy NAME --image`, an update that
// follows a moved tag and sets ImageConfig, `get` in both formats, invokes,
// and a manifest with both image contracts.
func TestImageEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a node, a registry and image functions")
	}
	bin := noopImageBinary(t)
	reg := imagetest.NewRegistry(t)
	n := nodetest.Start(t, func(c *node.Config) { c.InsecureRegistries = []string{reg.Host} })
	endpoint := nodetest.Endpoint(n)
	mustRun := func(t *testing.T, args ...string) result {
		t.Helper()
		r := runCmd(t, endpoint, "", args...)
		if r.err != nil {
			t.Fatalf("nimbus %s: %s (stderr %q)", strings.Join(args, " "), OneLine(r.err), r.stderr)
		}
		return r
	}
	ref, digest, _ := reg.Push(t, "noop:v1", map[string][]byte{"bootstrap": bin}, v1.Config{Entrypoint: []string{"/bootstrap"}})

	t.Run("deploy --image", func(t *testing.T) {
		r := mustRun(t, "deploy", "img", "--image", ref)
		for _, want := range []string{"Name:          img\n", "Runtime:       -\n", "Package type:  Image\n",
			"Image:         " + ref + "\n", "Image digest:  " + digest + "\n", "State:         Active\n",
			"Code SHA-256:  " + strings.TrimPrefix(digest, "sha256:") + "\n"} {
			if !strings.Contains(r.stdout, want) {
				t.Errorf("deploy output lacks %q:\n%s", want, r.stdout)
			}
		}
		if want := "Created function img (image " + reg.Resolved("noop", digest) + ").\n"; !strings.Contains(r.stderr, want) {
			t.Errorf("stderr %q, want %q", r.stderr, want)
		}
		if r := mustRun(t, "invoke", "img", "--payload", `{"sleep_ms": 1}`); strings.TrimSpace(r.stdout) != `{"sleep_ms":1}` {
			t.Errorf("invoke: %q, want the no-op's answer", r.stdout)
		}
	})

	// The tag moves; a deploy resolves it again and sets ImageConfig.
	_, digest2, _ := reg.Push(t, "noop:v1", map[string][]byte{"bootstrap": bin, "app/marker": []byte("2")}, v1.Config{Entrypoint: []string{"/nothing"}})
	t.Run("deploy again", func(t *testing.T) {
		r := mustRun(t, "deploy", "img", "--image", ref, "--image-entrypoint", "/bootstrap", "--image-command", "an arg",
			"--image-workdir", "/app", "--memory", "256")
		for _, want := range []string{"Image digest:  " + digest2 + "\n", "Entry point:   /bootstrap\n", `Command:       "an arg"` + "\n",
			"Working dir:   /app\n", "Memory:        256MB\n"} {
			if !strings.Contains(r.stdout, want) {
				t.Errorf("deploy output lacks %q:\n%s", want, r.stdout)
			}
		}
		if !strings.Contains(r.stderr, "Updated function img (image "+reg.Resolved("noop", digest2)+").") {
			t.Errorf("stderr %q, want Updated function img (image ...)", r.stderr)
		}
		if r := mustRun(t, "invoke", "img", "--payload", `{"sleep_ms": 2}`); strings.TrimSpace(r.stdout) != `{"sleep_ms":2}` {
			t.Errorf("invoke after the update: %q", r.stdout)
		}
	})

	t.Run("get", func(t *testing.T) {
		r := mustRun(t, "get", "img")
		if !strings.Contains(r.stdout, "Image:         "+ref+"\n") || !strings.Contains(r.stdout, "Image digest:  "+digest2+"\n") {
			t.Errorf("get:\n%s", r.stdout)
		}
		var v functionView
		r = mustRun(t, "get", "img", "-o", "json")
		if err := json.Unmarshal([]byte(r.stdout), &v); err != nil {
			t.Fatalf("get -o json: %v: %q", err, r.stdout)
		}
		if v.PackageType != "Image" || v.ImageUri != ref || v.ResolvedImageUri != reg.Resolved("noop", digest2) ||
			v.ImageConfig == nil || v.ImageConfig.WorkingDirectory != "/app" || fmt.Sprint(v.ImageConfig.Command) != "[an arg]" {
			t.Errorf("get -o json: %+v (image config %+v)", v, v.ImageConfig)
		}
	})

	t.Run("manifest", func(t *testing.T) {
		ref2, digest3, _ := reg.Push(t, "tools:v1", map[string][]byte{"bin/noop": bin}, v1.Config{})
		dir := t.TempDir()
		manifest := filepath.Join(dir, "nimbus.yaml")
		doc := fmt.Sprintf(`functions:
  - name: img-lambda
    image: %[1]s
    imageEntrypoint: [/bin/noop]
    timeout: 10s
  - name: img-web
    image: %[1]s
    runtime: http
    imageEntrypoint: [/bin/noop]
    imageCommand: [-echo, "127.0.0.1:8081"]
    imagePort: 8081
`, ref2)
		if err := os.WriteFile(manifest, []byte(doc), 0o644); err != nil {
			t.Fatal(err)
		}
		r := mustRun(t, "deploy", "-f", manifest)
		for _, want := range []string{"Created function img-lambda (image " + reg.Resolved("tools", digest3) + ").",
			"Created function img-web (image " + reg.Resolved("tools", digest3) + ")."} {
			if !strings.Contains(r.stderr, want) {
				t.Errorf("deploy -f: stderr lacks %q: %q", want, r.stderr)
			}
		}
		if r := mustRun(t, "invoke", "img-lambda", "--payload", `{"sleep_ms": 3}`); strings.TrimSpace(r.stdout) != `{"sleep_ms":3}` {
			t.Errorf("invoke img-lambda: %q", r.stdout)
		}
		if r := mustRun(t, "invoke", "img-web", "--payload", `"echoed"`); strings.TrimSpace(r.stdout) != `"echoed"` {
			t.Errorf("invoke img-web: %q, want the payload echoed on port 8081", r.stdout)
		}
		if r := mustRun(t, "get", "img-web"); !strings.Contains(r.stdout, "Runtime:       http\n") || !strings.Contains(r.stdout, "Command:       -echo 127.0.0.1:8081\n") {
			t.Errorf("get img-web:\n%s", r.stdout)
		}
		// Deployed again unchanged but for the port: the function follows.
		if err := os.WriteFile(manifest, []byte(strings.ReplaceAll(doc, "8081", "8082")), 0o644); err != nil {
			t.Fatal(err)
		}
		mustRun(t, "deploy", "-f", manifest)
		if r := mustRun(t, "invoke", "img-web", "--payload", `"again"`); strings.TrimSpace(r.stdout) != `"again"` {
			t.Errorf("invoke img-web on port 8082: %q", r.stdout)
		}
	})

	t.Run("errors", func(t *testing.T) {
		r := runCmd(t, endpoint, "", "deploy", "img-missing", "--image", reg.Host+"/nothing:here")
		if r.err == nil || !strings.Contains(r.err.Error(), "does not exist") {
			t.Errorf("deploy of a missing image: %v, want does not exist", r.err)
		}
		r = runCmd(t, endpoint, "", "deploy", "img", "--image", ref, "--image-port", "8080")
		if r.err == nil || !strings.Contains(r.err.Error(), "imagePort is for an image served over HTTP") {
			t.Errorf("deploy --image-port without --runtime http: %v", r.err)
		}
		r = runCmd(t, endpoint, "", "deploy", "-f", "x.yaml", "--image", ref)
		if r.err == nil || !strings.Contains(r.err.Error(), "--image cannot be used with -f") {
			t.Errorf("deploy -f with --image: %v", r.err)
		}
	})
}
