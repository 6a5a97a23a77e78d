package api_test

import (
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/nimbus-serverless/nimbus/internal/image/imagetest"
	"github.com/nimbus-serverless/nimbus/internal/node"
	"github.com/nimbus-serverless/nimbus/internal/node/nodetest"
)

// noopStatic compiles internal/node/testdata/noop (aws-lambda-go; with
// "-echo ADDR" an HTTP echo server) statically, once.
var noopStatic = sync.OnceValues(func() ([]byte, error) { return buildStatic("../node/testdata/noop") })

// TestFCCustomContainer: a Function Compute custom-container function is an
// image function of Nimbus's (HTTP contract) with customContainerConfig's
// image, port, entry point and command; it answers invocations, shows its
// config back with the resolved digest, and bad configs are refused.
func TestFCCustomContainer(t *testing.T) {
	bin, err := noopStatic()
	if err != nil {
		t.Fatal(err)
	}
	reg := imagetest.NewRegistry(t)
	ref, digest, _ := reg.Push(t, "fcimg:v1", map[string][]byte{"bootstrap": bin}, v1.Config{Entrypoint: []string{"/bootstrap"}})
	n := nodetest.Start(t, func(c *node.Config) { c.InsecureRegistries = []string{reg.Host} })
	if !n.Isolation().ImageRoot {
		t.Skip("this node's sandbox cannot run images (it needs a root of the instance's own)")
	}
	fc := newFCAPI(t, n)
	body := `{"functionName":"ctr","runtime":"custom-container","memorySize":128,` +
		`"customContainerConfig":{"image":"` + ref + `","port":9123,"command":["-echo","127.0.0.1:9123"]}}`
	fc.do("POST", "/functions", body, 200)
	var got struct {
		Runtime, State, StateReason string
		CustomContainerConfig       struct {
			Image, ResolvedImageUri string
			Port                    int
			Command                 []string
		}
	}
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		fc.json("GET", "/functions/ctr", "", 200, &got)
		if got.State != "Pending" || time.Now().After(deadline) {
			break
		}
	}
	cc := got.CustomContainerConfig
	if got.State != "Active" || got.Runtime != "custom-container" || cc.Image != ref || cc.ResolvedImageUri != reg.Resolved("fcimg", digest) ||
		cc.Port != 9123 || strings.Join(cc.Command, " ") != "-echo 127.0.0.1:9123" {
		raw, _ := json.Marshal(got)
		t.Fatalf("GetFunction: %s", raw)
	}
	if out := fc.do("POST", "/functions/ctr/invocations", "hello", 200); string(out) != "hello" {
		t.Errorf("invoke: %q, want the echo of hello", out)
	}

	for _, tc := range []struct{ name, body, msg string }{
		{"no config", `{"functionName":"c2","runtime":"custom-container"}`, "customContainerConfig is required"},
		{"config on another runtime", `{"functionName":"c2","runtime":"custom","code":{"zipFile":"UEsFBgAAAAAAAAAAAAAAAAAAAAAAAA=="},"customContainerConfig":{"image":"` + ref + `"}}`, "for runtime custom-container"},
		{"code with an image", `{"functionName":"c2","runtime":"custom-container","code":{"zipFile":"UEsFBgAAAAAAAAAAAAAAAAAAAAAAAA=="},"customContainerConfig":{"image":"` + ref + `"}}`, "code is not taken"},
		{"no image", `{"functionName":"c2","runtime":"custom-container","customContainerConfig":{"port":9000}}`, "image is required"},
		{"bad port", `{"functionName":"c2","runtime":"custom-container","customContainerConfig":{"image":"` + ref + `","port":70000}}`, "port 70000"},
		{"acceleration off", `{"functionName":"c2","runtime":"custom-container","customContainerConfig":{"image":"` + ref + `","accelerationType":"None"}}`, "accelerationType"},
		{"registry config", `{"functionName":"c2","runtime":"custom-container","customContainerConfig":{"image":"` + ref + `","registryConfig":{"authConfig":{"userName":"u"}}}}`, "registryConfig"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fc.fails("POST", "/functions", tc.body, 400, "InvalidArgument", tc.msg)
		})
	}
	// A code function cannot take an image.
	fc.fails("PUT", "/functions/ctr", `{"code":{"zipFile":"UEsFBgAAAAAAAAAAAAAAAAAAAAAAAA=="}}`, 400, "InvalidArgument", "code is not taken")
}
