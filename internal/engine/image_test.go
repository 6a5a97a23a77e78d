package engine

import (
	"context"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/runtimes"
	"github.com/nimbus-serverless/nimbus/internal/sandbox"
)

// imageExec is execBackend claiming image roots: an image's program runs
// from the image's directory on the host (isolation is the sandbox's
// concern, tested there).
type imageExec struct{ *execBackend }

func (b imageExec) Isolation() sandbox.Isolation { return sandbox.Isolation{ImageRoot: true} }

func (b imageExec) Start(ctx context.Context, spec sandbox.Spec) (sandbox.Instance, error) {
	if spec.RootFS != "" {
		spec.Path = filepath.Join(spec.RootFS, spec.Path)
		spec.CodeDir = filepath.Join(spec.RootFS, spec.WorkDir)
	}
	return b.execBackend.Start(ctx, spec)
}

// fakeImages serves one image, behave's directory as its root, and counts
// its users.
type fakeImages struct {
	mu     sync.Mutex
	cfg    runtimes.ImageConfig
	inUse  int
	ensure int
}

func (f *fakeImages) Ensure(_ context.Context, resolved string) (Image, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ensure++
	if !strings.HasSuffix(resolved, "@sha256:"+goodDigest) {
		return Image{}, nimbus.Errorf(nimbus.ErrNotFound, "image %s: not found", resolved)
	}
	return Image{Digest: "sha256:" + goodDigest, Root: behaveDir, Config: f.cfg}, nil
}

func (f *fakeImages) Use(digest string) func() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.inUse++
	return func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.inUse--
	}
}

func (f *fakeImages) users() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.inUse
}

func TestImageFunction(t *testing.T) {
	images := &fakeImages{cfg: runtimes.ImageConfig{
		Entrypoint: []string{"/nonexistent"}, Cmd: []string{"handler.from.image"},
		Env:        []string{"PATH=/image/bin", "FROM_IMAGE=1", "OVERRIDDEN=image", "AWS_LAMBDA_FUNCTION_NAME=spoof"},
		WorkingDir: "/", User: "app",
	}}
	h := newHarness(t, func(c *Config) { c.Images = images })
	b := imageExec{h.sb}
	h.e.cfg.Sandbox = b
	fn := &nimbus.Function{Name: "img", MemoryMB: 128, Timeout: 5, RevisionID: "r1", PackageType: nimbus.PackageImage,
		Environment: map[string]string{"OVERRIDDEN": "function", "VERSION": "v-img"},
		Image: &nimbus.FunctionImage{URI: "127.0.0.1:1/behave:latest", Resolved: "127.0.0.1:1/behave@sha256:" + goodDigest,
			EntryPoint: []string{"/bootstrap"}, WorkingDirectory: "/"}}
	_, version := h.ok(t, fn, `{"echo":"x"}`)
	if version != "v-img" {
		t.Errorf("version %q, want the function's variable", version)
	}
	spec := h.sb.lastSpec()
	if spec.RootFS != behaveDir || spec.User != "app" || spec.WorkDir != "/" || !slices.Equal(spec.Args, []string{"/bootstrap", "handler.from.image"}) {
		t.Errorf("spec RootFS %q User %q WorkDir %q Args %q; want the image's root, user, the override's entry point and the image's CMD",
			spec.RootFS, spec.User, spec.WorkDir, spec.Args)
	}
	for _, want := range []string{"PATH=/image/bin", "FROM_IMAGE=1", "OVERRIDDEN=function", "AWS_LAMBDA_FUNCTION_NAME=img", "_HANDLER=handler.from.image", "LAMBDA_TASK_ROOT=/var/task"} {
		if !slices.Contains(spec.Env, want) {
			t.Errorf("env %q: want %s", spec.Env, want)
		}
	}
	if slices.ContainsFunc(spec.Env, func(kv string) bool {
		return strings.HasPrefix(kv, "AWS_EXECUTION_ENV=") || kv == "AWS_LAMBDA_FUNCTION_NAME=spoof"
	}) {
		t.Errorf("env %q: want no AWS_EXECUTION_ENV and the reserved name over the image's", spec.Env)
	}
	if images.users() != 1 {
		t.Errorf("%d users of the image with one instance, want 1", images.users())
	}
	// Another digest is another version: the old instance drains and lets
	// its image go.
	moved := *fn
	im := *fn.Image
	im.Resolved = "127.0.0.1:1/behave@sha256:" + noBootDigest
	moved.Image, moved.RevisionID = &im, "r2"
	if _, err := h.invoke(t, &moved, `{}`); err == nil {
		t.Errorf("invoke of an image the store cannot give succeeded")
	}
	waitFor(t, func() bool { return images.users() == 0 })

	// No command at all: Lambda's Runtime.InvalidEntrypoint.
	images.cfg = runtimes.ImageConfig{}
	bare := *fn
	bareImage := *fn.Image
	bareImage.EntryPoint = nil
	bare.Image, bare.RevisionID = &bareImage, "r3"
	res, err := h.invoke(t, &bare, `{}`)
	if err != nil || res.Err == nil || res.Err.Type != "Runtime.InvalidEntrypoint" {
		t.Errorf("invoke with no command: %+v, %v; want Runtime.InvalidEntrypoint", res.Err, err)
	}
}
