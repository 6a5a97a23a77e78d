package runtimes

import (
	"slices"
	"testing"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/sandbox"
)

func TestImageCommand(t *testing.T) {
	img := ImageConfig{Entrypoint: []string{"/entry"}, Cmd: []string{"a", "b"}, WorkingDir: "/app"}
	tests := []struct {
		name     string
		im       *nimbus.FunctionImage
		cfg      ImageConfig
		wantArgs []string
		wantDir  string
		wantErr  bool
	}{
		{"the image's", &nimbus.FunctionImage{}, img, []string{"/entry", "a", "b"}, "/app", false},
		{"command only", &nimbus.FunctionImage{Command: []string{"c"}}, img, []string{"/entry", "c"}, "/app", false},
		{"entry point only", &nimbus.FunctionImage{EntryPoint: []string{"python3", "-m"}}, img, []string{"python3", "-m", "a", "b"}, "/app", false},
		{"working directory", &nimbus.FunctionImage{WorkingDirectory: "/w"}, img, []string{"/entry", "a", "b"}, "/w", false},
		{"no WORKDIR", &nimbus.FunctionImage{}, ImageConfig{Cmd: []string{"/x"}}, []string{"/x"}, "/", false},
		{"nothing to run", &nimbus.FunctionImage{}, ImageConfig{}, nil, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path, args, dir, err := ImageCommand(&nimbus.Function{Image: tt.im}, tt.cfg)
			if (err != nil) != tt.wantErr || !slices.Equal(args, tt.wantArgs) || dir != tt.wantDir || (err == nil && path != args[0]) {
				t.Errorf("ImageCommand = %q, %q, %q, %v; want %q, %q, error %v", path, args, dir, err, tt.wantArgs, tt.wantDir, tt.wantErr)
			}
		})
	}
}

func TestImageEnv(t *testing.T) {
	fn := &nimbus.Function{Name: "f", Runtime: "http", PackageType: nimbus.PackageImage, MemoryMB: 256,
		Image:       &nimbus.FunctionImage{Port: 8088},
		Environment: map[string]string{"A": "fn", "AWS_REGION": "spoof"}}
	rt := ImageRuntime(fn)
	if rt.Kind != KindHTTP {
		t.Fatalf("ImageRuntime of an http image: %+v, want KindHTTP", rt)
	}
	env := ImageEnv(fn, rt, ImageConfig{Env: []string{"A=image", "B=image", "LANG=C", "bad"}, Cmd: []string{"serve"}},
		sandbox.Paths{TaskRoot: sandbox.TaskRoot}, "eu-west-1")
	for _, want := range []string{"A=fn", "B=image", "LANG=C", "PATH=" + defaultPath, "AWS_REGION=eu-west-1", "PORT=8088", "_HANDLER=serve"} {
		if !slices.Contains(env, want) {
			t.Errorf("env %q: want %s", env, want)
		}
	}
	if got := ImageRuntime(&nimbus.Function{PackageType: nimbus.PackageImage}); got.Kind != KindProvided {
		t.Errorf("ImageRuntime of a Lambda image: %+v, want KindProvided", got)
	}
	if ImagePort(&nimbus.Function{}) != nimbus.DefaultImagePort {
		t.Errorf("ImagePort without a port: %d, want %d", ImagePort(&nimbus.Function{}), nimbus.DefaultImagePort)
	}
}
