package node_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"

	"github.com/nimbus-serverless/nimbus/internal/node"
	"github.com/nimbus-serverless/nimbus/internal/node/nodetest"
)

// agePy answers whether its interpreter began as a zygote (the
// environment it was exec'd with, which /proc shows, is the zygote's) and
// what it sees of its function.
const agePy = `
import os, sys
def handler(event, context):
    return {"began": open("/proc/self/environ", "rb").read().decode().split("\0"), "foo": os.environ.get("FOO"),
            "handler": os.environ.get("_HANDLER"), "cwd": os.getcwd(), "zygote": os.environ.get("_NIMBUS_ZYGOTE"),
            "stdin": os.readlink("/proc/self/fd/0"), "argv": sys.argv, "tz": os.environ.get("TZ")}
`

// zygoteAnswer is what agePy answers.
type zygoteAnswer struct {
	Began                    []string
	Foo, Handler, Cwd, Stdin string
	Zygote                   *string
	Argv                     []string
	TZ                       string
}

// fromZygote reports whether the instance began as a zygote.
func (a zygoteAnswer) fromZygote() bool { return slices.Contains(a.Began, "_NIMBUS_ZYGOTE=1") }

// TestPythonZygote: a Python function's cold start is a pre-initialised
// interpreter, which sees the function's code, environment, working
// directory and arguments as any instance; a function whose environment
// sets a variable the interpreter reads at start (PYTHONHASHSEED) starts
// as before. Each case has a few cold starts (a new version each), since
// the node starts its zygote in the background.
func TestPythonZygote(t *testing.T) {
	for _, tc := range []struct {
		name   string
		env    map[string]string
		zygote bool
	}{
		{"zygote", map[string]string{"FOO": "bar"}, true},
		{"start variable", map[string]string{"FOO": "bar", "PYTHONHASHSEED": "7"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := nodetest.Start(t, func(c *node.Config) { c.PrestartedHelpers = 2 })
			if !n.Isolation().MinimalRoot {
				t.Skip("no zygotes without a root of the instance's own")
			}
			c := lambdaClient(n)
			_, err := c.CreateFunction(t.Context(), &lambda.CreateFunctionInput{
				FunctionName: aws.String("age"), Runtime: types.Runtime(pythonRuntime(t)), Handler: aws.String("app.handler"),
				Role:        aws.String("arn:aws:iam::000000000000:role/test"),
				Code:        &types.FunctionCode{ZipFile: nodetest.Zip(t, map[string]string{"app.py": agePy})},
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
			if got.Foo != "bar" || got.Handler != "app.handler" || got.Cwd != "/var/task" || got.Zygote != nil ||
				got.Stdin != "/dev/null" || len(got.Argv) != 1 || got.Argv[0] != "/var/runtime/bootstrap.py" || got.TZ != ":UTC" {
				t.Errorf("instance sees %+v, want the function's variables, /var/task, /dev/null as stdin, the bootstrap's argv", got)
			}
		})
	}
}

// invokeAge invokes the agePy function.
func invokeAge(t *testing.T, n *node.Node) zygoteAnswer {
	t.Helper()
	resp, err := http.Post(nodetest.Endpoint(n)+"/2015-03-31/functions/age/invocations", "application/json", bytes.NewReader([]byte(`{}`)))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var got zygoteAnswer
	if resp.StatusCode != http.StatusOK || resp.Header.Get("X-Amz-Function-Error") != "" || json.Unmarshal(raw, &got) != nil {
		t.Fatalf("invoke: %s %q", resp.Status, raw)
	}
	return got
}
