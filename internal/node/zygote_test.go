package node_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"

	"github.com/nimbus-serverless/nimbus/internal/node"
	"github.com/nimbus-serverless/nimbus/internal/node/nodetest"
	"github.com/nimbus-serverless/nimbus/internal/runtimes"
	"github.com/nimbus-serverless/nimbus/internal/testenv"
)

// agePy and ageJS answer whether their interpreter began as a zygote (the
// environment it was exec'd with, which /proc shows, is the zygote's) and
// what it sees of its function; each prints a line to its log.
const agePy = `
import os, sys
def handler(event, context):
    print("age speaks")
    return {"began": open("/proc/self/environ", "rb").read().decode().split("\0"), "foo": os.environ.get("FOO"),
            "handler": os.environ.get("_HANDLER"), "cwd": os.getcwd(), "zygote": os.environ.get("_NIMBUS_ZYGOTE"),
            "stdin": os.readlink("/proc/self/fd/0"), "argv": sys.argv, "tz": os.environ.get("TZ")}
`

const ageJS = `
const fs = require('fs');
exports.handler = async () => {
  console.log('age speaks');
  return { began: fs.readFileSync('/proc/self/environ', 'latin1').split('\0'), foo: process.env.FOO,
    handler: process.env._HANDLER, cwd: process.cwd(), zygote: process.env._NIMBUS_ZYGOTE ?? null,
    stdin: fs.readlinkSync('/proc/self/fd/0'), argv: process.argv.slice(1), tz: process.env.TZ };
};
`

// zygoteAnswer is what agePy and ageJS answer, and the invocation's log.
type zygoteAnswer struct {
	Began                    []string
	Foo, Handler, Cwd, Stdin string
	Zygote                   *string
	Argv                     []string
	TZ                       string
	log                      string
}

// fromZygote reports whether the instance began as a zygote.
func (a zygoteAnswer) fromZygote() bool { return slices.Contains(a.Began, "_NIMBUS_ZYGOTE=1") }

// TestZygotes: a Python or Node function's cold start is a pre-initialised
// interpreter, which sees the function's code, environment, working
// directory and arguments as any instance, and whose output is the
// function's log; a function whose environment sets a variable the
// interpreter reads at start (PYTHONHASHSEED, NODE_OPTIONS) starts as
// before. Each case has a few cold starts (a new version each), since
// the node starts its zygotes in the background.
func TestZygotes(t *testing.T) {
	nodeRT := nodeRuntimeID(t)
	for _, tc := range []struct {
		name, runtime, handler, file, code string
		env                                map[string]string
		zygote                             bool
		argv0                              string
	}{
		{"python", pythonRuntime(t), "app.handler", "app.py", agePy, map[string]string{"FOO": "bar"}, true, "/var/runtime/bootstrap.py"},
		{"python start variable", pythonRuntime(t), "app.handler", "app.py", agePy, map[string]string{"FOO": "bar", "PYTHONHASHSEED": "7"}, false, "/var/runtime/bootstrap.py"},
		{"node", nodeRT, "index.handler", "index.js", ageJS, map[string]string{"FOO": "bar"}, true, "/var/runtime/bootstrap.mjs"},
		{"node start variable", nodeRT, "index.handler", "index.js", ageJS, map[string]string{"FOO": "bar", "NODE_OPTIONS": "--no-warnings"}, false, "/var/runtime/bootstrap.mjs"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := nodetest.Start(t, func(c *node.Config) { c.PrestartedHelpers = 2 })
			if !n.Isolation().MinimalRoot {
				t.Skip("no zygotes without a root of the instance's own")
			}
			c := lambdaClient(n)
			_, err := c.CreateFunction(t.Context(), &lambda.CreateFunctionInput{
				FunctionName: aws.String("age"), Runtime: types.Runtime(tc.runtime), Handler: aws.String(tc.handler),
				Role:        aws.String("arn:aws:iam::000000000000:role/test"),
				Code:        &types.FunctionCode{ZipFile: nodetest.Zip(t, map[string]string{tc.file: tc.code})},
				Environment: &types.Environment{Variables: tc.env},
				Timeout:     aws.Int32(30),
			})
			if err != nil {
				t.Fatalf("CreateFunction: %v", err)
			}
			waitActive(t, c, "age")
			var got zygoteAnswer
			for attempt := range 10 {
				if attempt > 0 { // a new version: a cold start
					time.Sleep(300 * time.Millisecond)
					tc.env["ATTEMPT"] = strconv.Itoa(attempt)
					if _, err := c.UpdateFunctionConfiguration(t.Context(), &lambda.UpdateFunctionConfigurationInput{
						FunctionName: aws.String("age"), Environment: &types.Environment{Variables: tc.env},
					}); err != nil {
						t.Fatalf("UpdateFunctionConfiguration: %v", err)
					}
					waitActive(t, c, "age")
				}
				got = invokeAge(t, n)
				if got.fromZygote() {
					break
				}
			}
			if got.fromZygote() != tc.zygote {
				t.Errorf("exec'd with %q: from a zygote %v, want %v", got.Began, got.fromZygote(), tc.zygote)
			}
			if got.Foo != "bar" || got.Handler != tc.handler || got.Cwd != "/var/task" || got.Zygote != nil ||
				got.Stdin != "/dev/null" || len(got.Argv) != 1 || got.Argv[0] != tc.argv0 || got.TZ != ":UTC" {
				t.Errorf("instance sees %+v, want the function's variables, /var/task, /dev/null as stdin, the bootstrap's argv", got)
			}
			if !strings.Contains(got.log, "age speaks") {
				t.Errorf("log tail %q, want the function's line", got.log)
			}
		})
	}
}

// nodeRuntimeID is the host's Node runtime id.
func nodeRuntimeID(t *testing.T) string {
	t.Helper()
	for _, rt := range runtimes.Discover(slog.New(slog.DiscardHandler)) {
		if rt.Kind == runtimes.KindNode {
			return rt.ID
		}
	}
	testenv.Missing(t, "Node.js", nil)
	return ""
}

// invokeAge invokes the age function, with its log tail.
func invokeAge(t *testing.T, n *node.Node) zygoteAnswer {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, nodetest.Endpoint(n)+"/2015-03-31/functions/age/invocations", bytes.NewReader([]byte(`{}`)))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Amz-Log-Type", "Tail")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var got zygoteAnswer
	if resp.StatusCode != http.StatusOK || resp.Header.Get("X-Amz-Function-Error") != "" || json.Unmarshal(raw, &got) != nil {
		t.Fatalf("invoke: %s %q", resp.Status, raw)
	}
	tail, _ := base64.StdEncoding.DecodeString(resp.Header.Get("X-Amz-Log-Result"))
	got.log = string(tail)
	return got
}
