package node_test

import (
	"encoding/base64"
	"encoding/json"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/nimbus-serverless/nimbus/internal/image/imagetest"
	"github.com/nimbus-serverless/nimbus/internal/node"
	"github.com/nimbus-serverless/nimbus/internal/node/nodetest"
	"github.com/nimbus-serverless/nimbus/internal/runtimes"
)

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
	reg := imagetest.NewRegistry(t)
	n := nodetest.Start(t, func(c *node.Config) { c.InsecureRegistries = []string{reg.Host} })
	c := lambdaClient(n)
	role := aws.String("arn:aws:iam::000000000000:role/r")

	// Lambda's contract: the aws-lambda-go binary as ENTRYPOINT.
	ref, digest, _ := reg.Push(t, "noop:v1", map[string][]byte{"bootstrap": bin}, v1.Config{Entrypoint: []string{"/bootstrap"}, Env: []string{"FROM_IMAGE=1"}})
	_, err = c.CreateFunction(t.Context(), &lambda.CreateFunctionInput{
		FunctionName: aws.String("img-lambda"), Role: role, PackageType: types.PackageTypeImage,
		Code: &types.FunctionCode{ImageUri: aws.String(ref)},
	})
	if err != nil {
		t.Fatalf("CreateFunction: %v", err)
	}
	got := waitState(t, c, "img-lambda")
	if got.Configuration.State != types.StateActive || got.Configuration.PackageType != types.PackageTypeImage ||
		aws.ToString(got.Code.ImageUri) != ref || aws.ToString(got.Code.ResolvedImageUri) != reg.Host+"/noop@"+digest ||
		aws.ToString(got.Configuration.CodeSha256) != strings.TrimPrefix(digest, "sha256:") {
		t.Fatalf("GetFunction: state %s (%s), package %s, code %+v, sha %s; want Active Image %s at %s",
			got.Configuration.State, aws.ToString(got.Configuration.StateReason), got.Configuration.PackageType, *got.Code,
			aws.ToString(got.Configuration.CodeSha256), ref, digest)
	}
	if out, fe := invokeText(t, c, "img-lambda", `{"hello":"image"}`); fe != "" || out != `{"sleep_ms":0}` {
		t.Errorf("invoke: %s (error %q), want the no-op's answer", out, fe)
	}

	// Function Compute's contract: an HTTP server on port 9000.
	ref2, _, _ := reg.Push(t, "echo:v1", map[string][]byte{"srv/echo": bin}, v1.Config{Entrypoint: []string{"/srv/echo"}, Cmd: []string{"-echo", "127.0.0.1:9000"}})
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
	_, digest3, _ := reg.Push(t, "noop:v1", map[string][]byte{"bootstrap": bin, "marker": []byte("2")}, v1.Config{Entrypoint: []string{"/bootstrap"}})
	if got := waitState(t, c, "img-lambda"); aws.ToString(got.Code.ResolvedImageUri) != reg.Host+"/noop@"+digest {
		t.Errorf("after the tag moved: %s, want the digest resolved at create, %s", aws.ToString(got.Code.ResolvedImageUri), digest)
	}
	if _, err := c.UpdateFunctionCode(t.Context(), &lambda.UpdateFunctionCodeInput{FunctionName: aws.String("img-lambda"), ImageUri: aws.String(ref)}); err != nil {
		t.Fatalf("UpdateFunctionCode: %v", err)
	}
	if got := waitState(t, c, "img-lambda"); aws.ToString(got.Code.ResolvedImageUri) != reg.Host+"/noop@"+digest3 || got.Configuration.State != types.StateActive {
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
		PackageType: types.PackageTypeImage, Code: &types.FunctionCode{ImageUri: aws.String(reg.Host + "/nothing:here")}}); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("CreateFunction of a missing image: %v, want does not exist", err)
	}
	ref4, _, layer := reg.Push(t, "broken:v1", map[string][]byte{"bootstrap": bin, "other": []byte("x")}, v1.Config{Entrypoint: []string{"/bootstrap"}})
	reg.Broken.Store(&layer)
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

// TestImageVersionsWarmed: a node that joins a cluster warms the images of
// image functions' published versions (which aliases point at), not only
// the image $LATEST runs, before any of them is invoked.
func TestImageVersionsWarmed(t *testing.T) {
	bin, err := noopBinary()
	if err != nil {
		t.Fatal(err)
	}
	reg := imagetest.NewRegistry(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	srv := natsServer(t, port, t.TempDir())
	t.Cleanup(srv.Shutdown)
	cluster := func(dataDir string) func(*node.Config) {
		return func(c *node.Config) {
			c.NATSURL, c.NATSPrefix = srv.ClientURL(), "warm"
			c.InsecureRegistries = []string{reg.Host}
			if dataDir != "" {
				c.DataDir = dataDir
			}
		}
	}
	a := nodetest.Start(t, cluster(""))
	c := lambdaClient(a)
	name := aws.String("img-versions")

	var digests []string
	for i := range 3 {
		ref, digest, _ := reg.Push(t, "versions:v1", map[string][]byte{"bootstrap": bin, "marker": []byte{byte('0' + i)}},
			v1.Config{Entrypoint: []string{"/bootstrap"}})
		digests = append(digests, digest)
		if i == 0 {
			_, err = c.CreateFunction(t.Context(), &lambda.CreateFunctionInput{FunctionName: name, Role: aws.String("arn:aws:iam::000000000000:role/r"),
				PackageType: types.PackageTypeImage, Code: &types.FunctionCode{ImageUri: aws.String(ref)}})
		} else {
			_, err = c.UpdateFunctionCode(t.Context(), &lambda.UpdateFunctionCodeInput{FunctionName: name, ImageUri: aws.String(ref)})
		}
		if err != nil {
			t.Fatalf("deploy image %d: %v", i, err)
		}
		if got := waitState(t, c, *name); got.Configuration.State != types.StateActive {
			t.Fatalf("image %d: %s %s", i, got.Configuration.State, aws.ToString(got.Configuration.StateReason))
		}
		if i < 2 { // versions 1 and 2; $LATEST runs the third image
			if _, err := c.PublishVersion(t.Context(), &lambda.PublishVersionInput{FunctionName: name}); err != nil {
				t.Fatalf("PublishVersion: %v", err)
			}
		}
	}
	if _, err := c.CreateAlias(t.Context(), &lambda.CreateAliasInput{FunctionName: name, Name: aws.String("live"), FunctionVersion: aws.String("1")}); err != nil {
		t.Fatalf("CreateAlias: %v", err)
	}

	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	b := nodetest.Start(t, cluster(dir))
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		var missing []string
		for _, d := range digests {
			if _, err := os.Stat(filepath.Join(dir, "images", "images", strings.TrimPrefix(d, "sha256:"), "rootfs")); err != nil {
				missing = append(missing, d)
			}
		}
		if len(missing) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the joining node has not warmed %v of %v after 60s", missing, digests)
		}
	}
	// And runs them: the alias, the other version and $LATEST.
	cb := lambdaClient(b)
	for _, q := range []string{"img-versions:live", "img-versions:2", "img-versions"} {
		if out, fe := invokeText(t, cb, q, `{"sleep_ms":1}`); fe != "" || out != `{"sleep_ms":1}` {
			t.Errorf("invoke %s on the joining node: %s (error %q)", q, out, fe)
		}
	}
	// An update made through node A is warmed by node B as it sees the
	// change, before anything is invoked there.
	ref, digest, _ := reg.Push(t, "versions:v2", map[string][]byte{"bootstrap": bin, "marker": []byte("new")},
		v1.Config{Entrypoint: []string{"/bootstrap"}})
	if _, err := c.UpdateFunctionCode(t.Context(), &lambda.UpdateFunctionCodeInput{FunctionName: name, ImageUri: aws.String(ref)}); err != nil {
		t.Fatalf("UpdateFunctionCode: %v", err)
	}
	root := filepath.Join(dir, "images", "images", strings.TrimPrefix(digest, "sha256:"), "rootfs")
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if _, err := os.Stat(root); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("node B has not warmed the image node A deployed (%s) after 60s", digest)
		}
	}
}

// TestImageCollect: the node's collection removes the image of a deleted
// function, and an image only a deleted version ran once its last instance
// is gone; never the image $LATEST or a published version runs.
func TestImageCollect(t *testing.T) {
	bin, err := noopBinary()
	if err != nil {
		t.Fatal(err)
	}
	reg := imagetest.NewRegistry(t)
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	n := nodetest.Start(t, func(c *node.Config) { c.InsecureRegistries = []string{reg.Host}; c.DataDir = dir })
	c := lambdaClient(n)
	role := aws.String("arn:aws:iam::000000000000:role/r")
	push := func(tag, marker string) (string, string) {
		ref, digest, _ := reg.Push(t, "gc:"+tag, map[string][]byte{"bootstrap": bin, "marker": []byte(marker)}, v1.Config{Entrypoint: []string{"/bootstrap"}})
		return ref, digest
	}
	onNode := func(digest string) bool {
		_, err := os.Stat(filepath.Join(dir, "images", "images", strings.TrimPrefix(digest, "sha256:"), "rootfs"))
		return err == nil
	}
	refA, digestA := push("a", "a")
	refB, digestB := push("b", "b")
	refC, digestC := push("c", "c")
	deploy := func(name, ref string) {
		t.Helper()
		if _, err := c.CreateFunction(t.Context(), &lambda.CreateFunctionInput{FunctionName: aws.String(name), Role: role,
			PackageType: types.PackageTypeImage, Code: &types.FunctionCode{ImageUri: aws.String(ref)}}); err != nil {
			t.Fatalf("CreateFunction %s: %v", name, err)
		}
		if got := waitState(t, c, name); got.Configuration.State != types.StateActive {
			t.Fatalf("%s: %s %s", name, got.Configuration.State, aws.ToString(got.Configuration.StateReason))
		}
	}
	deploy("gc", refA)
	if _, fe := invokeText(t, c, "gc", `{}`); fe != "" { // an instance of image A
		t.Fatalf("invoke: %s", fe)
	}
	if _, err := c.PublishVersion(t.Context(), &lambda.PublishVersionInput{FunctionName: aws.String("gc")}); err != nil {
		t.Fatalf("PublishVersion: %v", err)
	}
	if _, err := c.UpdateFunctionCode(t.Context(), &lambda.UpdateFunctionCodeInput{FunctionName: aws.String("gc"), ImageUri: aws.String(refB)}); err != nil {
		t.Fatalf("UpdateFunctionCode: %v", err)
	}
	waitState(t, c, "gc")
	deploy("gc-other", refC)
	if _, err := c.DeleteFunction(t.Context(), &lambda.DeleteFunctionInput{FunctionName: aws.String("gc-other")}); err != nil {
		t.Fatal(err)
	}
	removed := n.CollectImagesOlderThan(0)
	if onNode(digestC) || !onNode(digestA) || !onNode(digestB) {
		t.Fatalf("after a collection (removed %v): A %v (version 1), B %v ($LATEST), C %v (deleted function); want A and B kept, C gone",
			removed, onNode(digestA), onNode(digestB), onNode(digestC))
	}
	// Version 1 deleted: image A goes once no instance of it is left.
	if _, err := c.DeleteFunction(t.Context(), &lambda.DeleteFunctionInput{FunctionName: aws.String("gc"), Qualifier: aws.String("1")}); err != nil {
		t.Fatalf("delete version 1: %v", err)
	}
	for deadline := time.Now().Add(30 * time.Second); onNode(digestA); time.Sleep(100 * time.Millisecond) {
		n.CollectImagesOlderThan(0)
		if time.Now().After(deadline) {
			t.Fatal("the image only a deleted version ran is still on the node after 30s")
		}
	}
	if !onNode(digestB) {
		t.Fatal("the image $LATEST runs was collected")
	}
	if _, fe := invokeText(t, c, "gc", `{}`); fe != "" {
		t.Fatalf("invoke after the collections: %s", fe)
	}
}

// pythonImage is the files of an image made from the host's Python: its
// interpreter, the libraries it links, the dynamic loader, its standard
// library (without tests, tooling and caches) and the linker's cache, with
// Nimbus's Python bootstrap at /var/runtime (a runtime interface client:
// it speaks the Runtime API) and app.py at /var/task. It skips t when the
// host has no such Python.
func pythonImage(t *testing.T, app string) map[string][]byte {
	t.Helper()
	const py = "/usr/bin/python3"
	interp, err := filepath.EvalSymlinks(py)
	if err != nil {
		t.Skipf("no %s: %v", py, err)
	}
	files := map[string][]byte{}
	add := func(inImage, host string) {
		data, err := os.ReadFile(host)
		if err != nil {
			t.Fatalf("read %s: %v", host, err)
		}
		files[strings.TrimPrefix(inImage, "/")] = data
	}
	add(interp, interp)
	out, err := exec.Command("ldd", interp).Output()
	if err != nil {
		t.Skipf("ldd %s: %v", interp, err)
	}
	for line := range strings.Lines(string(out)) {
		f := strings.Fields(line)
		switch {
		case len(f) >= 3 && f[1] == "=>" && strings.HasPrefix(f[2], "/"):
			real, err := filepath.EvalSymlinks(f[2])
			if err != nil {
				t.Fatal(err)
			}
			add(f[2], real)
		case len(f) >= 1 && strings.HasPrefix(f[0], "/"): // the loader, at the path the binary names
			real, err := filepath.EvalSymlinks(f[0])
			if err != nil {
				t.Fatal(err)
			}
			add(f[0], real)
		}
	}
	stdlib, err := exec.Command(interp, "-c", "import sysconfig; print(sysconfig.get_path('stdlib'))").Output()
	if err != nil {
		t.Skipf("%s: %v", interp, err)
	}
	skip := map[string]bool{"test": true, "idlelib": true, "tkinter": true, "ensurepip": true, "lib2to3": true,
		"pydoc_data": true, "__pycache__": true, "turtledemo": true, "site-packages": true, "dist-packages": true}
	root := strings.TrimSpace(string(stdlib))
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		switch {
		case err != nil:
			return err
		case d.IsDir() && skip[d.Name()]:
			return filepath.SkipDir
		case d.Type().IsRegular():
			add(p, p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat("/etc/ld.so.cache"); err == nil {
		add("/etc/ld.so.cache", "/etc/ld.so.cache")
	}
	rtDir := t.TempDir()
	if err := runtimes.Install(rtDir); err != nil {
		t.Fatal(err)
	}
	boots, _ := filepath.Glob(filepath.Join(rtDir, "*", "bootstrap.py"))
	if len(boots) != 1 {
		t.Fatalf("the Python bootstrap in %s: %v", rtDir, boots)
	}
	add("/var/runtime/bootstrap.py", boots[0])
	files["var/task/app.py"] = []byte(app)
	files["usr/bin/python3"] = files[strings.TrimPrefix(interp, "/")]
	return files
}

// TestImagePythonFunction: a Python function packaged as an image (Lambda's
// contract: a base made from the host's interpreter, a runtime interface
// client as the entry point, the handler as the command) deploys from a
// registry and answers, with its log.
func TestImagePythonFunction(t *testing.T) {
	reg := imagetest.NewRegistry(t)
	files := pythonImage(t, "import sys\ndef handler(event, context):\n    print('from the image')\n"+
		"    return {'echo': event, 'python': sys.version_info[0], 'request': context.aws_request_id}\n")
	ref, _, _ := reg.Push(t, "pyfn:v1", files, v1.Config{
		Entrypoint: []string{"/usr/bin/python3", "/var/runtime/bootstrap.py"}, Cmd: []string{"app.handler"}, WorkingDir: "/var/task"})
	n := nodetest.Start(t, func(c *node.Config) { c.InsecureRegistries = []string{reg.Host} })
	if !n.Isolation().ImageRoot {
		t.Skip("this node's sandbox cannot run images (it needs a root of the instance's own)")
	}
	c := lambdaClient(n)
	if _, err := c.CreateFunction(t.Context(), &lambda.CreateFunctionInput{FunctionName: aws.String("img-py"), Role: aws.String("arn:aws:iam::000000000000:role/r"),
		PackageType: types.PackageTypeImage, Code: &types.FunctionCode{ImageUri: aws.String(ref)}, Timeout: aws.Int32(30)}); err != nil {
		t.Fatalf("CreateFunction: %v", err)
	}
	if got := waitState(t, c, "img-py"); got.Configuration.State != types.StateActive {
		t.Fatalf("img-py: %s %s", got.Configuration.State, aws.ToString(got.Configuration.StateReason))
	}
	out, err := c.Invoke(t.Context(), &lambda.InvokeInput{FunctionName: aws.String("img-py"), Payload: []byte(`{"n":1}`), LogType: types.LogTypeTail})
	if err != nil {
		t.Fatalf("Invoke: %v", err)
	}
	var got struct {
		Echo    map[string]int
		Python  int
		Request string
	}
	if out.FunctionError != nil || json.Unmarshal(out.Payload, &got) != nil || got.Echo["n"] != 1 || got.Python != 3 || got.Request == "" {
		tail, _ := base64.StdEncoding.DecodeString(aws.ToString(out.LogResult))
		t.Fatalf("invoke: %s (error %q), log %s", out.Payload, aws.ToString(out.FunctionError), tail)
	}
	tail, _ := base64.StdEncoding.DecodeString(aws.ToString(out.LogResult))
	if !strings.Contains(string(tail), "from the image") {
		t.Errorf("log tail %q, want the function's line", tail)
	}
}
