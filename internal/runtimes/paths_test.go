package runtimes

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nimbus-serverless/nimbus/internal/runtimeapi"
	"github.com/nimbus-serverless/nimbus/internal/sandbox"
)

// wantFixedPaths returns where instances of the test sandbox see their code
// and runtime: /var/task and /var/runtime, which a root test process must
// get (its sandbox has a mount namespace), else the host paths.
func wantFixedPaths(t *testing.T) bool {
	t.Helper()
	fixed := sandbox.IsolationOf(sandboxBackend(t)).FixedPaths
	if !fixed && os.Geteuid() == 0 {
		t.Fatalf("running as root, the sandbox should show code at %s: %s", sandbox.TaskRoot, sandboxBackend(t).Describe())
	}
	return fixed
}

// pathsReport is what the test functions below report about where they run.
type pathsReport struct {
	Cwd, TaskRoot, RuntimeDir, File string
	HostCode, HostRuntime           bool // the function can reach its files by their host paths
	Listing                         []string
}

// checkPaths checks a function's report and its stack trace against the
// paths it should see, and that its output never names the host paths.
func checkPaths(t *testing.T, in *instance, code, file string, rep pathsReport, stack []string) {
	t.Helper()
	want := in.in
	if wantFixedPaths(t) && (want.TaskRoot != sandbox.TaskRoot || want.RuntimeDir != sandbox.RuntimeRoot) {
		t.Fatalf("PathsOf = %+v, want %s and %s", want, sandbox.TaskRoot, sandbox.RuntimeRoot)
	}
	if rep.Cwd != want.TaskRoot || rep.TaskRoot != want.TaskRoot || rep.RuntimeDir != want.RuntimeDir {
		t.Errorf("cwd %q, LAMBDA_TASK_ROOT %q, LAMBDA_RUNTIME_DIR %q; want %q, %q, %q",
			rep.Cwd, rep.TaskRoot, rep.RuntimeDir, want.TaskRoot, want.TaskRoot, want.RuntimeDir)
	}
	if wantFile := filepath.Join(want.TaskRoot, file); rep.File != wantFile {
		t.Errorf("module file = %q, want %q", rep.File, wantFile)
	}
	if want.TaskRoot == sandbox.TaskRoot && (rep.HostCode || rep.HostRuntime) {
		t.Errorf("host code dir visible %v, host runtime dir visible %v; want neither", rep.HostCode, rep.HostRuntime)
	}
	if len(rep.Listing) == 0 || rep.Listing[0] != file {
		t.Errorf("listing of the task root = %q, want the code (%s)", rep.Listing, file)
	}
	trace := strings.Join(stack, "\n")
	if !strings.Contains(trace, filepath.Join(want.TaskRoot, file)) {
		t.Errorf("stack trace %q does not name %s", trace, filepath.Join(want.TaskRoot, file))
	}
	in.waitOutput(t, "boom")
	if want.TaskRoot != code && strings.Contains(in.out.String()+trace, code) {
		t.Errorf("output or stack trace names the host code dir %s:\n%s\n%s", code, in.out.String(), trace)
	}
}

func TestPythonPaths(t *testing.T) {
	code := writeFiles(t, map[string]string{"app.py": `import os
def handler(event, context):
    if event.get("fail"):
        raise ValueError("boom")
    return {"Cwd": os.getcwd(), "TaskRoot": os.environ["LAMBDA_TASK_ROOT"],
            "RuntimeDir": os.environ["LAMBDA_RUNTIME_DIR"], "File": __file__,
            "HostCode": os.path.exists(event["code"]), "HostRuntime": os.path.exists(event["runtime"]),
            "Listing": sorted(os.listdir(os.environ["LAMBDA_TASK_ROOT"]))}
`})
	in := start(t, runtimeOf(t, KindPython), code, "app.handler", nil)
	checkPathsOf(t, in, code, "app.py", pythonBootstrap)
}

func TestNodePaths(t *testing.T) {
	code := writeFiles(t, map[string]string{"index.js": `const fs = require('fs');
exports.handler = async (event) => {
  if (event.fail) {
    throw new Error('boom');
  }
  return {
    Cwd: process.cwd(), TaskRoot: process.env.LAMBDA_TASK_ROOT, RuntimeDir: process.env.LAMBDA_RUNTIME_DIR,
    File: __filename, HostCode: fs.existsSync(event.code), HostRuntime: fs.existsSync(event.runtime),
    Listing: fs.readdirSync(process.env.LAMBDA_TASK_ROOT).sort(),
  };
};
`})
	in := start(t, runtimeOf(t, KindNode), code, "index.handler", nil)
	checkPathsOf(t, in, code, "index.js", nodeBootstrap)
}

// checkPathsOf asks the function of in (in file, run by bootstrap) for its
// report, then makes it fail, and checks both (see checkPaths).
func checkPathsOf(t *testing.T, in *instance, code, file, bootstrap string) {
	t.Helper()
	ev, _ := json.Marshal(map[string]string{"code": filepath.Join(code, file), "runtime": filepath.Join(in.runtimeHost, bootstrap)})
	var rep pathsReport
	if err := json.Unmarshal([]byte(in.invokeJSON(t, string(ev))), &rep); err != nil {
		t.Fatal(err)
	}
	res := in.invoke(t, runtimeapi.Invocation{Payload: []byte(`{"fail": true}`)})
	if res.Err == nil {
		t.Fatal("no error, want boom")
	}
	checkPaths(t, in, code, file, rep, res.Err.StackTrace)
}
