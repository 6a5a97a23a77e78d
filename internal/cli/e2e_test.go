package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nimbus-serverless/nimbus/internal/node/nodetest"
	"github.com/nimbus-serverless/nimbus/internal/sandbox/process"
	"github.com/nimbus-serverless/nimbus/internal/testenv"
)

func TestMain(m *testing.M) {
	process.MaybeInit() // the sandbox re-executes this binary for each instance
	// The commands sign with this key (the fakes check that they sign,
	// nodes in these tests run with --auth none), never with a key of
	// the machine's own: no AWS variable or profile, no local node's file.
	for _, k := range []string{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"} {
		os.Unsetenv(k)
	}
	os.Setenv(AccessKeyEnv, "nimbus")
	os.Setenv(SecretKeyEnv, "nimbus")
	os.Exit(m.Run())
}

// TestEndToEnd runs the client against a real node: deploy, list, show,
// invoke, logs, update, manifest deploy, delete, and the errors users meet.
func TestEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a node and runs Python functions")
	}
	n := nodetest.Start(t, nil)
	endpoint := nodetest.Endpoint(n)
	run := func(t *testing.T, stdin string, args ...string) result {
		t.Helper()
		return runCmd(t, endpoint, stdin, args...)
	}
	mustRun := func(t *testing.T, args ...string) result {
		t.Helper()
		r := run(t, "", args...)
		if r.err != nil {
			t.Fatalf("nimbus %s: %s (stderr %q)", strings.Join(args, " "), OneLine(r.err), r.stderr)
		}
		return r
	}

	r := mustRun(t, "runtimes", "-o", "json")
	var runtimes []string
	if err := json.Unmarshal([]byte(r.stdout), &runtimes); err != nil {
		t.Fatalf("runtimes -o json: %v: %q", err, r.stdout)
	}
	if !slices.Contains(runtimes, "python3.11") {
		testenv.Missing(t, "the python3.11 runtime", fmt.Errorf("the node has %q", runtimes))
	}
	if r := mustRun(t, "runtimes"); !strings.HasPrefix(r.stdout, "RUNTIME\n") || !strings.Contains(r.stdout, "\npython3.11\n") {
		t.Errorf("runtimes: got %q", r.stdout)
	}

	dir := writeApp(t)
	t.Run("deploy", func(t *testing.T) {
		r := mustRun(t, "deploy", "hello", "--runtime", "python3.11", "--handler", "app.handler", "--code", dir,
			"--description", "greets")
		for _, want := range []string{"Name:          hello\n", "Runtime:       python3.11\n", "State:         Active\n", "Description:   greets\n"} {
			if !strings.Contains(r.stdout, want) {
				t.Errorf("deploy output lacks %q:\n%s", want, r.stdout)
			}
		}
		if !strings.Contains(r.stderr, "Created function hello") {
			t.Errorf("stderr: got %q, want Created function hello...", r.stderr)
		}
	})

	t.Run("ls", func(t *testing.T) {
		r := mustRun(t, "ls")
		lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
		if len(lines) != 2 || !strings.HasPrefix(lines[0], "NAME") || !regexpMatch(`^hello\s+python3\.11\s+128MB\s+3s\s+Active\s+\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$`, lines[1]) {
			t.Errorf("ls: got\n%s", r.stdout)
		}
		r = mustRun(t, "ls", "-o", "json")
		var views []functionView
		if err := json.Unmarshal([]byte(r.stdout), &views); err != nil || len(views) != 1 || views[0].FunctionName != "hello" {
			t.Errorf("ls -o json: got %q (%v)", r.stdout, err)
		}
	})

	t.Run("get", func(t *testing.T) {
		r := mustRun(t, "get", "hello", "-o", "json")
		var v functionView
		if err := json.Unmarshal([]byte(r.stdout), &v); err != nil {
			t.Fatalf("get -o json: %v: %q", err, r.stdout)
		}
		if v.Runtime != "python3.11" || v.Handler != "app.handler" || v.MemorySize != 128 || v.Timeout != 3 ||
			v.State != "Active" || v.CodeSize == 0 || v.Description != "greets" {
			t.Errorf("get: got %+v", v)
		}
	})

	event := filepath.Join(t.TempDir(), "event.json")
	if err := os.WriteFile(event, []byte(`{"name": "file"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Run("invoke", func(t *testing.T) {
		tests := []struct {
			args  []string
			stdin string
			want  map[string]any
		}{
			{[]string{"--payload", `{"name": "Ada"}`}, "", map[string]any{"hello": "Ada"}},
			{[]string{"--payload", "@" + event}, "", map[string]any{"hello": "file"}},
			{[]string{"--payload", "@-"}, `{"name": "stdin"}`, map[string]any{"hello": "stdin"}},
			{nil, "", map[string]any{"hello": nil}},
		}
		for _, tc := range tests {
			r := run(t, tc.stdin, append([]string{"invoke", "hello"}, tc.args...)...)
			if r.err != nil {
				t.Fatalf("invoke %q: %s", tc.args, OneLine(r.err))
			}
			var got map[string]any
			if err := json.Unmarshal([]byte(r.stdout), &got); err != nil || !reflect.DeepEqual(got, tc.want) {
				t.Errorf("invoke %q: got %q (%v), want %v", tc.args, r.stdout, err, tc.want)
			}
			if r.stderr != "" {
				t.Errorf("invoke %q: stderr %q, want none without --logs", tc.args, r.stderr)
			}
		}
		r := mustRun(t, "invoke", "hello", "--logs", "--payload", `{"name": "logs"}`)
		if !strings.Contains(r.stderr, "START RequestId:") || !strings.Contains(r.stderr, "REPORT RequestId:") {
			t.Errorf("invoke --logs: stderr lacks the log tail: %q", r.stderr)
		}
		if !strings.Contains(r.stdout, `"logs"`) {
			t.Errorf("invoke --logs: stdout %q", r.stdout)
		}
	})

	t.Run("logs", func(t *testing.T) {
		r := mustRun(t, "logs", "hello")
		if !strings.Contains(r.stdout, "START RequestId:") || !strings.Contains(r.stdout, "REPORT RequestId:") {
			t.Errorf("logs: got %q", r.stdout)
		}
		r = mustRun(t, "logs", "hello", "--limit", "2", "-o", "json")
		lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
		if len(lines) != 2 {
			t.Fatalf("logs --limit 2: got %d lines: %q", len(lines), r.stdout)
		}
		for _, l := range lines {
			var rec logRecord
			if err := json.Unmarshal([]byte(l), &rec); err != nil || rec.Function != "hello" || rec.Time == "" {
				t.Errorf("logs -o json: record %q (%v)", l, err)
			}
		}
	})

	t.Run("logs follow", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		root, stdout, _ := newRoot(endpoint, "", "logs", "hello", "--follow", "--limit", "1")
		done := make(chan error, 1)
		go func() { done <- root.ExecuteContext(ctx) }()
		// It prints the last line logged, then new ones. The follower may
		// connect after an invocation ends: invoke until it prints a REPORT
		// of one of these.
		var ids []string
		for deadline := time.Now().Add(20 * time.Second); !containsAny(stdout.String(), ids); {
			if time.Now().After(deadline) {
				t.Fatalf("logs --follow printed %q, want an invocation's lines", stdout.String())
			}
			r := mustRun(t, "invoke", "hello", "--logs", "--payload", `{"name": "follow"}`)
			_, rest, ok := strings.Cut(r.stderr, "REPORT RequestId: ")
			id, _, _ := strings.Cut(rest, "\t")
			if !ok || id == "" {
				t.Fatalf("invoke --logs printed no REPORT line: %q", r.stderr)
			}
			ids = append(ids, "REPORT RequestId: "+id)
			time.Sleep(50 * time.Millisecond)
		}
		// --limit 1: of the earlier invocations' lines, one at most.
		if n := strings.Count(stdout.String(), "REPORT RequestId:"); n > len(ids)+1 {
			t.Errorf("logs --follow --limit 1 printed %d REPORT lines after %d invocations:\n%s", n, len(ids), stdout.String())
		}
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("logs --follow: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("logs --follow did not end when its context was cancelled")
		}
	})

	t.Run("update", func(t *testing.T) {
		app := "def handler(event, context):\n    return {\"hello\": event.get(\"name\"), \"version\": 2}\n"
		if err := os.WriteFile(filepath.Join(dir, "app.py"), []byte(app), 0o644); err != nil {
			t.Fatal(err)
		}
		r := mustRun(t, "deploy", "hello", "--runtime", "python3.11", "--handler", "app.handler", "--code", dir,
			"--memory", "256", "--timeout", "30s", "--env", "GREETING=hey")
		if !strings.Contains(r.stderr, "Updated function hello") {
			t.Errorf("stderr: got %q, want Updated function hello...", r.stderr)
		}
		r = mustRun(t, "get", "hello", "-o", "json")
		var v functionView
		if err := json.Unmarshal([]byte(r.stdout), &v); err != nil {
			t.Fatal(err)
		}
		if v.MemorySize != 256 || v.Timeout != 30 || v.Description != "" || v.Environment == nil || v.Environment.Variables["GREETING"] != "hey" {
			t.Errorf("after the update: got %+v", v)
		}
		r = mustRun(t, "invoke", "hello", "--payload", `{"name": "v2"}`)
		var got map[string]any
		if err := json.Unmarshal([]byte(r.stdout), &got); err != nil || got["version"] != 2.0 {
			t.Errorf("invoke after the update: got %q (%v), want version 2", r.stdout, err)
		}
	})

	t.Run("manifest", func(t *testing.T) {
		root := t.TempDir()
		for _, name := range []string{"one", "two"} {
			if err := os.MkdirAll(filepath.Join(root, "src", name), 0o755); err != nil {
				t.Fatal(err)
			}
			code := "import os\ndef handler(event, context):\n    return {\"fn\": \"" + name + "\", \"greeting\": os.environ.get(\"GREETING\")}\n"
			if err := os.WriteFile(filepath.Join(root, "src", name, "main.py"), []byte(code), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		manifest := `functions:
  - name: one
    runtime: python3.11
    handler: main.handler
    code: src/one
    memory: 256
    timeout: 1m
    environment: {GREETING: hello}
  - name: two
    runtime: python3.11
    handler: main.handler
    code: ./src/two
`
		path := filepath.Join(root, "nimbus.yaml")
		if err := os.WriteFile(path, []byte(manifest), 0o644); err != nil {
			t.Fatal(err)
		}
		r := mustRun(t, "deploy", "-f", path)
		lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
		if len(lines) != 3 || !strings.HasPrefix(lines[1], "one ") || !strings.HasPrefix(lines[2], "two ") {
			t.Errorf("deploy -f: got\n%s", r.stdout)
		}
		r = mustRun(t, "invoke", "one")
		var got map[string]any
		if err := json.Unmarshal([]byte(r.stdout), &got); err != nil || got["fn"] != "one" || got["greeting"] != "hello" {
			t.Errorf("invoke one: got %q (%v)", r.stdout, err)
		}
		r = mustRun(t, "ls", "-o", "json")
		var views []functionView
		if err := json.Unmarshal([]byte(r.stdout), &views); err != nil || len(views) != 3 {
			t.Errorf("ls after the manifest: got %q (%v), want hello, one and two", r.stdout, err)
		}
	})

	t.Run("function error", func(t *testing.T) {
		bad := filepath.Join(t.TempDir(), "bad")
		if err := os.Mkdir(bad, 0o755); err != nil {
			t.Fatal(err)
		}
		code := "def handler(event, context):\n    raise ValueError(\"nope\")\n"
		if err := os.WriteFile(filepath.Join(bad, "app.py"), []byte(code), 0o644); err != nil {
			t.Fatal(err)
		}
		mustRun(t, "deploy", "bad", "--runtime", "python3.11", "--handler", "app.handler", "--code", bad)
		r := run(t, "", "invoke", "bad")
		if got, want := OneLine(r.err), "function error: ValueError: nope"; got != want {
			t.Errorf("invoke bad: got error %q, want %q", got, want)
		}
		var payload map[string]any
		if err := json.Unmarshal([]byte(r.stdout), &payload); err != nil || payload["errorType"] != "ValueError" {
			t.Errorf("invoke bad: stdout %q (%v), want the error payload", r.stdout, err)
		}
	})

	t.Run("errors", func(t *testing.T) {
		tests := []struct {
			args       []string
			wantPrefix string
		}{
			{[]string{"invoke", "nosuch"}, "ResourceNotFoundException: Function not found: arn:aws:lambda:us-east-1:000000000000:function:nosuch"},
			{[]string{"get", "nosuch"}, "ResourceNotFoundException: Function not found:"},
			{[]string{"logs", "nosuch"}, "ResourceNotFoundException: Function not found:"},
			{[]string{"rm", "nosuch"}, "delete nosuch: ResourceNotFoundException: Function not found:"},
			{[]string{"invoke", "hello", "--payload", "{oops"}, "invalid --payload: not valid JSON: invalid character 'o'"},
			{[]string{"deploy", "x", "--runtime", "python9.9", "--handler", "app.handler", "--code", dir},
				"deploy x: InvalidParameterValueException: The runtime parameter of python9.9 is not supported."},
			{[]string{"deploy", "x", "--runtime", "python3.11", "--handler", "app.handler", "--code", dir, "--env", "AWS_REGION=x"},
				"deploy x: InvalidParameterValueException: Lambda was unable to configure your environment variables"},
		}
		for _, tc := range tests {
			r := run(t, "", tc.args...)
			if got := OneLine(r.err); !strings.HasPrefix(got, tc.wantPrefix) {
				t.Errorf("nimbus %s: got error %q, want it to start with %q", strings.Join(tc.args, " "), got, tc.wantPrefix)
			}
		}
		r := runCmd(t, closedEndpoint(t), "", "ls")
		if got := OneLine(r.err); !strings.HasPrefix(got, "cannot reach Nimbus at http://127.0.0.1:") || !strings.HasSuffix(got, "is `nimbus serve` running?") {
			t.Errorf("endpoint down: got %q", got)
		}
	})

	t.Run("rm", func(t *testing.T) {
		r := mustRun(t, "rm", "hello", "one", "two", "bad")
		if want := "Deleted function hello.\nDeleted function one.\nDeleted function two.\nDeleted function bad.\n"; r.stdout != want {
			t.Errorf("rm: got %q, want %q", r.stdout, want)
		}
		if r := run(t, "", "get", "hello"); !strings.HasPrefix(OneLine(r.err), "ResourceNotFoundException") {
			t.Errorf("get after rm: got %q, want ResourceNotFoundException", OneLine(r.err))
		}
		r = run(t, "", "ls")
		if r.err != nil || r.stdout != "" || r.stderr != "No functions.\n" {
			t.Errorf("ls after rm: got %q, %q, %v", r.stdout, r.stderr, r.err)
		}
	})
}

func containsAny(s string, subs []string) bool {
	return slices.ContainsFunc(subs, func(sub string) bool { return strings.Contains(s, sub) })
}

func regexpMatch(pattern, s string) bool {
	return regexp.MustCompile(pattern).MatchString(s)
}
