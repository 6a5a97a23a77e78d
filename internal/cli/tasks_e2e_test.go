package cli

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/node"
	"github.com/nimbus-serverless/nimbus/internal/node/nodetest"
)

// behaveDir builds the engine's aws-lambda-go test function (whose payload
// says how to misbehave) into a directory holding its bootstrap.
func behaveDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	cmd := exec.Command("go", "build", "-o", filepath.Join(dir, "bootstrap"), "../engine/testdata/behave")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build the test function: %v\n%s", err, out)
	}
	return dir
}

// asyncCLI runs nimbus commands against one node.
type asyncCLI struct {
	t        *testing.T
	endpoint string
}

func (a *asyncCLI) run(args ...string) result {
	a.t.Helper()
	return runCmd(a.t, a.endpoint, "", args...)
}

func (a *asyncCLI) mustRun(args ...string) result {
	a.t.Helper()
	r := a.run(args...)
	if r.err != nil {
		a.t.Fatalf("nimbus %s: %s (stderr %q)", strings.Join(args, " "), OneLine(r.err), r.stderr)
	}
	return r
}

func (a *asyncCLI) task(fn, id string) nimbus.Task {
	a.t.Helper()
	r := a.mustRun("tasks", "get", fn, id, "-o", "json")
	var task nimbus.Task
	if err := json.Unmarshal([]byte(r.stdout), &task); err != nil {
		a.t.Fatalf("tasks get -o json: %v: %q", err, r.stdout)
	}
	return task
}

// waitTask polls `tasks get` until cond holds.
func (a *asyncCLI) waitTask(fn, id string, cond func(nimbus.Task) bool) nimbus.Task {
	a.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		task := a.task(fn, id)
		if cond(task) {
			return task
		}
		if time.Now().After(deadline) {
			a.t.Fatalf("task %s: still %+v", id, task)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func taskFinal(t nimbus.Task) bool { return nimbus.TaskFinal(t.Status) }

// submit runs invoke --async and returns the task id it printed.
func (a *asyncCLI) submit(fn, payload string, extra ...string) string {
	a.t.Helper()
	r := a.mustRun(append([]string{"invoke", fn, "--async", "--payload", payload}, extra...)...)
	m := regexp.MustCompile(`^Task ([A-Za-z0-9_-]+) enqueued\.\n$`).FindStringSubmatch(r.stdout)
	if m == nil {
		a.t.Fatalf("invoke --async: got %q, want Task ID enqueued.", r.stdout)
	}
	return m[1]
}

// TestAsyncEndToEnd runs invoke --async, tasks and dlq against a real node
// running a Go function.
func TestAsyncEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a node and runs Go functions")
	}
	n := nodetest.Start(t, func(c *node.Config) {
		c.AsyncRetryBase = 20 * time.Millisecond
		c.AsyncAckWait = 3 * time.Second
	})
	endpoint := nodetest.Endpoint(n)
	a := &asyncCLI{t: t, endpoint: endpoint}
	a.mustRun("deploy", "behave", "--runtime", "provided.al2023", "--code", behaveDir(t), "--timeout", "30s")

	var ok nimbus.Task
	t.Run("invoke async and tasks", func(t *testing.T) {
		a := &asyncCLI{t: t, endpoint: endpoint}
		id := a.submit("behave", `{"echo": "hello"}`)
		ok = a.waitTask("behave", id, taskFinal)
		if ok.Status != nimbus.TaskSucceeded || ok.Attempts != 1 || !strings.Contains(ok.Result, "hello") {
			t.Fatalf("task = %+v, want Succeeded after 1 attempt with the echo", ok)
		}
		r := a.mustRun("tasks", "get", "behave", id)
		for _, want := range []string{"ID:                 " + id + "\n", "Status:             Succeeded\n", "Attempts:           1\n", "Destination:        -\n"} {
			if !strings.Contains(r.stdout, want) {
				t.Errorf("tasks get lacks %q:\n%s", want, r.stdout)
			}
		}
		r = a.mustRun("tasks", "ls", "behave")
		lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
		row := `^` + id + `\s+Succeeded\s+1\s+\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\s+[\d.]+m?s\s+\{"echo":"hello".*$` // cut at 48 characters
		if len(lines) != 2 || !strings.HasPrefix(lines[0], "ID ") || !regexpMatch(row, lines[1]) {
			t.Errorf("tasks ls: got\n%s", r.stdout)
		}
		for _, tc := range []struct {
			args []string
			n    int
		}{
			{[]string{"--status", "succeeded"}, 1},
			{[]string{"--status", "Failed"}, 0},
			{[]string{"--since", "1h"}, 1},
			{[]string{"--until", "1h"}, 0},
			{[]string{"--since", ok.Created.Add(-time.Second).Format(time.RFC3339), "--until", ok.Created.Add(time.Second).Format(time.RFC3339)}, 1},
		} {
			r := a.mustRun(append([]string{"tasks", "ls", "behave", "-o", "json"}, tc.args...)...)
			var list taskList
			if err := json.Unmarshal([]byte(r.stdout), &list); err != nil || len(list.Tasks) != tc.n {
				t.Errorf("tasks ls %q: got %q (%v), want %d tasks", tc.args, r.stdout, err, tc.n)
			}
		}
	})

	t.Run("task id", func(t *testing.T) {
		a := &asyncCLI{t: t, endpoint: endpoint}
		for range 2 {
			r := a.mustRun("invoke", "behave", "--async", "--task-id", "order-42", "--payload", `{"sleep_ms": 100}`, "-o", "json")
			if r.stdout != "{\n  \"taskId\": \"order-42\"\n}\n" {
				t.Errorf("invoke --async --task-id -o json: got %q", r.stdout)
			}
		}
		if got := a.waitTask("behave", "order-42", taskFinal); got.Status != nimbus.TaskSucceeded || got.Attempts != 1 {
			t.Errorf("task = %+v, want one successful attempt", got)
		}
		r := a.mustRun("tasks", "ls", "behave", "--limit", "1", "--all", "-o", "json")
		var list taskList
		if err := json.Unmarshal([]byte(r.stdout), &list); err != nil || len(list.Tasks) != 2 || list.NextMarker != "" {
			t.Errorf("tasks ls --limit 1 --all: got %q (%v), want the 2 tasks", r.stdout, err)
		}
		r = a.mustRun("tasks", "ls", "behave", "--limit", "1")
		if !strings.HasPrefix(r.stderr, "More tasks: --marker ") {
			t.Errorf("tasks ls --limit 1: stderr %q, want the next page's marker", r.stderr)
		}
	})

	t.Run("dead letters", func(t *testing.T) {
		a := &asyncCLI{t: t, endpoint: endpoint}
		id := a.submit("behave", `{"error":"boom"}`)
		failed := a.waitTask("behave", id, taskFinal)
		if failed.Status != nimbus.TaskFailed || failed.Attempts != 1+nimbus.DefaultRetryAttempts || !strings.Contains(failed.Error, "boom") {
			t.Fatalf("task = %+v, want Failed after %d attempts with boom", failed, 1+nimbus.DefaultRetryAttempts)
		}
		seq := a.deadLetter(id)
		r := a.mustRun("dlq", "ls", "behave")
		lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
		row := `^` + strconv.FormatUint(seq, 10) + `\s+` + id + `\s+RetriesExhausted\s+3\s+\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\s+.*boom`
		if len(lines) != 2 || !strings.HasPrefix(lines[0], "SEQ ") || !regexpMatch(row, lines[1]) {
			t.Errorf("dlq ls: got\n%s", r.stdout)
		}

		r = a.mustRun("dlq", "redrive", "behave", "--seq", strconv.FormatUint(seq, 10))
		if r.stdout != "Re-drove 1 dead letter of function behave.\n" {
			t.Errorf("dlq redrive --seq: got %q", r.stdout)
		}
		again := a.waitTask("behave", id, func(t nimbus.Task) bool { return taskFinal(t) && t.Updated.After(failed.Updated) })
		if again.Status != nimbus.TaskFailed {
			t.Errorf("re-driven task = %+v, want Failed again", again)
		}
		if seq2 := a.deadLetter(id); seq2 == seq {
			t.Errorf("after the re-drive the dead letter has the same seq %d", seq)
		}
		if r := a.run("dlq", "redrive", "behave", "--seq", strconv.FormatUint(seq, 10)); !strings.HasPrefix(OneLine(r.err), "function behave has no dead letter with --seq") {
			t.Errorf("re-drive a re-driven seq: got %q, %v", r.stdout, OneLine(r.err))
		}
		r = a.mustRun("dlq", "redrive", "behave", "-o", "json")
		if r.stdout != "{\n  \"redriven\": 1\n}\n" {
			t.Errorf("dlq redrive -o json: got %q", r.stdout)
		}
	})

	t.Run("stop", func(t *testing.T) {
		a := &asyncCLI{t: t, endpoint: endpoint}
		id := a.submit("behave", `{"sleep_ms": 20000}`)
		a.waitTask("behave", id, func(t nimbus.Task) bool { return t.Status == nimbus.TaskRunning })
		r := a.mustRun("tasks", "stop", "behave", id)
		if r.stdout != "Stopping task "+id+": it was running.\n" && r.stdout != "Stopped task "+id+".\n" {
			t.Errorf("tasks stop: got %q", r.stdout)
		}
		if got := a.waitTask("behave", id, taskFinal); got.Status != nimbus.TaskStopped {
			t.Errorf("stopped task = %+v", got)
		}
		r = a.run("tasks", "stop", "behave", ok.ID)
		if got, want := OneLine(r.err), "ResourceConflictException: Task "+ok.ID+" has already finished: it is Succeeded"; got != want {
			t.Errorf("stop a finished task: got %q, want %q", got, want)
		}
	})

	t.Run("errors", func(t *testing.T) {
		a := &asyncCLI{t: t, endpoint: endpoint}
		for _, tc := range []struct {
			args []string
			want string
		}{
			{[]string{"tasks", "get", "behave", "nosuch"}, "ResourceNotFoundException: Task nosuch of function behave not found"},
			{[]string{"tasks", "stop", "behave", "nosuch"}, "ResourceNotFoundException: Task nosuch of function behave not found"},
			{[]string{"tasks", "get", "behave", "a/b c"}, `InvalidParameterValueException: Invalid task id "a/b c"`},
			{[]string{"invoke", "behave", "--async", "--task-id", "a b"}, `InvalidParameterValueException: Invalid task id "a b"`},
			{[]string{"invoke", "nosuch", "--async"}, "ResourceNotFoundException: Function not found:"},
			{[]string{"dlq", "redrive", "nosuch"}, "ResourceNotFoundException: Function not found:"},
			{[]string{"tasks", "ls", "a b"}, "ValidationException:"},
		} {
			r := a.run(tc.args...)
			if got := OneLine(r.err); !strings.HasPrefix(got, tc.want) {
				t.Errorf("nimbus %q: got error %q, want it to start with %q", tc.args, got, tc.want)
			}
		}
	})
}

// deadLetter returns the seq of the task's dead letter, checking its payload.
func (a *asyncCLI) deadLetter(id string) uint64 {
	a.t.Helper()
	r := a.mustRun("dlq", "ls", "behave", "--all", "-o", "json")
	var list deadLetterList
	if err := json.Unmarshal([]byte(r.stdout), &list); err != nil {
		a.t.Fatalf("dlq ls -o json: %v: %q", err, r.stdout)
	}
	for _, d := range list.DeadLetters {
		if d.TaskID == id {
			var payload bytes.Buffer
			if err := json.Compact(&payload, d.Payload); err != nil || payload.String() != `{"error":"boom"}` || d.Condition != "RetriesExhausted" {
				a.t.Errorf("dead letter = %+v, payload %s", d, d.Payload)
			}
			return d.Seq
		}
	}
	a.t.Fatalf("dlq ls: no dead letter of task %s in %q", id, r.stdout)
	return 0
}
