package cli

import (
	"strings"
	"testing"

	"github.com/nimbus-serverless/nimbus/internal/node/nodetest"
)

// TestAsyncListsOfUnknownFunction: `tasks ls` and `dlq ls` of a function
// that does not exist fail in one line instead of printing "No tasks.";
// a function with none prints that, and a deleted function's tasks are
// still listed (records outlive their function).
func TestAsyncListsOfUnknownFunction(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a node")
	}
	n := nodetest.Start(t, nil)
	a := &asyncCLI{t: t, endpoint: nodetest.Endpoint(n)}
	for _, args := range [][]string{{"tasks", "ls", "nope"}, {"dlq", "ls", "nope"}, {"tasks", "ls", "nope", "-o", "json"}, {"dlq", "ls", "nope", "--all"}} {
		r := a.run(args...)
		want := "ResourceNotFoundException: Function not found: arn:aws:lambda:us-east-1:000000000000:function:nope"
		if got := OneLine(r.err); got != want || r.stdout != "" || r.stderr != "" {
			t.Errorf("nimbus %s: err %q, stdout %q, stderr %q; want %q alone", strings.Join(args, " "), got, r.stdout, r.stderr, want)
		}
	}

	a.mustRun("deploy", "quiet", "--runtime", "python3.11", "--handler", "app.handler", "--code", writeApp(t))
	if r := a.mustRun("tasks", "ls", "quiet"); r.stdout != "" || r.stderr != "No tasks.\n" {
		t.Errorf("tasks ls of a function without tasks: %q, %q", r.stdout, r.stderr)
	}
	if r := a.mustRun("dlq", "ls", "quiet"); r.stdout != "" || r.stderr != "No dead letters.\n" {
		t.Errorf("dlq ls of a function without dead letters: %q, %q", r.stdout, r.stderr)
	}
	id := a.submit("quiet", `{"name": "Ada"}`)
	a.waitTask("quiet", id, taskFinal)
	a.mustRun("rm", "quiet")
	if r := a.mustRun("tasks", "ls", "quiet"); !strings.Contains(r.stdout, id) {
		t.Errorf("tasks ls of a deleted function: %q, %q; want its task %s", r.stdout, r.stderr, id)
	}
}
