package cli

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

const appPy = "def handler(event, context):\n    return {\"hello\": event.get(\"name\")}\n"

// writeApp writes a directory holding app.py and returns it.
func writeApp(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "hello")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "app.py"), []byte(appPy), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// zipEntries lists the names in a zip archive.
func zipEntries(t *testing.T, b []byte) []string {
	t.Helper()
	zr, err := zip.NewReader(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatalf("the code sent is not a zip archive: %v", err)
	}
	var names []string
	for _, f := range zr.File {
		names = append(names, f.Name)
	}
	return names
}

// field decodes one field of a recorded request body.
func field[T any](t *testing.T, r fakeReq, name string) T {
	t.Helper()
	var v T
	raw, ok := r.Body[name]
	if !ok {
		t.Fatalf("%s %s: body has no field %s: %s", r.Method, r.Path, name, r.Raw)
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatalf("field %s: %v", name, err)
	}
	return v
}

func addSampleFunctions(f *fakeNimbus) {
	reserved := 5
	f.add(&fakeFn{FunctionName: "alpha", Runtime: "python3.11", Handler: "app.handler", MemorySize: 256, Timeout: 30,
		Description: "greets", Environment: &fakeEnv{Variables: map[string]string{"GREETING": "hi", "A_LEVEL": "2"}},
		CodeSize: 312, reserved: &reserved})
	f.add(&fakeFn{FunctionName: "beta", Runtime: "nodejs20.x", Handler: "index.handler", CodeSize: 2048})
	f.add(&fakeFn{FunctionName: "gamma", Runtime: "provided.al2023", CodeSize: 5 << 20})
}

func TestLs(t *testing.T) {
	f := newFake(t)
	f.pageSize = 2
	addSampleFunctions(f)
	for _, tc := range []struct{ args, golden string }{
		{"ls", "ls.golden"},
		{"ls -o json", "ls.json.golden"},
	} {
		t.Run(tc.args, func(t *testing.T) {
			r := runCmd(t, f.URL, "", strings.Fields(tc.args)...)
			if r.err != nil {
				t.Fatalf("ls: %v", r.err)
			}
			golden(t, tc.golden, r.stdout)
		})
	}
	// The second page was asked for with the first one's marker.
	var markers []string
	for _, r := range f.requests() {
		if r.Path == "/2015-03-31/functions" {
			markers = append(markers, r.Query)
		}
	}
	if want := []string{"", "Marker=beta", "", "Marker=beta"}; !slices.Equal(markers, want) {
		t.Errorf("list queries: got %q, want %q", markers, want)
	}
}

func TestLsEmpty(t *testing.T) {
	f := newFake(t)
	r := runCmd(t, f.URL, "", "ls")
	if r.err != nil || r.stdout != "" || r.stderr != "No functions.\n" {
		t.Errorf("ls: got stdout %q, stderr %q, err %v; want no output, \"No functions.\"", r.stdout, r.stderr, r.err)
	}
	r = runCmd(t, f.URL, "", "ls", "-o", "json")
	if r.err != nil || r.stdout != "[]\n" {
		t.Errorf("ls -o json: got %q, %v; want []", r.stdout, r.err)
	}
}

func TestGet(t *testing.T) {
	f := newFake(t)
	addSampleFunctions(f)
	for _, tc := range []struct{ args, golden string }{
		{"get alpha", "get.golden"},
		{"get alpha -o json", "get.json.golden"},
		{"get gamma", "get-provided.golden"},
	} {
		t.Run(tc.args, func(t *testing.T) {
			r := runCmd(t, f.URL, "", strings.Fields(tc.args)...)
			if r.err != nil {
				t.Fatalf("get: %v", r.err)
			}
			golden(t, tc.golden, r.stdout)
		})
	}
	r := runCmd(t, f.URL, "", "get", "nope")
	want := "ResourceNotFoundException: Function not found: arn:aws:lambda:us-east-1:000000000000:function:nope"
	if got := OneLine(r.err); got != want {
		t.Errorf("get nope: got error %q, want %q", got, want)
	}
}

func TestRuntimes(t *testing.T) {
	f := newFake(t)
	for _, tc := range []struct{ args, golden string }{
		{"runtimes", "runtimes.golden"},
		{"runtimes -o json", "runtimes.json.golden"},
	} {
		t.Run(tc.args, func(t *testing.T) {
			r := runCmd(t, f.URL, "", strings.Fields(tc.args)...)
			if r.err != nil {
				t.Fatalf("runtimes: %v", r.err)
			}
			golden(t, tc.golden, r.stdout)
		})
	}
	// Nimbus's own endpoints are signed like the SDK's requests.
	for _, r := range f.requests() {
		if !strings.HasPrefix(r.Header.Get("Authorization"), "AWS4-HMAC-SHA256 Credential=nimbus/") {
			t.Errorf("%s: got Authorization %q, want a SigV4 signature", r.Path, r.Header.Get("Authorization"))
		}
	}
}

func TestRm(t *testing.T) {
	f := newFake(t)
	addSampleFunctions(f)
	r := runCmd(t, f.URL, "", "rm", "alpha", "beta")
	if r.err != nil {
		t.Fatalf("rm: %v", r.err)
	}
	if want := "Deleted function alpha.\nDeleted function beta.\n"; r.stdout != want {
		t.Errorf("rm: got %q, want %q", r.stdout, want)
	}
	if f.function("alpha") != nil || f.function("beta") != nil || f.function("gamma") == nil {
		t.Errorf("rm: alpha and beta should be gone, gamma kept")
	}
	r = runCmd(t, f.URL, "", "rm", "alpha")
	if got, want := OneLine(r.err), "delete alpha: ResourceNotFoundException: Function not found: arn:aws:lambda:us-east-1:000000000000:function:alpha"; got != want {
		t.Errorf("rm again: got %q, want %q", got, want)
	}
}

func TestLogs(t *testing.T) {
	f := newFake(t)
	addSampleFunctions(f)
	tests := []struct {
		args      []string
		want      string
		wantQuery string
	}{
		{[]string{"logs", "alpha"}, "START RequestId: r1\nhello\nEND RequestId: r1\n", ""},
		{[]string{"logs", "alpha", "--limit", "0"}, "START RequestId: r1\nhello\nEND RequestId: r1\n", "limit=0"},
		{[]string{"logs", "alpha", "--limit", "1"}, "START RequestId: r1\nhello\nEND RequestId: r1\n", "limit=1"},
		{[]string{"logs", "alpha", "--limit", "2", "-o", "json"},
			`{"function":"alpha","line":"START RequestId: r1","requestId":"r1","time":"2024-05-01T12:00:00Z"}` + "\n" +
				`{"function":"alpha","line":"hello\n","requestId":"r1","time":"2024-05-01T12:00:01Z"}` + "\n" +
				`{"function":"alpha","line":"END RequestId: r1","requestId":"r1","time":"2024-05-01T12:00:02Z"}` + "\n",
			"limit=2"},
		{[]string{"logs", "alpha", "--since", "1h", "--until", "2099-01-01T00:00:00Z", "--request-id", "r1", "--filter", "a b"},
			"START RequestId: r1\nhello\nEND RequestId: r1\n", "filter=a%20b&request_id=r1&since=1h&until=2099-01-01T00%3A00%3A00Z"},
		{[]string{"logs", "alpha", "--since", "2026-12-06T07:00:00+01:00"},
			"START RequestId: r1\nhello\nEND RequestId: r1\n", "since=2026-12-06T07%3A00%3A00%2B01%3A00"},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			before := len(f.requests())
			r := runCmd(t, f.URL, "", tc.args...)
			if r.err != nil {
				t.Fatalf("logs: %v", r.err)
			}
			if r.stdout != tc.want {
				t.Errorf("got %q, want %q", r.stdout, tc.want)
			}
			if got := f.requests()[before].Query; got != tc.wantQuery {
				t.Errorf("query: got %q, want %q", got, tc.wantQuery)
			}
		})
	}
	bad := []struct {
		args []string
		want string
	}{
		{[]string{"logs", "nope"}, "ResourceNotFoundException: Function not found: arn:aws:lambda:us-east-1:000000000000:function:nope"},
		{[]string{"logs", "alpha", "--limit", "-1"}, "--limit must be 0 to 10000, not -1"},
		{[]string{"logs", "alpha", "--limit", "10001"}, "--limit must be 0 to 10000, not 10001"},
		{[]string{"logs", "alpha", "--since", "yesterday"}, `--since: "yesterday" is neither an RFC 3339 time (2006-01-02T15:04:05Z) nor a duration before now (1h, 30m)`},
		{[]string{"logs", "alpha", "--until", "-5m"}, `--until: "-5m" is neither an RFC 3339 time (2006-01-02T15:04:05Z) nor a duration before now (1h, 30m)`},
		{[]string{"logs", "alpha", "--since", "1h", "--until", "2h"}, "--until (2h) is before --since (1h)"},
		{[]string{"logs", "alpha", "--follow", "--until", "1h"}, "--until cannot be used with --follow"},
		{[]string{"logs"}, "accepts 1 arg(s), received 0"},
	}
	for _, tc := range bad {
		r := runCmd(t, f.URL, "", tc.args...)
		if got := OneLine(r.err); got != tc.want {
			t.Errorf("%q: got error %q, want %q", tc.args, got, tc.want)
		}
	}
}

func TestLogsFollow(t *testing.T) {
	f := newFake(t)
	addSampleFunctions(f)
	// The stream's goroutines, the client's and the server's, all end.
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	root, stdout, _ := newRoot(f.URL, "", "logs", "alpha", "--follow", "--limit", "3")
	done := make(chan error, 1)
	go func() { done <- root.ExecuteContext(ctx) }()
	const want = "START RequestId: r1\nhello\nEND RequestId: r1\n"
	for deadline := time.Now().Add(10 * time.Second); stdout.String() != want; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("logs --follow printed %q, want %q", stdout.String(), want)
		}
	}
	select {
	case err := <-done:
		t.Fatalf("logs --follow ended (%v) while the stream was open", err)
	default:
	}
	cancel() // as an interrupt does
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("logs --follow: got error %v, want none after an interrupt", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("logs --follow did not end when its context was cancelled")
	}
	if q := f.requests()[0].Query; q != "follow=true&limit=3" {
		t.Errorf("query: got %q, want follow=true&limit=3", q)
	}
}

func TestInvoke(t *testing.T) {
	f := newFake(t)
	addSampleFunctions(f)
	f.add(&fakeFn{FunctionName: "fail", Runtime: "python3.11", Handler: "app.handler"})
	eventFile := filepath.Join(t.TempDir(), "event.json")
	if err := os.WriteFile(eventFile, []byte(`{"name": "file"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		args       []string
		stdin      string
		wantOut    string
		wantErrOut string
		wantSent   string
		wantErr    string
	}{
		{name: "no payload", args: []string{"invoke", "alpha"}, wantOut: `{"echo":{}}` + "\n", wantSent: ""},
		{name: "literal", args: []string{"invoke", "alpha", "--payload", `{"name":"Ada"}`},
			wantOut: `{"echo":{"name":"Ada"}}` + "\n", wantSent: `{"name":"Ada"}`},
		{name: "file", args: []string{"invoke", "alpha", "--payload", "@" + eventFile},
			wantOut: `{"echo":{"name":"file"}}` + "\n", wantSent: `{"name": "file"}`},
		{name: "stdin", args: []string{"invoke", "alpha", "--payload", "@-"}, stdin: `[1, 2]`,
			wantOut: `{"echo":[1,2]}` + "\n", wantSent: `[1, 2]`},
		{name: "logs", args: []string{"invoke", "alpha", "--logs"}, wantOut: `{"echo":{}}` + "\n",
			wantErrOut: "START RequestId: 1\nhello from the log\nEND RequestId: 1\n"},
		{name: "json output", args: []string{"invoke", "alpha", "-o", "json", "--payload", "3"},
			wantOut: `{"echo":3}` + "\n", wantSent: "3"},
		{name: "function error", args: []string{"invoke", "fail", "--logs"},
			wantOut:    `{"errorMessage":"boom","errorType":"ValueError","stackTrace":["app.py:2"]}` + "\n",
			wantErrOut: "START RequestId: 1\nhello from the log\nEND RequestId: 1\n",
			wantErr:    "function error: ValueError: boom"},
		{name: "unknown function", args: []string{"invoke", "nope"},
			wantErr: "ResourceNotFoundException: Function not found: arn:aws:lambda:us-east-1:000000000000:function:nope"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := len(f.requests())
			r := runCmd(t, f.URL, tc.stdin, tc.args...)
			if got := OneLine(r.err); got != tc.wantErr {
				t.Fatalf("error: got %q, want %q", got, tc.wantErr)
			}
			if r.stdout != tc.wantOut {
				t.Errorf("stdout: got %q, want %q", r.stdout, tc.wantOut)
			}
			if r.stderr != tc.wantErrOut {
				t.Errorf("stderr: got %q, want %q", r.stderr, tc.wantErrOut)
			}
			if tc.wantErr == "" {
				sent := f.requests()[before]
				if string(sent.Raw) != tc.wantSent {
					t.Errorf("payload sent: got %q, want %q", sent.Raw, tc.wantSent)
				}
			}
		})
	}
}

func TestInvokeBadPayload(t *testing.T) {
	f := newFake(t)
	addSampleFunctions(f)
	missing := filepath.Join(t.TempDir(), "missing.json")
	tests := []struct {
		payload, stdin, want string
	}{
		{`{"name":`, "", "invalid --payload: not valid JSON: unexpected end of JSON input (at byte 8)"},
		{`{name: 1}`, "", "invalid --payload: not valid JSON: invalid character 'n' looking for beginning of object key string (at byte 2)"},
		{`{} {}`, "", "invalid --payload: not valid JSON: invalid character '{' after top-level value (at byte 4)"},
		{"", "", "invalid --payload: it is empty; an event is JSON, such as {}"},
		{"@-", "  \n", "invalid --payload: it is empty; an event is JSON, such as {}"},
		{"@-", "nope", "invalid --payload: not valid JSON: invalid character 'o' in literal null (expecting 'u') (at byte 2)"},
		{"@" + missing, "", "read --payload: open " + missing + ": no such file or directory"},
	}
	for _, tc := range tests {
		r := runCmd(t, f.URL, tc.stdin, "invoke", "alpha", "--payload", tc.payload)
		if got := OneLine(r.err); got != tc.want {
			t.Errorf("--payload %q: got error %q, want %q", tc.payload, got, tc.want)
		}
	}
	if n := len(f.requests()); n != 0 {
		t.Errorf("bad payloads sent %d requests, want none", n)
	}
}

func TestDeployCreateThenUpdate(t *testing.T) {
	f := newFake(t)
	dir := writeApp(t)
	r := runCmd(t, f.URL, "", "deploy", "hello", "--runtime", "python3.11", "--handler", "app.handler",
		"--code", dir, "--memory", "256", "--timeout", "1m", "--env", "GREETING=hi", "--env", "EMPTY=",
		"--env", "URL=http://x/?a=b,c", "--description", "greets")
	if r.err != nil {
		t.Fatalf("deploy: %v", r.err)
	}
	golden(t, "deploy.golden", r.stdout)
	if want := "Created function hello (" + humanBytes(f.function("hello").CodeSize) + " of code).\n"; r.stderr != want {
		t.Errorf("stderr: got %q, want %q", r.stderr, want)
	}
	if got, want := f.paths(), []string{
		"GET /2015-03-31/functions/hello", // does it exist?
		"POST /2015-03-31/functions",
		"GET /2015-03-31/functions/hello", // is it ready?
	}; !slices.Equal(got, want) {
		t.Errorf("requests: got %q, want %q", got, want)
	}
	create := f.requests()[1]
	if got := field[string](t, create, "Runtime"); got != "python3.11" {
		t.Errorf("Runtime: got %q", got)
	}
	if got := field[int](t, create, "MemorySize"); got != 256 {
		t.Errorf("MemorySize: got %d, want 256", got)
	}
	if got := field[int](t, create, "Timeout"); got != 60 {
		t.Errorf("Timeout: got %d, want 60", got)
	}
	env := field[fakeEnv](t, create, "Environment").Variables
	if want := map[string]string{"GREETING": "hi", "EMPTY": "", "URL": "http://x/?a=b,c"}; !mapsEqual(env, want) {
		t.Errorf("Environment: got %v, want %v", env, want)
	}
	if _, ok := create.Body["Role"]; ok {
		t.Errorf("CreateFunction sent a Role: %s", create.Body["Role"])
	}
	code := field[struct{ ZipFile []byte }](t, create, "Code").ZipFile
	if got := zipEntries(t, code); !slices.Equal(got, []string{"app.py"}) {
		t.Errorf("zip entries: got %q, want [app.py]", got)
	}

	// The second deploy updates the code, then the whole configuration:
	// what it leaves out goes back to the defaults.
	zipPath := filepath.Join(t.TempDir(), "hello.zip")
	if err := os.WriteFile(zipPath, code, 0o644); err != nil {
		t.Fatal(err)
	}
	before := len(f.requests())
	r = runCmd(t, f.URL, "", "deploy", "hello", "--runtime", "python3.12", "--handler", "app.handler", "--code", zipPath)
	if r.err != nil {
		t.Fatalf("second deploy: %v", r.err)
	}
	if !strings.HasPrefix(r.stderr, "Updated function hello") {
		t.Errorf("stderr: got %q, want Updated function hello...", r.stderr)
	}
	got := f.paths()[before:]
	want := []string{
		"GET /2015-03-31/functions/hello",
		"PUT /2015-03-31/functions/hello/code",
		"GET /2015-03-31/functions/hello",
		"PUT /2015-03-31/functions/hello/configuration",
		"GET /2015-03-31/functions/hello",
	}
	if !slices.Equal(got, want) {
		t.Errorf("requests: got %q, want %q", got, want)
	}
	reqs := f.requests()
	if sent := field[[]byte](t, reqs[before+1], "ZipFile"); !bytes.Equal(sent, code) {
		t.Errorf("a .zip file must be sent as it is")
	}
	cfg := reqs[before+3]
	if got := field[string](t, cfg, "RevisionId"); got != "rev-2" {
		t.Errorf("RevisionId: got %q, want rev-2 (the code update's)", got)
	}
	fn := f.function("hello")
	if fn.Runtime != "python3.12" || fn.MemorySize != 128 || fn.Timeout != 3 || fn.Description != "" || fn.Environment != nil {
		t.Errorf("after the update: got runtime %s, memory %d, timeout %d, description %q, env %v; want python3.12, 128, 3, empty, none",
			fn.Runtime, fn.MemorySize, fn.Timeout, fn.Description, fn.Environment)
	}
}

// A function created between deploy's check and its create is updated.
func TestDeployCreateRace(t *testing.T) {
	f := newFake(t)
	f.add(&fakeFn{FunctionName: "hello", Runtime: "python3.11", Handler: "app.handler", MemorySize: 512})
	f.missing = 1 // the existence check misses it
	r := runCmd(t, f.URL, "", "deploy", "hello", "--runtime", "python3.11", "--handler", "app.handler", "--code", writeApp(t))
	if r.err != nil {
		t.Fatalf("deploy: %v", r.err)
	}
	want := []string{
		"GET /2015-03-31/functions/hello",
		"POST /2015-03-31/functions",
		"PUT /2015-03-31/functions/hello/code",
		"GET /2015-03-31/functions/hello",
		"PUT /2015-03-31/functions/hello/configuration",
		"GET /2015-03-31/functions/hello",
	}
	if got := f.paths(); !slices.Equal(got, want) {
		t.Errorf("requests: got %q, want %q", got, want)
	}
	if got := f.function("hello").MemorySize; got != 128 {
		t.Errorf("memory after the update: got %d, want 128", got)
	}
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func TestDeployWaits(t *testing.T) {
	dir := writeApp(t)
	args := []string{"deploy", "hello", "--runtime", "python3.11", "--handler", "app.handler", "--code", dir}
	t.Run("until active", func(t *testing.T) {
		f := newFake(t)
		f.pending = 3
		r := runCmd(t, f.URL, "", args...)
		if r.err != nil {
			t.Fatalf("deploy: %v", r.err)
		}
		if !strings.HasPrefix(r.stderr, "Waiting for hello to be ready (state Pending)...\n") {
			t.Errorf("stderr: got %q, want a waiting line first", r.stderr)
		}
		if f.function("hello").pending != 0 {
			t.Errorf("deploy returned before the function was Active")
		}
		// The update waits for the code, then for the configuration.
		r = runCmd(t, f.URL, "", args...)
		if r.err != nil {
			t.Fatalf("second deploy: %v", r.err)
		}
		if n := strings.Count(r.stderr, "Waiting for hello"); n != 2 {
			t.Errorf("second deploy waited %d times, want 2: %q", n, r.stderr)
		}
	})
	t.Run("failed", func(t *testing.T) {
		f := newFake(t)
		f.pending, f.failState = 1, "bootstrap exited with status 1"
		r := runCmd(t, f.URL, "", args...)
		if got, want := OneLine(r.err), "deploy hello: function hello failed: bootstrap exited with status 1"; got != want {
			t.Errorf("got %q, want %q", got, want)
		}
	})
	t.Run("timeout", func(t *testing.T) {
		defer func(d time.Duration) { testWaitTimeout = d }(testWaitTimeout)
		testWaitTimeout = 2 * time.Second
		f := newFake(t)
		f.pending = 1 << 30
		r := runCmd(t, f.URL, "", args...)
		if got, want := OneLine(r.err), "deploy hello: function hello is not ready after 2s: state Pending, last update Successful"; got != want {
			t.Errorf("got %q, want %q", got, want)
		}
	})
	t.Run("json is quiet", func(t *testing.T) {
		f := newFake(t)
		f.pending = 2
		r := runCmd(t, f.URL, "", append(args, "-o", "json")...)
		if r.err != nil || r.stderr != "" {
			t.Errorf("got stderr %q, err %v; want neither", r.stderr, r.err)
		}
		var v functionView
		if err := json.Unmarshal([]byte(r.stdout), &v); err != nil || v.FunctionName != "hello" || v.State != "Active" {
			t.Errorf("stdout: got %q (%v), want the Active function as JSON", r.stdout, err)
		}
	})
}

func TestDeployProgress(t *testing.T) {
	big := writeApp(t)
	noise := make([]byte, 1<<20+1000) // incompressible: the body stays over 1 MiB
	if _, err := rand.Read(noise); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(big, "data.bin"), noise, 0o644); err != nil {
		t.Fatal(err)
	}
	small := writeApp(t)
	tests := []struct {
		name, dir    string
		json         bool
		wantProgress bool
	}{
		{"large", big, false, true},
		{"large json", big, true, false},
		{"small", small, false, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake(t)
			args := []string{"deploy", "hello", "--runtime", "python3.11", "--handler", "app.handler", "--code", tc.dir}
			if tc.json {
				args = append(args, "-o", "json")
			}
			r := runCmd(t, f.URL, "", args...)
			if r.err != nil {
				t.Fatalf("deploy: %v", r.err)
			}
			lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
			var progress []string
			for _, l := range lines {
				if strings.HasPrefix(l, "upload: ") {
					progress = append(progress, l)
				}
			}
			if !tc.wantProgress {
				if len(progress) > 0 {
					t.Errorf("got progress %q, want none", progress)
				}
				return
			}
			// One line per tenth at most, each with bytes sent, the total
			// (the zip's size, as the final line says, not that of the
			// base64 body, a third more) and the percentage.
			size := humanBytes(f.function("hello").CodeSize)
			if size != "1.0 MiB" || !strings.Contains(r.stderr, "Created function hello ("+size+" of code).") {
				t.Errorf("zip of %s; stderr %q", size, r.stderr)
			}
			if len(progress) < 2 || len(progress) > 11 || progress[len(progress)-1] != "upload: "+size+" / "+size+" (100%)" {
				t.Fatalf("got progress %q, want up to 11 lines ending at 100%% of %s", progress, size)
			}
			for _, l := range progress {
				if !strings.Contains(l, " / "+size+" (") {
					t.Errorf("progress line %q should show bytes sent of %s", l, size)
				}
			}
		})
	}
}

func TestDeployHTTPConcurrency(t *testing.T) {
	f := newFake(t)
	dir := writeApp(t)
	args := []string{"deploy", "web", "--runtime", "http", "--code", dir, "--http-concurrency", "8"}
	for range 2 { // create, then update
		if r := runCmd(t, f.URL, "", args...); r.err != nil {
			t.Fatalf("deploy: %v", r.err)
		}
	}
	sent := sentField[int](f, "NimbusHttpConcurrency")
	// Sent with the create and with the configuration update, not with the
	// code.
	if want := []int{8, 8}; !slices.Equal(sent, want) {
		t.Errorf("NimbusHttpConcurrency sent: got %v, want %v", sent, want)
	}
	if got := f.function("web").httpConcurrency; got != 8 {
		t.Errorf("function's HTTP concurrency: got %d, want 8", got)
	}
	// The field is spliced in before signing and sizing: the body is intact.
	for _, r := range f.requests() {
		if r.Method != "GET" && r.Body == nil {
			t.Errorf("%s %s: body is not JSON: %q", r.Method, r.Path, r.Raw)
		}
	}
}

// TestDeployNetwork: --network reaches the node as NimbusNetwork, with the
// create and with the configuration update.
func TestDeployNetwork(t *testing.T) {
	f := newFake(t)
	args := []string{"deploy", "fn", "--runtime", "python3.11", "--handler", "app.handler", "--code", writeApp(t), "--network", "none"}
	for range 2 { // create, then update
		if r := runCmd(t, f.URL, "", args...); r.err != nil {
			t.Fatalf("deploy: %v", r.err)
		}
	}
	sent := sentField[string](f, "NimbusNetwork")
	if want := []string{"none", "none"}; !slices.Equal(sent, want) {
		t.Errorf("NimbusNetwork sent: got %v, want %v", sent, want)
	}
}

// sentField returns the values of field in the request bodies f received,
// in order.
func sentField[T any](f *fakeNimbus, field string) []T {
	var sent []T
	for _, r := range f.requests() {
		if raw, ok := r.Body[field]; ok {
			var v T
			_ = json.Unmarshal(raw, &v)
			sent = append(sent, v)
		}
	}
	return sent
}

func TestDeployFlagErrors(t *testing.T) {
	f := newFake(t)
	dir := writeApp(t)
	notZip := filepath.Join(t.TempDir(), "code.zip")
	if err := os.WriteFile(notZip, []byte("not a zip"), 0o644); err != nil {
		t.Fatal(err)
	}
	empty := t.TempDir()
	manifest := filepath.Join(t.TempDir(), "nimbus.yaml")
	if err := os.WriteFile(manifest, []byte("functions: [{name: a, runtime: python3.11, handler: x.y, code: .}]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ok := []string{"--runtime", "python3.11", "--handler", "app.handler", "--code", dir}
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"hello"}, "runtime is required (see `nimbus runtimes`); code is required: a directory or a .zip file"},
		{append([]string{}, ok...), "deploy needs the function's NAME, or -f MANIFEST"},
		{append([]string{"bad.name"}, ok...), `name "bad.name" is invalid: use 1 to 64 letters, digits, hyphens and underscores`},
		{append([]string{"a", "b"}, ok...), "accepts at most 1 arg(s), received 2"},
		{append([]string{"hello", "--timeout", "0"}, ok...), "timeout must be 1s to 900s (15m), not 0s"},
		{append([]string{"hello", "--timeout", "901"}, ok...), "timeout must be 1s to 900s (15m), not 901s"},
		{append([]string{"hello", "--timeout", "16m"}, ok...), "timeout must be 1s to 900s (15m), not 16m"},
		{append([]string{"hello", "--timeout", "1.5s"}, ok...), "timeout 1.5s is not a whole number of seconds"},
		{append([]string{"hello", "--timeout", "soon"}, ok...), `invalid timeout "soon": use seconds (30) or a duration (30s, 2m)`},
		{append([]string{"hello", "--memory", "64"}, ok...), "memory must be 128 to 10240 MB, not 64"},
		{append([]string{"hello", "--memory", "0"}, ok...), "memory must be 128 to 10240 MB, not 0"},
		{append([]string{"hello", "--memory", "lots"}, ok...), `invalid --memory "lots": want a whole number`},
		{append([]string{"hello", "--env", "NOEQUALS"}, ok...), `invalid --env "NOEQUALS": want KEY=VALUE`},
		{append([]string{"hello", "--env", "1X=2"}, ok...), `invalid --env "1X=2": environment variable name "1X" is invalid: it must start with a letter and have at least two letters, digits or underscores`},
		{append([]string{"hello", "--env", "AB=1", "--env", "AB=2"}, ok...), "invalid --env: AB is given twice"},
		{append([]string{"hello", "--http-concurrency", "0"}, ok...), "http-concurrency must be 1 to 1000, not 0"},
		{append([]string{"hello", "--network", "bridge"}, ok...), `network must be egress, none or host, not "bridge"`},
		{[]string{"hello", "--runtime", "python3.11", "--code", dir}, "handler is required for runtime python3.11 (for example app.handler)"},
		{[]string{"hello", "--runtime", "python3.11", "--handler", "a.b", "--code", notZip}, "deploy hello: code " + notZip + " is not a zip archive"},
		{[]string{"hello", "--runtime", "python3.11", "--handler", "a.b", "--code", empty}, "deploy hello: code directory " + empty + " is empty"},
		{[]string{"hello", "--runtime", "python3.11", "--handler", "a.b", "--code", manifest}, "code " + manifest + " must be a directory or a .zip file"},
		{[]string{"hello", "--runtime", "python3.11", "--handler", "a.b", "--code", dir + "/nope"}, "code: stat " + dir + "/nope: no such file or directory"},
		{[]string{"hello", "-f", manifest}, "give either a NAME (hello) or -f MANIFEST, not both"},
		{[]string{"-f", manifest, "--memory", "256"}, "--memory cannot be used with -f: the manifest describes the functions"},
		{[]string{"-f", manifest + ".missing"}, "read manifest: open " + manifest + ".missing: no such file or directory"},
		{append([]string{"hello", "-o", "yaml"}, ok...), `invalid --output "yaml": must be table, json or csv, not "yaml"`},
		{append([]string{"hello", "--endpoint", "localhost:9000"}, ok...), `invalid --endpoint "localhost:9000": want an http or https URL such as http://127.0.0.1:9000`},
		{append([]string{"hello", "--region", ""}, ok...), "--region must not be empty"},
	}
	for _, tc := range tests {
		r := runCmd(t, f.URL, "", append([]string{"deploy"}, tc.args...)...)
		if got := OneLine(r.err); got != tc.want {
			t.Errorf("deploy %q:\n got error %q\nwant       %q", tc.args, got, tc.want)
		}
	}
	if n := len(f.requests()); n != 0 {
		t.Errorf("bad deploys sent %d requests, want none: %q", n, f.paths())
	}
}

func TestDeployServerErrors(t *testing.T) {
	f := newFake(t)
	dir := writeApp(t)
	r := runCmd(t, f.URL, "", "deploy", "hello", "--runtime", "cobol", "--handler", "x.y", "--code", dir)
	if got, want := OneLine(r.err), "deploy hello: InvalidParameterValueException: The runtime parameter of cobol is not supported."; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestDeployManifest(t *testing.T) {
	f := newFake(t)
	root := t.TempDir()
	for _, d := range []string{"hello", "bye"} {
		if err := os.Mkdir(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, d, "app.py"), []byte(appPy), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(root, "nimbus.yaml")
	const doc = `functions:
  - name: hello
    runtime: python3.11
    handler: app.handler
    code: ./hello
    memory: 256
    timeout: 30s
    description: greets
    environment: {GREETING: hi, PORT: 8080}
  - name: bye
    runtime: python3.11
    handler: app.handler
    code: bye
`
	if err := os.WriteFile(path, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	r := runCmd(t, f.URL, "", "deploy", "-f", path)
	if r.err != nil {
		t.Fatalf("deploy -f: %v", r.err)
	}
	golden(t, "deploy-manifest.golden", r.stdout)
	hello := f.function("hello")
	if hello == nil || hello.MemorySize != 256 || hello.Timeout != 30 || hello.Environment.Variables["PORT"] != "8080" {
		t.Fatalf("hello: got %+v", hello)
	}
	r = runCmd(t, f.URL, "", "deploy", "-f", path, "-o", "json")
	if r.err != nil {
		t.Fatalf("deploy -f -o json: %v", r.err)
	}
	var views []functionView
	if err := json.Unmarshal([]byte(r.stdout), &views); err != nil || len(views) != 2 || views[1].FunctionName != "bye" {
		t.Errorf("deploy -f -o json: got %q (%v), want two functions", r.stdout, err)
	}

	// One bad entry: nothing is deployed.
	f2 := newFake(t)
	bad := strings.Replace(doc, "code: bye", "code: ./missing", 1)
	if err := os.WriteFile(path, []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	r = runCmd(t, f2.URL, "", "deploy", "-f", path)
	want := path + `: function "bye": code: stat ` + filepath.Join(root, "missing") + ": no such file or directory"
	if got := OneLine(r.err); got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	if n := len(f2.requests()); n != 0 {
		t.Errorf("a bad manifest sent %d requests, want none", n)
	}
}

func TestEndpointDown(t *testing.T) {
	endpoint := closedEndpoint(t)
	for _, args := range [][]string{{"ls"}, {"get", "x"}, {"runtimes"}, {"logs", "x"}, {"invoke", "x"}} {
		r := runCmd(t, endpoint, "", args...)
		want := "cannot reach Nimbus at " + endpoint + ": is `nimbus serve` running?"
		if got := OneLine(r.err); got != want {
			t.Errorf("%v: got %q, want %q", args, got, want)
		}
	}
}

func TestEndpointFromEnv(t *testing.T) {
	f := newFake(t)
	addSampleFunctions(f)
	t.Setenv(EndpointEnv, f.URL+"/")
	r := runCmd(t, "", "", "get", "beta", "-o", "json")
	if r.err != nil {
		t.Fatalf("get with %s set: %v", EndpointEnv, r.err)
	}
	if !strings.Contains(r.stdout, `"FunctionName": "beta"`) {
		t.Errorf("got %q", r.stdout)
	}
}

func TestLogTailDecoding(t *testing.T) {
	var buf bytes.Buffer
	if err := writeLogTail(&buf, base64.StdEncoding.EncodeToString([]byte("a\nb"))); err != nil || buf.String() != "a\nb\n" {
		t.Errorf("got %q, %v; want \"a\\nb\\n\"", buf.String(), err)
	}
	if err := writeLogTail(io.Discard, "!!"); err == nil {
		t.Errorf("bad base64: got no error")
	}
}
