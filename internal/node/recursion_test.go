package node_test

import (
	"encoding/json"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/async"
	"github.com/nimbus-serverless/nimbus/internal/node/nodetest"
	"github.com/nimbus-serverless/nimbus/internal/recursion"
	"github.com/nimbus-serverless/nimbus/internal/testenv"
)

// loopPy invokes itself asynchronously with boto3 (Debian's, which sends
// _X_AMZN_TRACE_ID as X-Amzn-Trace-Id, as every AWS SDK does in a
// function) until event["depth"] reaches 30, and reports each run to the
// test's server at REPORT.
const loopPy = `
import json, os, urllib.request
lam = None
def handler(event, context):
    global lam
    if lam is None: # in the handler: the import takes longer than the init timeout on a busy machine
        import boto3
        lam = boto3.client("lambda", endpoint_url=os.environ["NIMBUS_API"], region_name="us-east-1",
                           aws_access_key_id="AKIDEXAMPLE", aws_secret_access_key="secret")
    depth = event.get("depth", 0)
    urllib.request.urlopen(urllib.request.Request(os.environ["REPORT"], data=json.dumps(
        {"depth": depth, "trace": os.environ.get("_X_AMZN_TRACE_ID", "")}).encode()), timeout=10).read()
    if depth < 30:
        lam.invoke(FunctionName=context.function_name, InvocationType="Event", Payload=json.dumps({"depth": depth + 1}))
    return depth
`

// TestRecursiveLoopAsync: a Python function that invokes itself through
// the Invoke API in a loop runs 16 times (Lambda's limit), and the 17th
// event is a dead letter with condition
// RecursiveInvocationException, not retried; with RecursiveLoop Allow the
// loop runs to its own end.
func TestRecursiveLoopAsync(t *testing.T) {
	if _, err := os.Stat("/usr/bin/python3"); err != nil {
		testenv.Missing(t, "/usr/bin/python3", err)
	}
	if _, err := os.Stat("/usr/lib/python3/dist-packages/boto3"); err != nil {
		testenv.Missing(t, "Debian's python3-boto3", err)
	}
	n := nodetest.Start(t, nil)
	c := lambdaClient(n)
	runs := make(chan struct {
		Depth int
		Trace string
	}, 100)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var run struct {
			Depth int
			Trace string
		}
		if json.NewDecoder(r.Body).Decode(&run) == nil {
			runs <- run
		}
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })

	for _, allow := range []bool{false, true} {
		name := "loop-terminate"
		if allow {
			name = "loop-allow"
		}
		_, err := c.CreateFunction(t.Context(), &lambda.CreateFunctionInput{
			FunctionName: aws.String(name), Runtime: types.RuntimePython311, Handler: aws.String("app.handler"),
			Role:    aws.String("arn:aws:iam::000000000000:role/test"),
			Code:    &types.FunctionCode{ZipFile: nodetest.Zip(t, map[string]string{"app.py": loopPy})},
			Timeout: aws.Int32(30),
			Environment: &types.Environment{Variables: map[string]string{
				"NIMBUS_API": nodetest.Endpoint(n), "REPORT": "http://" + ln.Addr().String()}},
		})
		if err != nil {
			t.Fatal(err)
		}
		setNetwork(t, n, name, nimbus.NetworkHost) // to reach the API and the test's server on loopback
		waitActive(t, c, name)
		if allow {
			if _, err := c.PutFunctionRecursionConfig(t.Context(), &lambda.PutFunctionRecursionConfigInput{
				FunctionName: aws.String(name), RecursiveLoop: types.RecursiveLoopAllow}); err != nil {
				t.Fatal(err)
			}
		}
		// A first run that stops at once: boto3 imported, the instance warm.
		if out, err := c.Invoke(t.Context(), &lambda.InvokeInput{FunctionName: aws.String(name), Payload: []byte(`{"depth":99}`)}); err != nil || out.FunctionError != nil {
			t.Fatalf("%v %+v", err, out)
		}
		<-runs
		if _, err := c.Invoke(t.Context(), &lambda.InvokeInput{FunctionName: aws.String(name), InvocationType: types.InvocationTypeEvent,
			Payload: []byte(`{"depth":0}`)}); err != nil {
			t.Fatal(err)
		}
		want := recursion.Limit
		if allow {
			want = 31
		}
		var depths []int
		for len(depths) < want {
			select {
			case run := <-runs:
				if !strings.Contains(run.Trace, ";Lineage="+recursion.Key(name)+":") {
					t.Errorf("run %d's trace header %q has no lineage of the function", run.Depth, run.Trace)
				}
				depths = append(depths, run.Depth)
			case <-time.After(60 * time.Second):
				t.Fatalf("%s: %d runs, want %d", name, len(depths), want)
			}
		}
		slices.Sort(depths)
		if depths[0] != 0 || depths[len(depths)-1] != want-1 {
			t.Fatalf("%s ran at depths %v", name, depths)
		}
		if allow {
			continue
		}
		// The 17th event ends as a dead letter at once, and nothing more runs.
		var dls struct{ DeadLetters []nimbus.DeadLetter }
		for deadline := time.Now().Add(30 * time.Second); len(dls.DeadLetters) == 0; time.Sleep(50 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatal("no dead letter for the 17th event")
			}
			nodetest.Call(t, nodetest.Endpoint(n), aws.Credentials{AccessKeyID: "AKIDEXAMPLE", SecretAccessKey: "secret"}, http.MethodGet, "/nimbus/v1/functions/"+name+"/dead-letters", nil, &dls)
		}
		dl := dls.DeadLetters[0]
		var ev struct{ Depth int }
		if err := json.Unmarshal(dl.Payload, &ev); err != nil || dl.Condition != async.CondRecursiveLoop || dl.Attempts != 1 || !strings.Contains(dl.Reason, "recursive loop") ||
			ev.Depth != recursion.Limit {
			t.Fatalf("dead letter %+v (payload %s)", dl, dl.Payload)
		}
		select {
		case run := <-runs:
			t.Fatalf("%s ran at depth %d after the loop was stopped", name, run.Depth)
		case <-time.After(time.Second):
		}
	}
}
