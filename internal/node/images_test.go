package node_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	ggtypes "github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/nimbus-serverless/nimbus/internal/node"
	"github.com/nimbus-serverless/nimbus/internal/node/nodetest"
)

// imageRegistry is an in-process registry on 127.0.0.1, whose blob GETs a
// test can break.
type imageRegistry struct {
	host   string
	broken atomic.Pointer[string] // a blob digest GETs of which fail
}

func newImageRegistry(t *testing.T) *imageRegistry {
	t.Helper()
	ir := &imageRegistry{}
	inner := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if d := ir.broken.Load(); d != nil && strings.HasSuffix(r.URL.Path, "/blobs/"+*d) {
			http.Error(w, "gone", http.StatusNotFound)
			return
		}
		inner.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	ir.host = strings.TrimPrefix(srv.URL, "http://")
	return ir
}

// push writes an image of one gzipped layer holding files (mode 0755) with
// cfg as repo:tag, and returns its reference, its digest and its layer's.
func (ir *imageRegistry) push(t *testing.T, repoTag string, files map[string][]byte, cfg v1.Config) (ref, digest, layer string) {
	t.Helper()
	var tarBuf bytes.Buffer
	tw := tar.NewWriter(&tarBuf)
	for p, body := range files {
		if err := tw.WriteHeader(&tar.Header{Name: p, Mode: 0o755, Size: int64(len(body)), Typeflag: tar.TypeReg, ModTime: time.Unix(1_700_000_000, 0)}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(body); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	_, _ = zw.Write(tarBuf.Bytes())
	_ = zw.Close()
	l := static.NewLayer(gz.Bytes(), ggtypes.DockerLayer)
	ld, err := l.Digest()
	if err != nil {
		t.Fatal(err)
	}
	img, err := mutate.AppendLayers(empty.Image, l)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.Config = cfg
	cf.OS, cf.Architecture = "linux", nodeArch()
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		t.Fatal(err)
	}
	ref = ir.host + "/" + repoTag
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, img); err != nil {
		t.Fatal(err)
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return ref, d.String(), ld.String()
}

// waitState waits until function name leaves Pending (and its update is
// done) and returns its configuration.
func waitState(t *testing.T, c *lambda.Client, name string) *lambda.GetFunctionOutput {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		out, err := c.GetFunction(t.Context(), &lambda.GetFunctionInput{FunctionName: aws.String(name)})
		if err != nil {
			t.Fatalf("GetFunction %s: %v", name, err)
		}
		cfg := out.Configuration
		if cfg.State != types.StatePending && cfg.LastUpdateStatus != types.LastUpdateStatusInProgress {
			return out
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s still %s/%s", name, cfg.State, cfg.LastUpdateStatus)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func invokeText(t *testing.T, c *lambda.Client, name, payload string) (string, string) {
	t.Helper()
	out, err := c.Invoke(t.Context(), &lambda.InvokeInput{FunctionName: aws.String(name), Payload: []byte(payload)})
	if err != nil {
		t.Fatalf("Invoke %s: %v", name, err)
	}
	return string(out.Payload), aws.ToString(out.FunctionError)
}

// TestImageFunctions deploys both image contracts from an in-process
// registry through the Lambda API, invokes them, moves a tag under a
// function, and deploys an image the registry then fails to serve.
func TestImageFunctions(t *testing.T) {
	bin, err := noopBinary()
	if err != nil {
		t.Fatal(err)
	}
	reg := newImageRegistry(t)
	n := nodetest.Start(t, func(c *node.Config) { c.InsecureRegistries = []string{reg.host} })
	c := lambdaClient(n)
	role := aws.String("arn:aws:iam::000000000000:role/r")

	// Lambda's contract: the aws-lambda-go binary as ENTRYPOINT.
	ref, digest, _ := reg.push(t, "noop:v1", map[string][]byte{"bootstrap": bin}, v1.Config{Entrypoint: []string{"/bootstrap"}, Env: []string{"FROM_IMAGE=1"}})
	_, err = c.CreateFunction(t.Context(), &lambda.CreateFunctionInput{
		FunctionName: aws.String("img-lambda"), Role: role, PackageType: types.PackageTypeImage,
		Code: &types.FunctionCode{ImageUri: aws.String(ref)},
	})
	if err != nil {
		t.Fatalf("CreateFunction: %v", err)
	}
	got := waitState(t, c, "img-lambda")
	if got.Configuration.State != types.StateActive || got.Configuration.PackageType != types.PackageTypeImage ||
		aws.ToString(got.Code.ImageUri) != ref || aws.ToString(got.Code.ResolvedImageUri) != reg.host+"/noop@"+digest ||
		aws.ToString(got.Configuration.CodeSha256) != strings.TrimPrefix(digest, "sha256:") {
		t.Fatalf("GetFunction: state %s (%s), package %s, code %+v, sha %s; want Active Image %s at %s",
			got.Configuration.State, aws.ToString(got.Configuration.StateReason), got.Configuration.PackageType, *got.Code,
			aws.ToString(got.Configuration.CodeSha256), ref, digest)
	}
	if out, fe := invokeText(t, c, "img-lambda", `{"hello":"image"}`); fe != "" || out != `{"sleep_ms":0}` {
		t.Errorf("invoke: %s (error %q), want the no-op's answer", out, fe)
	}

	// Function Compute's contract: an HTTP server on port 9000.
	ref2, _, _ := reg.push(t, "echo:v1", map[string][]byte{"srv/echo": bin}, v1.Config{Entrypoint: []string{"/srv/echo"}, Cmd: []string{"-echo", "127.0.0.1:9000"}})
	_, err = c.CreateFunction(t.Context(), &lambda.CreateFunctionInput{
		FunctionName: aws.String("img-http"), Role: role, PackageType: types.PackageTypeImage, Runtime: "http",
		Code: &types.FunctionCode{ImageUri: aws.String(ref2)},
	})
	if err != nil {
		t.Fatalf("CreateFunction (http): %v", err)
	}
	if got := waitState(t, c, "img-http"); got.Configuration.State != types.StateActive {
		t.Fatalf("http image: %s %s", got.Configuration.State, aws.ToString(got.Configuration.StateReason))
	}
	if out, fe := invokeText(t, c, "img-http", `"echoed"`); out != `"echoed"` || fe != "" {
		t.Errorf("invoke http image: %q (error %q), want the payload echoed", out, fe)
	}

	// The tag moves: the function keeps its digest until UpdateFunctionCode.
	_, digest3, _ := reg.push(t, "noop:v1", map[string][]byte{"bootstrap": bin, "marker": []byte("2")}, v1.Config{Entrypoint: []string{"/bootstrap"}})
	if got := waitState(t, c, "img-lambda"); aws.ToString(got.Code.ResolvedImageUri) != reg.host+"/noop@"+digest {
		t.Errorf("after the tag moved: %s, want the digest resolved at create, %s", aws.ToString(got.Code.ResolvedImageUri), digest)
	}
	if _, err := c.UpdateFunctionCode(t.Context(), &lambda.UpdateFunctionCodeInput{FunctionName: aws.String("img-lambda"), ImageUri: aws.String(ref)}); err != nil {
		t.Fatalf("UpdateFunctionCode: %v", err)
	}
	if got := waitState(t, c, "img-lambda"); aws.ToString(got.Code.ResolvedImageUri) != reg.host+"/noop@"+digest3 || got.Configuration.State != types.StateActive {
		t.Errorf("after UpdateFunctionCode: %s %s, want %s Active", aws.ToString(got.Code.ResolvedImageUri), got.Configuration.State, digest3)
	}
	if _, fe := invokeText(t, c, "img-lambda", `{}`); fe != "" {
		t.Errorf("invoke after the update: error %q", fe)
	}

	// ImageConfig: a command override, shown back as ImageConfigResponse.
	if _, err := c.UpdateFunctionConfiguration(t.Context(), &lambda.UpdateFunctionConfigurationInput{FunctionName: aws.String("img-lambda"),
		ImageConfig: &types.ImageConfig{Command: []string{"-exit"}}}); err != nil {
		t.Fatalf("UpdateFunctionConfiguration: %v", err)
	}
	got = waitState(t, c, "img-lambda")
	if ic := got.Configuration.ImageConfigResponse; ic == nil || ic.ImageConfig == nil || len(ic.ImageConfig.Command) != 1 || ic.ImageConfig.Command[0] != "-exit" {
		t.Errorf("ImageConfigResponse %+v, want Command [-exit]", got.Configuration.ImageConfigResponse)
	}
	if out, fe := invokeText(t, c, "img-lambda", `{}`); fe == "" {
		t.Errorf("invoke of an image whose command exits at once: %s, want an init error", out)
	}

	// A missing tag is refused at once; a registry that then fails to
	// serve the layers leaves the function Failed with the reason.
	if _, err := c.CreateFunction(t.Context(), &lambda.CreateFunctionInput{FunctionName: aws.String("img-missing"), Role: role,
		PackageType: types.PackageTypeImage, Code: &types.FunctionCode{ImageUri: aws.String(reg.host + "/nothing:here")}}); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("CreateFunction of a missing image: %v, want does not exist", err)
	}
	ref4, _, layer := reg.push(t, "broken:v1", map[string][]byte{"bootstrap": bin, "other": []byte("x")}, v1.Config{Entrypoint: []string{"/bootstrap"}})
	reg.broken.Store(&layer)
	if _, err := c.CreateFunction(t.Context(), &lambda.CreateFunctionInput{FunctionName: aws.String("img-broken"), Role: role,
		PackageType: types.PackageTypeImage, Code: &types.FunctionCode{ImageUri: aws.String(ref4)}}); err != nil {
		t.Fatalf("CreateFunction (broken): %v", err)
	}
	got = waitState(t, c, "img-broken")
	if got.Configuration.State != types.StateFailed || got.Configuration.StateReasonCode == "" || aws.ToString(got.Configuration.StateReason) == "" {
		t.Errorf("broken image: %s %s %q, want Failed with a reason", got.Configuration.State, got.Configuration.StateReasonCode, aws.ToString(got.Configuration.StateReason))
	}
	t.Logf("broken image: %s: %s", got.Configuration.StateReasonCode, aws.ToString(got.Configuration.StateReason))
}

// nodeArch is this node's architecture as images name it.
func nodeArch() string { return runtime.GOARCH }
