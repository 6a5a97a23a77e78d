package cli

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"flag"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nimbus-serverless/nimbus/internal/testenv"
	"github.com/spf13/cobra"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// fakeNimbus is an in-memory stand-in for a node's HTTP API: enough of the
// Lambda dialect and the /nimbus/v1 endpoints to test what the client sends
// and how it prints the answers, with fixed times so output is stable. The
// end-to-end tests run the same commands against a real node.
type fakeNimbus struct {
	URL string

	mu       sync.Mutex
	fns      map[string]*fakeFn
	reqs     []fakeReq
	pageSize int
	// pending is how many GetFunction polls a created or updated function
	// answers before it is Active (or failState, when set).
	pending   int
	failState string
	revision  int
	// missing is how many GetFunction calls answer 404 whatever exists.
	missing int
}

type fakeFn struct {
	FunctionName     string
	FunctionArn      string
	Runtime          string
	Handler          string `json:",omitempty"`
	Description      string
	MemorySize       int
	Timeout          int
	CodeSize         int64
	CodeSha256       string
	LastModified     string
	RevisionId       string
	State            string
	StateReason      string `json:",omitempty"`
	LastUpdateStatus string
	Environment      *fakeEnv `json:",omitempty"`

	pending         int
	reserved        *int
	httpConcurrency int
	zip             []byte
}

type fakeEnv struct{ Variables map[string]string }

// fakeReq is a request the fake received: its method, path, query and JSON
// body.
type fakeReq struct {
	Method, Path, Query string
	Raw                 []byte
	Body                map[string]json.RawMessage
	Header              http.Header
}

func newFake(t *testing.T) *fakeNimbus {
	t.Helper()
	f := &fakeNimbus{fns: map[string]*fakeFn{}, pageSize: 50}
	mux := http.NewServeMux()
	const fns = "/2015-03-31/functions"
	mux.HandleFunc("POST "+fns, f.create)
	mux.HandleFunc("GET "+fns, f.list)
	mux.HandleFunc("GET "+fns+"/{name}", f.get)
	mux.HandleFunc("PUT "+fns+"/{name}/code", f.updateCode)
	mux.HandleFunc("PUT "+fns+"/{name}/configuration", f.updateConfig)
	mux.HandleFunc("DELETE "+fns+"/{name}", f.delete)
	mux.HandleFunc("POST "+fns+"/{name}/invocations", f.invoke)
	mux.HandleFunc("GET /nimbus/v1/runtimes", func(w http.ResponseWriter, r *http.Request) {
		f.record(r)
		writeFake(w, 200, map[string][]string{"Runtimes": {"nodejs20.x", "provided.al2023", "python3.11", "python3.12"}})
	})
	mux.HandleFunc("GET /nimbus/v1/functions/{name}/logs", f.logs)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		f.record(r)
		fakeError(w, 404, "UnknownOperationException", "Unknown operation: "+r.Method+" "+r.URL.Path)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	f.URL = srv.URL
	return f
}

// add stores a function directly, Active.
func (f *fakeNimbus) add(fn *fakeFn) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fill(fn)
	f.fns[fn.FunctionName] = fn
}

func (f *fakeNimbus) fill(fn *fakeFn) {
	f.revision++
	fn.FunctionArn = "arn:aws:lambda:us-east-1:000000000000:function:" + fn.FunctionName
	fn.LastModified = "2024-05-01T12:00:00.000+0000"
	fn.RevisionId = "rev-" + itoa(f.revision)
	fn.LastUpdateStatus = "Successful"
	fn.State = "Active"
	if fn.CodeSha256 == "" {
		fn.CodeSha256 = "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="
	}
	if fn.MemorySize == 0 {
		fn.MemorySize = 128
	}
	if fn.Timeout == 0 {
		fn.Timeout = 3
	}
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

// requests returns the requests received so far.
func (f *fakeNimbus) requests() []fakeReq {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]fakeReq(nil), f.reqs...)
}

// paths returns "METHOD path" of each request so far.
func (f *fakeNimbus) paths() []string {
	var out []string
	for _, r := range f.requests() {
		out = append(out, r.Method+" "+r.Path)
	}
	return out
}

func (f *fakeNimbus) function(name string) *fakeFn {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.fns[name]
}

func (f *fakeNimbus) record(r *http.Request) fakeReq {
	body, _ := io.ReadAll(r.Body)
	req := fakeReq{Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery, Raw: body, Header: r.Header.Clone()}
	if len(body) > 0 {
		_ = json.Unmarshal(body, &req.Body)
	}
	f.mu.Lock()
	f.reqs = append(f.reqs, req)
	f.mu.Unlock()
	return req
}

func writeFake(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func fakeError(w http.ResponseWriter, status int, typ, msg string) {
	w.Header().Set("X-Amzn-ErrorType", typ)
	writeFake(w, status, map[string]string{"Type": "User", "message": msg})
}

// configBody is the part of create and update requests the fake applies.
type configBody struct {
	FunctionName    string
	Runtime         *string
	Handler         *string
	Description     *string
	MemorySize      *int
	Timeout         *int
	Environment     *fakeEnv
	RevisionId      string
	HTTPConcurrency *int `json:"NimbusHttpConcurrency"`
	Code            struct{ ZipFile []byte }
	ZipFile         []byte
}

func (f *fakeNimbus) decode(w http.ResponseWriter, r *http.Request) (configBody, bool) {
	req := f.record(r)
	var b configBody
	raw, _ := json.Marshal(req.Body)
	if err := json.Unmarshal(raw, &b); err != nil {
		fakeError(w, 400, "InvalidRequestContentException", err.Error())
		return b, false
	}
	return b, true
}

func (b *configBody) apply(fn *fakeFn) {
	set := func(dst *string, src *string) {
		if src != nil {
			*dst = *src
		}
	}
	set(&fn.Runtime, b.Runtime)
	set(&fn.Handler, b.Handler)
	set(&fn.Description, b.Description)
	if b.MemorySize != nil {
		fn.MemorySize = *b.MemorySize
	}
	if b.Timeout != nil {
		fn.Timeout = *b.Timeout
	}
	if b.Environment != nil {
		fn.Environment = b.Environment
		if len(b.Environment.Variables) == 0 {
			fn.Environment = nil
		}
	}
	if b.HTTPConcurrency != nil {
		fn.httpConcurrency = *b.HTTPConcurrency
	}
}

func (f *fakeNimbus) create(w http.ResponseWriter, r *http.Request) {
	b, ok := f.decode(w, r)
	if !ok {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if b.Runtime != nil && *b.Runtime == "cobol" {
		fakeError(w, 400, "InvalidParameterValueException", "The runtime parameter of cobol is not supported.")
		return
	}
	if _, ok := f.fns[b.FunctionName]; ok {
		fakeError(w, 409, "ResourceConflictException", "Function already exist: "+b.FunctionName)
		return
	}
	fn := &fakeFn{FunctionName: b.FunctionName, zip: b.Code.ZipFile, CodeSize: int64(len(b.Code.ZipFile))}
	b.apply(fn)
	f.fill(fn)
	f.startUpdate(fn, "State")
	f.fns[fn.FunctionName] = fn
	writeFake(w, 201, fn)
}

// startUpdate makes fn wait f.pending polls; field is the status that waits.
func (f *fakeNimbus) startUpdate(fn *fakeFn, field string) {
	fn.pending = f.pending
	if fn.pending > 0 {
		if field == "State" {
			fn.State = "Pending"
		} else {
			fn.LastUpdateStatus = "InProgress"
		}
	}
}

func (f *fakeNimbus) lookup(w http.ResponseWriter, r *http.Request) *fakeFn {
	fn := f.fns[r.PathValue("name")]
	if fn == nil {
		fakeError(w, 404, "ResourceNotFoundException",
			"Function not found: arn:aws:lambda:us-east-1:000000000000:function:"+r.PathValue("name"))
	}
	return fn
}

func (f *fakeNimbus) get(w http.ResponseWriter, r *http.Request) {
	f.record(r)
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.missing > 0 {
		f.missing--
		fakeError(w, 404, "ResourceNotFoundException", "Function not found")
		return
	}
	fn := f.lookup(w, r)
	if fn == nil {
		return
	}
	if fn.pending > 0 {
		fn.pending--
		if fn.pending == 0 {
			fn.State, fn.LastUpdateStatus = "Active", "Successful"
			if f.failState != "" {
				fn.State, fn.StateReason = "Failed", f.failState
			}
		}
	}
	resp := map[string]any{"Configuration": fn, "Code": map[string]string{"RepositoryType": "S3", "Location": "x"}}
	if fn.reserved != nil {
		resp["Concurrency"] = map[string]int{"ReservedConcurrentExecutions": *fn.reserved}
	}
	writeFake(w, 200, resp)
}

func (f *fakeNimbus) updateCode(w http.ResponseWriter, r *http.Request) {
	b, ok := f.decode(w, r)
	if !ok {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	fn := f.lookup(w, r)
	if fn == nil {
		return
	}
	if fn.pending > 0 {
		fakeError(w, 409, "ResourceConflictException", "An update is in progress")
		return
	}
	fn.zip, fn.CodeSize = b.ZipFile, int64(len(b.ZipFile))
	f.fill(fn)
	f.startUpdate(fn, "LastUpdateStatus")
	writeFake(w, 200, fn)
}

func (f *fakeNimbus) updateConfig(w http.ResponseWriter, r *http.Request) {
	b, ok := f.decode(w, r)
	if !ok {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	fn := f.lookup(w, r)
	if fn == nil {
		return
	}
	if fn.pending > 0 {
		fakeError(w, 409, "ResourceConflictException", "An update is in progress")
		return
	}
	if b.RevisionId != "" && b.RevisionId != fn.RevisionId {
		fakeError(w, 412, "PreconditionFailedException", "The RevisionId provided does not match the latest RevisionId")
		return
	}
	b.apply(fn)
	f.fill(fn)
	f.startUpdate(fn, "LastUpdateStatus")
	writeFake(w, 200, fn)
}

func (f *fakeNimbus) delete(w http.ResponseWriter, r *http.Request) {
	f.record(r)
	f.mu.Lock()
	defer f.mu.Unlock()
	if fn := f.lookup(w, r); fn != nil {
		delete(f.fns, fn.FunctionName)
		w.WriteHeader(204)
	}
}

func (f *fakeNimbus) list(w http.ResponseWriter, r *http.Request) {
	f.record(r)
	f.mu.Lock()
	defer f.mu.Unlock()
	var names []string
	for n := range f.fns {
		if n > r.URL.Query().Get("Marker") {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	resp := map[string]any{}
	if len(names) > f.pageSize {
		names = names[:f.pageSize]
		resp["NextMarker"] = names[len(names)-1]
	}
	page := []*fakeFn{}
	for _, n := range names {
		page = append(page, f.fns[n])
	}
	resp["Functions"] = page
	writeFake(w, 200, resp)
}

// invoke answers the function "fail" with a function error and every other
// with {"echo": payload}.
func (f *fakeNimbus) invoke(w http.ResponseWriter, r *http.Request) {
	req := f.record(r)
	f.mu.Lock()
	fn := f.lookup(w, r)
	f.mu.Unlock()
	if fn == nil {
		return
	}
	raw := req.Raw
	if len(raw) == 0 {
		raw = []byte("{}")
	}
	if !json.Valid(raw) {
		fakeError(w, 400, "InvalidRequestContentException", "Could not parse request body into json")
		return
	}
	if r.Header.Get("X-Amz-Log-Type") == "Tail" {
		w.Header().Set("X-Amz-Log-Result", base64.StdEncoding.EncodeToString([]byte("START RequestId: 1\nhello from the log\nEND RequestId: 1")))
	}
	if fn.FunctionName == "fail" {
		w.Header().Set("X-Amz-Function-Error", "Unhandled")
		writeFake(w, 200, map[string]any{"errorType": "ValueError", "errorMessage": "boom", "stackTrace": []string{"app.py:2"}})
		return
	}
	writeFake(w, 200, map[string]json.RawMessage{"echo": raw})
}

func (f *fakeNimbus) logs(w http.ResponseWriter, r *http.Request) {
	f.record(r)
	f.mu.Lock()
	fn := f.lookup(w, r)
	f.mu.Unlock()
	if fn == nil {
		return
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	enc := json.NewEncoder(w)
	for i, line := range []string{"START RequestId: r1", "hello\n", "END RequestId: r1"} {
		_ = enc.Encode(map[string]string{
			"time": "2024-05-01T12:00:0" + itoa(i) + "Z", "function": fn.FunctionName, "requestId": "r1", "line": line,
		})
	}
	if r.URL.Query().Get("follow") != "true" {
		return
	}
	w.(http.Flusher).Flush()
	<-r.Context().Done() // a follower waits for more

}

// result is what a command printed and returned.
type result struct {
	stdout, stderr string
	err            error
}

// testWaitTimeout bounds deploy's wait in tests; none runs in parallel, so
// a test may shorten it.
var testWaitTimeout = 20 * time.Second

// runCmd runs the nimbus client with args against endpoint, stdin as its
// input, and short waits.
func runCmd(t *testing.T, endpoint, stdin string, args ...string) result {
	t.Helper()
	return runCmdContext(t.Context(), endpoint, stdin, args...)
}

func runCmdContext(ctx context.Context, endpoint, stdin string, args ...string) result {
	root, stdout, stderr := newRoot(endpoint, stdin, args...)
	err := root.ExecuteContext(ctx)
	return result{stdout: stdout.String(), stderr: stderr.String(), err: err}
}

// newRoot returns a nimbus command set up to run args, and its outputs.
func newRoot(endpoint, stdin string, args ...string) (root *cobra.Command, stdout, stderr *testenv.Buffer) {
	root = &cobra.Command{Use: "nimbus", SilenceUsage: true, SilenceErrors: true}
	addCommands(root, &globals{waitTimeout: testWaitTimeout, pollInterval: 20 * time.Millisecond})
	stdout, stderr = &testenv.Buffer{}, &testenv.Buffer{}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetIn(strings.NewReader(stdin))
	if endpoint != "" {
		args = append([]string{"--endpoint", endpoint}, args...)
	}
	root.SetArgs(args)
	return root, stdout, stderr
}

// golden compares got with testdata/name, or rewrites it with -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read golden file (run with -update to create it): %v", err)
	}
	if got != string(want) {
		t.Errorf("output differs from %s (run with -update if the change is right)\ngot:\n%s\nwant:\n%s", path, got, want)
	}
}
