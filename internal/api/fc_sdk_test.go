package api_test

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nimbus-serverless/nimbus/internal/node"
	"github.com/nimbus-serverless/nimbus/internal/node/nodetest"
	"github.com/nimbus-serverless/nimbus/internal/testenv"
)

// fcPyHandler is the Python function of the SDK test, written for Function
// Compute's conventions: its event is bytes.
const fcPyHandler = `import json, os, time
def handler(event, context):
    event = json.loads(event or b"{}")
    if event.get("fail"):
        raise ValueError("asked to fail")
    if event.get("sleep"):
        time.sleep(event["sleep"])
    print("handled", event.get("n"))
    return {"echo": event, "greeting": os.environ.get("GREETING")}
`

// fcCustomServer is the custom runtime's server: it answers every POST
// with "custom:" and the body.
const fcCustomServer = `import http.server, os
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        out = b"custom:" + body
        self.send_response(200)
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)
http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
`

// TestFCSDK runs Function Compute's official Node SDK (internal/api/testdata/
// fcsdk, node --test) against a node with signatures on: functions
// (Python and custom), sync and async invocations, tasks, configs, bad
// inputs and a bad signature. It skips without node or the SDK's
// node_modules (npm ci --ignore-scripts in testdata/fcsdk), unless
// NIMBUS_REQUIRE_SERVICES=1.
func TestFCSDK(t *testing.T) {
	nodeBin, err := exec.LookPath("node")
	if err != nil {
		testenv.Missing(t, "Node.js", err)
	}
	dir, _ := filepath.Abs(filepath.Join("testdata", "fcsdk"))
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "@alicloud", "fc20230330")); err != nil {
		testenv.Missing(t, "the Function Compute SDK", errors.New("run: cd internal/api/testdata/fcsdk && npm ci --ignore-scripts"))
	}
	var data string
	n := nodetest.Start(t, func(c *node.Config) { c.Auth, data = node.AuthSigV4, c.DataDir })
	id, secret := nodetest.Credentials(t, filepath.Join(data, "credentials"))
	tmp := t.TempDir()
	pyZip := filepath.Join(tmp, "py.zip")
	customZip := filepath.Join(tmp, "custom.zip")
	os.WriteFile(pyZip, nodetest.Zip(t, map[string]string{"index.py": fcPyHandler}), 0o644)
	os.WriteFile(customZip, nodetest.Zip(t, map[string]string{"server.py": fcCustomServer,
		"bootstrap": "#!/bin/sh\nexec /usr/bin/python3 server.py\n"}, "bootstrap"), 0o644)
	cmd := exec.CommandContext(t.Context(), nodeBin, "--test", "--test-reporter=spec", "fc.test.js")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "FC_ENDPOINT="+n.Addr(), "FC_ACCESS_KEY_ID="+id, "FC_ACCESS_KEY_SECRET="+secret,
		"FC_PY_ZIP="+pyZip, "FC_CUSTOM_ZIP="+customZip, "FC_PY_RUNTIME="+pythonRuntime(t),
		fmt.Sprintf("FC_PREFIX=fc%d", time.Now().UnixNano()%1e9))
	out, err := cmd.CombinedOutput()
	t.Logf("node --test:\n%s", out)
	if err != nil {
		t.Fatalf("the Function Compute SDK test failed: %v", err)
	}
}

// pythonRuntime is a Python runtime this host offers.
func pythonRuntime(t *testing.T) string {
	m, _ := filepath.Glob("/usr/bin/python3.*")
	for _, p := range m {
		if b := filepath.Base(p); !strings.Contains(b, "-") {
			return b
		}
	}
	testenv.Missing(t, "Python 3", errors.New("no /usr/bin/python3.x"))
	return ""
}
