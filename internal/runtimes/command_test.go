package runtimes

import (
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/runtimeapi"
	"github.com/nimbus-serverless/nimbus/internal/sandbox"
	"github.com/nimbus-serverless/nimbus/internal/sandbox/sandboxtest"
)

// buildGoFn builds internal/runtimeapi/testdata/gofn, a function made with
// aws-lambda-go, as dir/bootstrap.
func buildGoFn(t *testing.T, dir string) {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go tool is needed to build the test function: %v", err)
	}
	cmd := exec.CommandContext(t.Context(), goBin, "build", "-o", filepath.Join(dir, "bootstrap"), "../runtimeapi/testdata/gofn")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build gofn: %v\n%s", err, out)
	}
}

func TestProvided(t *testing.T) {
	code := sandboxtest.HostDir(t)
	buildGoFn(t, code)
	for _, id := range []string{"provided.al2023", "provided.al2"} {
		t.Run(id, func(t *testing.T) {
			rt, ok := lookup(discovered(), id)
			if !ok {
				t.Fatalf("%s not discovered", id)
			}
			in := start(t, rt, code, "bootstrap.handler", nil)
			var got struct {
				Echo         json.RawMessage `json:"echo"`
				FunctionName string          `json:"functionName"`
				MemoryMB     int             `json:"memoryMB"`
				Handler      string          `json:"handler"`
			}
			if err := json.Unmarshal([]byte(in.invokeJSON(t, `{"echo":"hi"}`)), &got); err != nil {
				t.Fatal(err)
			}
			if string(got.Echo) != `"hi"` || got.FunctionName != "fn" || got.MemoryMB != 256 || got.Handler != "bootstrap.handler" {
				t.Errorf("reply = %+v, want echo \"hi\" from fn (256 MB, handler bootstrap.handler)", got)
			}
			res := in.invoke(t, runtimeapi.Invocation{Payload: []byte(`{"fail":"boom"}`)})
			checkError(t, res.Err, errorCase{typ: "errorString", message: "boom"})
		})
	}
}

func TestCommand(t *testing.T) {
	bootDir := t.TempDir()
	if err := Install(bootDir); err != nil {
		t.Fatal(err)
	}
	code := t.TempDir()
	if err := os.WriteFile(filepath.Join(code, "bootstrap"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	py := Runtime{ID: "python3.11", Kind: KindPython, Interp: "/usr/bin/python3.11"}
	node := Runtime{ID: "nodejs20.x", Kind: KindNode, Interp: "/usr/bin/node"}
	provided := Runtime{ID: "provided.al2023", Kind: KindProvided}
	fixed := sandbox.Paths{TaskRoot: sandbox.TaskRoot, RuntimeDir: sandbox.RuntimeRoot}
	tests := []struct {
		name     string
		rt       Runtime
		in       sandbox.Paths
		wantPath string
		wantArgs []string
	}{
		{"provided.al2023", provided, fixed, "/var/task/bootstrap", []string{"/var/task/bootstrap"}},
		{"provided.al2", Runtime{ID: "provided.al2", Kind: KindProvided}, fixed, "/var/task/bootstrap", []string{"/var/task/bootstrap"}},
		{"http", Runtime{ID: "http", Kind: KindHTTP}, fixed, "/var/task/bootstrap", []string{"/var/task/bootstrap"}},
		{"python", py, fixed, py.Interp, []string{py.Interp, "-u", "/var/runtime/bootstrap.py"}},
		{"node", node, fixed, node.Interp, []string{node.Interp, "/var/runtime/bootstrap.mjs"}},
		{"host paths", py, sandbox.Paths{TaskRoot: code, RuntimeDir: Dir(py, bootDir)},
			py.Interp, []string{py.Interp, "-u", filepath.Join(bootDir, "python", "bootstrap.py")}},
		{"provided at host paths", provided, sandbox.Paths{TaskRoot: code},
			filepath.Join(code, "bootstrap"), []string{filepath.Join(code, "bootstrap")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path, args, err := Command(tt.rt, code, Dir(tt.rt, bootDir), tt.in)
			if err != nil {
				t.Fatalf("Command: %v", err)
			}
			if path != tt.wantPath || !slices.Equal(args, tt.wantArgs) {
				t.Errorf("Command = %s %q, want %s %q", path, args, tt.wantPath, tt.wantArgs)
			}
		})
	}
}

func TestDir(t *testing.T) {
	tests := []struct {
		kind string
		want string
	}{
		{KindPython, "/rt/python"}, {KindNode, "/rt/node"}, {KindProvided, ""}, {KindHTTP, ""}, {"java", ""},
	}
	for _, tt := range tests {
		if got := Dir(Runtime{Kind: tt.kind}, "/rt"); got != tt.want {
			t.Errorf("Dir(%s) = %q, want %q", tt.kind, got, tt.want)
		}
	}
}

func TestCommandErrors(t *testing.T) {
	provided := Runtime{ID: "provided.al2023", Kind: KindProvided}
	tests := []struct {
		name        string
		rt          Runtime
		setup       func(t *testing.T, code string) // makes codeDir/bootstrap
		noBoot      bool                            // the runtimes' bootstraps are not installed
		wantInvalid bool
	}{
		{name: "missing bootstrap", rt: provided, setup: func(*testing.T, string) {}, wantInvalid: true},
		{name: "missing bootstrap (http)", rt: Runtime{ID: "http", Kind: KindHTTP}, setup: func(*testing.T, string) {}, wantInvalid: true},
		{name: "not executable", rt: provided, setup: func(t *testing.T, code string) {
			mustWrite(t, filepath.Join(code, "bootstrap"), 0o644)
		}, wantInvalid: true},
		{name: "a directory", rt: provided, setup: func(t *testing.T, code string) {
			if err := os.Mkdir(filepath.Join(code, "bootstrap"), 0o755); err != nil {
				t.Fatal(err)
			}
		}, wantInvalid: true},
		{name: "dangling symlink", rt: provided, setup: func(t *testing.T, code string) {
			if err := os.Symlink(filepath.Join(code, "nowhere"), filepath.Join(code, "bootstrap")); err != nil {
				t.Fatal(err)
			}
		}, wantInvalid: true},
		{name: "unknown kind", rt: Runtime{ID: "java21", Kind: "java"}, setup: func(*testing.T, string) {}, wantInvalid: true},
		{name: "python not installed", rt: Runtime{ID: "python3.11", Kind: KindPython, Interp: "/usr/bin/python3.11"},
			setup: func(*testing.T, string) {}, noBoot: true},
		{name: "node without interpreter", rt: Runtime{ID: "nodejs20.x", Kind: KindNode},
			setup: func(*testing.T, string) {}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code := t.TempDir()
			tt.setup(t, code)
			bootDir := t.TempDir()
			if !tt.noBoot {
				if err := Install(bootDir); err != nil {
					t.Fatal(err)
				}
			}
			in := sandbox.Paths{TaskRoot: sandbox.TaskRoot, RuntimeDir: sandbox.RuntimeRoot}
			_, _, err := Command(tt.rt, code, Dir(tt.rt, bootDir), in)
			if err == nil {
				t.Fatal("Command succeeded, want an error")
			}
			if got := errors.Is(err, nimbus.ErrInvalid); got != tt.wantInvalid {
				t.Errorf("errors.Is(%v, ErrInvalid) = %v, want %v", err, got, tt.wantInvalid)
			}
			if tt.rt.Kind == KindProvided || tt.rt.Kind == KindHTTP {
				// The path the instance would see, not the host's.
				want := "Couldn't find valid bootstrap(s): [/var/task/bootstrap]"
				if err.Error() != want {
					t.Errorf("error = %q, want %q", err, want)
				}
			}
		})
	}
}

func mustWrite(t *testing.T, p string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
}

func envMap(t *testing.T, env []string) map[string]string {
	t.Helper()
	m := map[string]string{}
	for _, kv := range env {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			t.Fatalf("env entry %q has no =", kv)
		}
		if _, dup := m[k]; dup {
			t.Fatalf("env has %s twice", k)
		}
		m[k] = v
	}
	return m
}

func TestEnv(t *testing.T) {
	fn := &nimbus.Function{
		Name: "orders", Handler: "app.handler", MemoryMB: 512,
		Environment: map[string]string{
			"TABLE":                       "orders",
			"AWS_LAMBDA_RUNTIME_API":      "evil:1",
			"AWS_REGION":                  "mars-1",
			"_HANDLER":                    "other.handler",
			"LAMBDA_TASK_ROOT":            "/elsewhere",
			"AWS_LAMBDA_FUNCTION_VERSION": "7",
			"TZ":                          "Europe/Paris",
			"LANG":                        "fr_FR.UTF-8",
			"AWS_ACCESS_KEY_ID":           "AKIAEXAMPLE",
		},
	}
	py := Runtime{ID: "python3.11", Kind: KindPython, Interp: "/usr/bin/python3.11"}
	got := envMap(t, Env(fn, py, "127.0.0.1:9001", sandbox.Paths{TaskRoot: "/var/task", RuntimeDir: "/var/runtime"}, "eu-west-3"))
	want := map[string]string{
		"AWS_LAMBDA_FUNCTION_NAME":        "orders",
		"AWS_LAMBDA_FUNCTION_VERSION":     "$LATEST",
		"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "512",
		"AWS_LAMBDA_RUNTIME_API":          "127.0.0.1:9001",
		"_HANDLER":                        "app.handler",
		"LAMBDA_TASK_ROOT":                "/var/task",
		"LAMBDA_RUNTIME_DIR":              "/var/runtime",
		"LD_LIBRARY_PATH":                 "/var/task:/var/task/lib",
		"AWS_REGION":                      "eu-west-3",
		"AWS_DEFAULT_REGION":              "eu-west-3",
		"AWS_EXECUTION_ENV":               "AWS_Lambda_python3.11",
		"AWS_LAMBDA_LOG_GROUP_NAME":       "/aws/lambda/orders",
		"AWS_LAMBDA_INITIALIZATION_TYPE":  "on-demand",
		"PYTHONPATH":                      "/var/task",
		"PATH":                            "/usr/local/bin:/usr/bin:/bin",
		// The function's own variables, including overrides of unreserved ones.
		"TABLE":             "orders",
		"TZ":                "Europe/Paris",
		"LANG":              "fr_FR.UTF-8",
		"AWS_ACCESS_KEY_ID": "AKIAEXAMPLE",
	}
	for k, w := range want {
		if got[k] != w {
			t.Errorf("%s = %q, want %q", k, got[k], w)
		}
	}
	for _, k := range []string{"AWS_LAMBDA_LOG_STREAM_NAME"} {
		if got[k] == "" {
			t.Errorf("%s not set", k)
		}
	}
	if _, ok := got["NODE_PATH"]; ok {
		t.Error("NODE_PATH set for a python runtime")
	}
}

// TestEnvGOMAXPROCS: a Go function runs Go code on as many threads as its
// CPU share, rounded up, at most the host's CPUs, unless it says otherwise.
// TestEnvFC: a Python or Node function with Function Compute's conventions
// gets the bootstraps' switch and Function Compute's variables (over its
// own values for them); other functions and runtimes get none.
func TestEnvFC(t *testing.T) {
	fc := &nimbus.FCSettings{Conventions: true, Initializer: &nimbus.FCHook{Handler: "index.init", Timeout: 9}}
	fn := &nimbus.Function{Name: "f", Handler: "index.handler", MemoryMB: 256, Timeout: 7, FC: fc,
		Environment: map[string]string{"FC_FUNCTION_NAME": "other", FCEnv: "0"}}
	paths := sandbox.Paths{TaskRoot: "/var/task"}
	py := Runtime{ID: "python3.11", Kind: KindPython}
	got := envMap(t, Env(fn, py, "127.0.0.1:1", paths, "cn-hangzhou"))
	for k, v := range map[string]string{FCEnv: "1", "FC_FUNCTION_NAME": "f", "FC_FUNCTION_HANDLER": "index.handler",
		"FC_FUNCTION_MEMORY_SIZE": "256", "_NIMBUS_FC_TIMEOUT": "7", "FC_REGION": "cn-hangzhou", "FC_FUNC_CODE_PATH": "/var/task",
		"FC_INITIALIZER_HANDLER": "index.init", "FC_INITIALIZATION_TIMEOUT": "9"} {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
	for _, c := range []struct {
		fn *nimbus.Function
		rt Runtime
	}{
		{&nimbus.Function{Name: "f", FC: &nimbus.FCSettings{}}, py},
		{&nimbus.Function{Name: "f"}, py},
		{&nimbus.Function{Name: "f", FC: fc}, Runtime{ID: "http", Kind: KindHTTP}},
	} {
		if v, ok := envMap(t, Env(c.fn, c.rt, "127.0.0.1:1", paths, ""))[FCEnv]; ok {
			t.Errorf("%+v on %s: %s = %q, want none", c.fn.FC, c.rt.ID, FCEnv, v)
		}
	}
}

func TestEnvGOMAXPROCS(t *testing.T) {
	provided := Runtime{ID: "provided.al2023", Kind: KindProvided}
	for _, c := range []struct {
		memory int
		own    string
		want   int
	}{
		{128, "", 1}, {1769, "", 1}, {1770, "", min(2, runtime.NumCPU())},
		{10240, "", min(6, runtime.NumCPU())}, {128, "8", 8},
	} {
		fn := &nimbus.Function{Name: "f", MemoryMB: c.memory}
		if c.own != "" {
			fn.Environment = map[string]string{"GOMAXPROCS": c.own}
		}
		if got := envMap(t, Env(fn, provided, "127.0.0.1:1", sandbox.Paths{TaskRoot: "/code"}, ""))["GOMAXPROCS"]; got != strconv.Itoa(c.want) {
			t.Errorf("%d MB (own %q): GOMAXPROCS=%s, want %d", c.memory, c.own, got, c.want)
		}
	}
}

func TestEnvDefaults(t *testing.T) {
	fn := &nimbus.Function{Name: "f"}
	node := Runtime{ID: "nodejs20.x", Kind: KindNode, Interp: "/usr/bin/node"}
	got := envMap(t, Env(fn, node, "127.0.0.1:1", sandbox.Paths{TaskRoot: "/code"}, ""))
	want := map[string]string{
		"AWS_REGION":                      DefaultRegion,
		"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "128",
		"TZ":                              ":UTC",
		"LANG":                            "en_US.UTF-8",
		"AWS_EXECUTION_ENV":               "AWS_Lambda_nodejs20.x",
		"_HANDLER":                        "",
		"LAMBDA_TASK_ROOT":                "/code",
		"LAMBDA_RUNTIME_DIR":              "/code", // no runtime directory
		"GOMAXPROCS":                      "1",
	}
	for k, w := range want {
		if v, ok := got[k]; !ok || v != w {
			t.Errorf("%s = %q (set %v), want %q", k, v, ok, w)
		}
	}
	if !strings.Contains(got["NODE_PATH"], "/code") {
		t.Errorf("NODE_PATH = %q, want it to include the code directory", got["NODE_PATH"])
	}
	if _, ok := got["PYTHONPATH"]; ok {
		t.Error("PYTHONPATH set for a node runtime")
	}
	// Each instance gets its own log stream.
	other := envMap(t, Env(fn, node, "127.0.0.1:1", sandbox.Paths{TaskRoot: "/code"}, ""))
	if got["AWS_LAMBDA_LOG_STREAM_NAME"] == other["AWS_LAMBDA_LOG_STREAM_NAME"] {
		t.Errorf("two instances share log stream %q", got["AWS_LAMBDA_LOG_STREAM_NAME"])
	}
}

func TestIsReserved(t *testing.T) {
	tests := map[string]bool{
		"AWS_LAMBDA_RUNTIME_API": true, "_HANDLER": true, "AWS_REGION": true, "LAMBDA_TASK_ROOT": true,
		"_X_AMZN_TRACE_ID": true, "TZ": false, "PATH": false, "MY_VAR": false, "aws_region": false,
	}
	for name, want := range tests {
		if got := IsReserved(name); got != want {
			t.Errorf("IsReserved(%q) = %v, want %v", name, got, want)
		}
	}
}

// lookup finds the runtime named id.
func lookup(rts []Runtime, id string) (Runtime, bool) {
	for _, rt := range rts {
		if rt.ID == id {
			return rt, true
		}
	}
	return Runtime{}, false
}

// TestZygoteFor checks which instances may begin as Python's zygote: those
// whose variables read at start are the standard ones, at the fixed paths.
func TestZygoteFor(t *testing.T) {
	py := Runtime{ID: "python3.11", Kind: KindPython, Interp: "/usr/bin/python3.11"}
	dir := filepath.Join(t.TempDir(), "runtimes")
	if err := Install(dir); err != nil {
		t.Fatal(err)
	}
	fixed := sandbox.Paths{TaskRoot: sandbox.TaskRoot, RuntimeDir: sandbox.RuntimeRoot}
	env := func(vars map[string]string, in sandbox.Paths) []string {
		return Env(&nimbus.Function{Name: "f", Handler: "app.handler", MemoryMB: 512, Environment: vars}, py, "127.0.0.1:9001", in, "")
	}
	z := Zygote(py, Dir(py, dir))
	if z == nil || z.RuntimeDir != Dir(py, dir) || !slices.Contains(z.Env, "_NIMBUS_ZYGOTE=1") || !slices.Contains(z.Env, "PYTHONPATH=/var/task") {
		t.Fatalf("Zygote = %+v, want the bootstrap with _NIMBUS_ZYGOTE=1 and the standard PYTHONPATH", z)
	}
	tests := []struct {
		name string
		rt   Runtime
		in   sandbox.Paths
		env  []string
		want bool
	}{
		{"standard", py, fixed, env(map[string]string{"FOO": "bar", "PATH": "/x", "TZ": "Europe/Paris"}, fixed), true},
		{"own PYTHONPATH", py, fixed, env(map[string]string{"PYTHONPATH": "/x"}, fixed), false},
		{"PYTHONHASHSEED", py, fixed, env(map[string]string{"PYTHONHASHSEED": "1"}, fixed), false},
		{"LD_PRELOAD", py, fixed, env(map[string]string{"LD_PRELOAD": "/x.so"}, fixed), false},
		{"locale", py, fixed, env(map[string]string{"LC_ALL": "C"}, fixed), false},
		{"layers", py, sandbox.Paths{TaskRoot: sandbox.TaskRoot, RuntimeDir: sandbox.RuntimeRoot, Opt: sandbox.OptRoot},
			env(nil, sandbox.Paths{TaskRoot: sandbox.TaskRoot, RuntimeDir: sandbox.RuntimeRoot, Opt: sandbox.OptRoot}), false},
		{"host paths", py, sandbox.Paths{TaskRoot: "/code", RuntimeDir: Dir(py, dir)}, env(nil, sandbox.Paths{TaskRoot: "/code", RuntimeDir: Dir(py, dir)}), false},
		{"python with NODE_OPTIONS", py, fixed, env(map[string]string{"NODE_OPTIONS": "--x"}, fixed), true},
	}
	for _, tt := range tests {
		got := ZygoteFor(tt.rt, Dir(tt.rt, dir), tt.in, tt.env)
		if (got != nil) != tt.want || got != nil && !got.Equal(z) {
			t.Errorf("%s: ZygoteFor = %+v, want a zygote %v", tt.name, got, tt.want)
		}
	}
}

// TestZygoteForNode: Node's zygote is for instances whose NODE_* and UV_*
// variables are the standard ones (NODE_PATH without layers).
func TestZygoteForNode(t *testing.T) {
	node := Runtime{ID: "nodejs20.x", Kind: KindNode, Interp: "/usr/bin/node"}
	dir := filepath.Join(t.TempDir(), "runtimes")
	if err := Install(dir); err != nil {
		t.Fatal(err)
	}
	fixed := sandbox.Paths{TaskRoot: sandbox.TaskRoot, RuntimeDir: sandbox.RuntimeRoot}
	layers := sandbox.Paths{TaskRoot: sandbox.TaskRoot, RuntimeDir: sandbox.RuntimeRoot, Opt: sandbox.OptRoot}
	env := func(vars map[string]string, in sandbox.Paths) []string {
		return Env(&nimbus.Function{Name: "f", Handler: "index.handler", MemoryMB: 512, Environment: vars}, node, "127.0.0.1:9001", in, "")
	}
	z := Zygote(node, Dir(node, dir))
	if z == nil || !slices.Contains(z.Env, "_NIMBUS_ZYGOTE=1") || !slices.ContainsFunc(z.Env, func(kv string) bool { return strings.HasPrefix(kv, "NODE_PATH=") }) {
		t.Fatalf("Zygote = %+v, want the bootstrap with _NIMBUS_ZYGOTE=1 and the standard NODE_PATH", z)
	}
	for _, tt := range []struct {
		name string
		in   sandbox.Paths
		env  []string
		want bool
	}{
		{"standard", fixed, env(map[string]string{"FOO": "bar", "PYTHONPATH": "/x", "TZ": "Europe/Paris"}, fixed), true},
		{"NODE_OPTIONS", fixed, env(map[string]string{"NODE_OPTIONS": "--max-old-space-size=64"}, fixed), false},
		{"UV_THREADPOOL_SIZE", fixed, env(map[string]string{"UV_THREADPOOL_SIZE": "8"}, fixed), false},
		{"layers", layers, env(nil, layers), false},
	} {
		got := ZygoteFor(node, Dir(node, dir), tt.in, tt.env)
		if (got != nil) != tt.want || got != nil && !got.Equal(z) {
			t.Errorf("%s: ZygoteFor = %+v, want a zygote %v", tt.name, got, tt.want)
		}
	}
}
