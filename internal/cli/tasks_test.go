package cli

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nimbus-serverless/nimbus"
)

// fakeAsync stands in for a node's Async Service API: async invoke, tasks
// and dead letters, with fixed data so that output is stable. The
// end-to-end test runs the same commands against a real node.
type fakeAsync struct {
	URL string

	mu    sync.Mutex
	reqs  []fakeReq
	tasks map[string][]nimbus.Task // by function, oldest first
	dls   map[string][]nimbus.DeadLetter
	next  int // for generated task ids
}

// base is the time of the fake's records.
var base = time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)

func at(ms int) time.Time { return base.Add(time.Duration(ms) * time.Millisecond) }

var validTaskID = regexp.MustCompile(`^[A-Za-z0-9_-]{1,128}$`)

func newFakeAsync(t *testing.T) *fakeAsync {
	t.Helper()
	f := &fakeAsync{tasks: map[string][]nimbus.Task{}, dls: map[string][]nimbus.DeadLetter{}}
	mux := http.NewServeMux()
	const fns = "/nimbus/v1/functions/{name}"
	mux.HandleFunc("POST /2015-03-31/functions/{name}/invocations", f.invoke)
	mux.HandleFunc("GET "+fns+"/tasks", f.listTasks)
	mux.HandleFunc("GET "+fns+"/tasks/{id}", f.getTask)
	mux.HandleFunc("POST "+fns+"/tasks/{id}/stop", f.stopTask)
	mux.HandleFunc("GET "+fns+"/dead-letters", f.listDeadLetters)
	mux.HandleFunc("POST "+fns+"/dead-letters/redrive", f.redrive)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		f.record(r)
		fakeError(w, 404, "UnknownOperationException", "Unknown operation: "+r.Method+" "+r.URL.Path)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	f.URL = srv.URL
	return f
}

// addSamples stores the tasks and dead letters of the function "resize".
func (f *fakeAsync) addSamples() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.tasks["resize"] = []nimbus.Task{
		{ID: "01HX0000000000000000000001", Function: "resize", Status: nimbus.TaskSucceeded, Attempts: 1,
			Created: at(0), Started: at(12), Updated: at(60), Finished: at(54), DurationMs: 41.7,
			Result: `{"width": 640, "height": 480}`, Destination: "function:notify", DestinationStatus: "Delivered"},
		{ID: "01HX0000000000000000000002", Function: "resize", Status: nimbus.TaskFailed, Attempts: 3,
			Created: at(1000), Started: at(5000), Updated: at(7000), Finished: at(6534), DurationMs: 1534.2,
			Error:       "{\"errorMessage\":\"image too large to resize:\\n40000x40000 pixels exceeds the limit\",\"errorType\":\"errorString\"}",
			Destination: "https://hooks.example.com/failed", DestinationStatus: "Failed: 503 Service Unavailable after 5 attempts"},
		{ID: "01HX0000000000000000000003", Function: "resize", Status: nimbus.TaskRunning, Attempts: 1,
			Created: at(2000), Started: at(2003), Updated: at(2003)},
		{ID: "01HX0000000000000000000004", Function: "resize", Status: nimbus.TaskEnqueued,
			Created: at(3000), Updated: at(3000)},
		{ID: "order-42", Function: "resize", Status: nimbus.TaskStopped, Attempts: 1,
			Created: at(4000), Started: at(4001), Updated: at(4500), Finished: at(4500), DurationMs: 0.4,
			Error: "Stopped by request"},
	}
	f.dls["resize"] = []nimbus.DeadLetter{
		{Seq: 7, TaskID: "01HX0000000000000000000002", Function: "resize", Condition: "RetriesExhausted",
			Reason: "errorString: image too large to resize: 40000x40000 pixels exceeds the limit", Attempts: 3,
			Created: at(1000), Failed: at(6534), Payload: json.RawMessage(`{"image":"big.png"}`)},
		{Seq: 9, TaskID: "01HX0000000000000000000009", Function: "resize", Condition: "EventAgeExceeded",
			Reason: "the event was 21600s old, older than the maximum age", Attempts: 0,
			Created: at(0), Failed: at(9000), Payload: json.RawMessage(`{}`)},
		{Seq: 12, TaskID: "01HX0000000000000000000012", Function: "resize", Condition: "FunctionDeleted",
			Reason: "function resize was deleted", Attempts: 1,
			Created: at(2000), Failed: at(12000), Payload: json.RawMessage(`{"image":"c.png"}`)},
	}
}

func (f *fakeAsync) record(r *http.Request) fakeReq {
	body, _ := io.ReadAll(r.Body)
	req := fakeReq{Method: r.Method, Path: r.URL.EscapedPath(), Query: r.URL.RawQuery, Raw: body, Header: r.Header.Clone()}
	if len(body) > 0 {
		_ = json.Unmarshal(body, &req.Body)
	}
	f.mu.Lock()
	f.reqs = append(f.reqs, req)
	f.mu.Unlock()
	return req
}

func (f *fakeAsync) requests() []fakeReq {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.reqs)
}

func (f *fakeAsync) lastRequest(t *testing.T) fakeReq {
	t.Helper()
	reqs := f.requests()
	if len(reqs) == 0 {
		t.Fatal("the fake received no request")
	}
	return reqs[len(reqs)-1]
}

// invoke accepts Event invocations of any function but "nope".
func (f *fakeAsync) invoke(w http.ResponseWriter, r *http.Request) {
	f.record(r)
	name := r.PathValue("name")
	if name == "nope" {
		fakeError(w, 404, "ResourceNotFoundException", "Function not found: arn:aws:lambda:us-east-1:000000000000:function:nope")
		return
	}
	if r.Header.Get("X-Amz-Invocation-Type") != "Event" {
		fakeError(w, 400, "InvalidParameterValueException", "this fake takes only Event invocations")
		return
	}
	id := r.Header.Get("X-Nimbus-Task-Id")
	if id != "" && !validTaskID.MatchString(id) {
		fakeError(w, 400, "InvalidParameterValueException", "Invalid task id "+strconv.Quote(id)+": use 1 to 128 letters, digits, '-' or '_'")
		return
	}
	f.mu.Lock()
	if id == "" {
		f.next++
		id = "01HXNEW" + strings.Repeat("0", 17) + strconv.Itoa(10+f.next)
	}
	f.tasks[name] = append(f.tasks[name], nimbus.Task{ID: id, Function: name, Status: nimbus.TaskEnqueued, Created: base, Updated: base})
	f.mu.Unlock()
	w.Header().Set("X-Amzn-RequestId", id)
	w.Header().Set("X-Nimbus-Task-Id", id)
	w.WriteHeader(http.StatusAccepted)
}

func (f *fakeAsync) listTasks(w http.ResponseWriter, r *http.Request) {
	f.record(r)
	q := r.URL.Query()
	limit, ok := fakeLimit(w, q)
	if !ok {
		return
	}
	var since, until time.Time
	for k, dst := range map[string]*time.Time{"since": &since, "until": &until} {
		if v := q.Get(k); v != "" {
			t, err := time.Parse(time.RFC3339, v)
			if err != nil {
				fakeError(w, 400, "ValidationException", k+" must be an RFC 3339 time")
				return
			}
			*dst = t
		}
	}
	f.mu.Lock()
	var all []nimbus.Task
	for _, t := range f.tasks[r.PathValue("name")] {
		if (q.Get("status") == "" || t.Status == q.Get("status")) &&
			(since.IsZero() || !t.Created.Before(since)) && (until.IsZero() || t.Created.Before(until)) {
			all = append(all, t)
		}
	}
	f.mu.Unlock()
	if m := q.Get("marker"); m != "" {
		i := slices.IndexFunc(all, func(t nimbus.Task) bool { return t.ID == m })
		all = all[i+1:]
	}
	list := taskList{Tasks: []nimbus.Task{}}
	if len(all) > limit {
		all, list.NextMarker = all[:limit], all[limit-1].ID
	}
	list.Tasks = append(list.Tasks, all...)
	writeFake(w, 200, list)
}

func fakeLimit(w http.ResponseWriter, q url.Values) (int, bool) {
	limit := 100
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			fakeError(w, 400, "ValidationException", "limit must be 1 to 1000, not "+v)
			return 0, false
		}
		limit = n
	}
	return limit, true
}

// task finds a task, or answers 400 or 404; it must be called with f.mu held.
func (f *fakeAsync) task(w http.ResponseWriter, r *http.Request) *nimbus.Task {
	id := r.PathValue("id")
	if !validTaskID.MatchString(id) {
		fakeError(w, 400, "InvalidParameterValueException", "Invalid task id "+strconv.Quote(id)+": use 1 to 128 letters, digits, '-' or '_'")
		return nil
	}
	tasks := f.tasks[r.PathValue("name")]
	for i := range tasks {
		if tasks[i].ID == id {
			return &tasks[i]
		}
	}
	fakeError(w, 404, "ResourceNotFoundException", "Task "+id+" of function "+r.PathValue("name")+" not found (records are kept for 72h0m0s)")
	return nil
}

func (f *fakeAsync) getTask(w http.ResponseWriter, r *http.Request) {
	f.record(r)
	f.mu.Lock()
	defer f.mu.Unlock()
	if t := f.task(w, r); t != nil {
		writeFake(w, 200, t)
	}
}

func (f *fakeAsync) stopTask(w http.ResponseWriter, r *http.Request) {
	f.record(r)
	f.mu.Lock()
	defer f.mu.Unlock()
	t := f.task(w, r)
	switch {
	case t == nil:
	case nimbus.TaskFinal(t.Status):
		fakeError(w, 409, "ResourceConflictException", "Task "+t.ID+" has already finished: it is "+t.Status)
	case t.Status == nimbus.TaskRunning:
		t.Status = nimbus.TaskStopping
		writeFake(w, 200, t)
	default:
		t.Status = nimbus.TaskStopped
		writeFake(w, 200, t)
	}
}

func (f *fakeAsync) listDeadLetters(w http.ResponseWriter, r *http.Request) {
	f.record(r)
	q := r.URL.Query()
	limit, ok := fakeLimit(w, q)
	if !ok {
		return
	}
	var after uint64
	if m := q.Get("marker"); m != "" {
		n, err := strconv.ParseUint(m, 10, 64)
		if err != nil {
			fakeError(w, 400, "ValidationException", "marker "+strconv.Quote(m)+" is not one this API returned")
			return
		}
		after = n
	}
	f.mu.Lock()
	list := deadLetterList{DeadLetters: []nimbus.DeadLetter{}}
	for _, d := range f.dls[r.PathValue("name")] {
		if d.Seq > after {
			list.DeadLetters = append(list.DeadLetters, d)
		}
	}
	f.mu.Unlock()
	if len(list.DeadLetters) > limit {
		list.DeadLetters = list.DeadLetters[:limit]
		list.NextMarker = strconv.FormatUint(list.DeadLetters[limit-1].Seq, 10)
	}
	writeFake(w, 200, list)
}

func (f *fakeAsync) redrive(w http.ResponseWriter, r *http.Request) {
	req := f.record(r)
	if r.PathValue("name") == "nope" {
		fakeError(w, 404, "ResourceNotFoundException", "Function not found: arn:aws:lambda:us-east-1:000000000000:function:nope")
		return
	}
	var body redriveRequest
	if len(req.Raw) > 0 {
		if err := json.Unmarshal(req.Raw, &body); err != nil {
			fakeError(w, 400, "InvalidRequestContentException", err.Error())
			return
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	f.dls[r.PathValue("name")] = slices.DeleteFunc(f.dls[r.PathValue("name")], func(d nimbus.DeadLetter) bool {
		if len(body.Seqs) == 0 || slices.Contains(body.Seqs, d.Seq) {
			n++
			return true
		}
		return false
	})
	writeFake(w, 200, redriveResult{Redriven: n})
}

func TestTasksLs(t *testing.T) {
	f := newFakeAsync(t)
	f.addSamples()
	for _, tc := range []struct{ args, golden string }{
		{"tasks ls resize", "tasks-ls.golden"},
		{"tasks ls resize -o json", "tasks-ls.json.golden"},
	} {
		t.Run(tc.args, func(t *testing.T) {
			r := runCmd(t, f.URL, "", strings.Fields(tc.args)...)
			if r.err != nil {
				t.Fatalf("%s: %s", tc.args, OneLine(r.err))
			}
			if r.stderr != "" {
				t.Errorf("stderr: got %q, want none", r.stderr)
			}
			golden(t, tc.golden, r.stdout)
		})
	}
	t.Run("empty", func(t *testing.T) {
		r := runCmd(t, f.URL, "", "tasks", "ls", "other")
		if r.err != nil || r.stdout != "" || r.stderr != "No tasks.\n" {
			t.Errorf("got %q, %q, %v; want No tasks. on stderr", r.stdout, r.stderr, r.err)
		}
		r = runCmd(t, f.URL, "", "tasks", "ls", "other", "-o", "json")
		if r.err != nil || r.stdout != "{\n  \"tasks\": []\n}\n" {
			t.Errorf("-o json: got %q, %v", r.stdout, r.err)
		}
	})
}

func TestTasksLsPages(t *testing.T) {
	f := newFakeAsync(t)
	f.addSamples()
	r := runCmd(t, f.URL, "", "tasks", "ls", "resize", "--limit", "2")
	if r.err != nil {
		t.Fatal(OneLine(r.err))
	}
	if n := strings.Count(r.stdout, "\n"); n != 3 {
		t.Errorf("--limit 2: got %d lines, want a header and 2 rows:\n%s", n, r.stdout)
	}
	if want := "More tasks: --marker 01HX0000000000000000000002 shows the next page, --all every page.\n"; r.stderr != want {
		t.Errorf("stderr: got %q, want %q", r.stderr, want)
	}

	r = runCmd(t, f.URL, "", "tasks", "ls", "resize", "--limit", "2", "--marker", "01HX0000000000000000000002", "-o", "json")
	var page taskList
	if err := json.Unmarshal([]byte(r.stdout), &page); err != nil || r.err != nil {
		t.Fatalf("--marker: got %q (%v, %v)", r.stdout, err, r.err)
	}
	if got := taskIDs(page.Tasks); !slices.Equal(got, []string{"01HX0000000000000000000003", "01HX0000000000000000000004"}) ||
		page.NextMarker != "01HX0000000000000000000004" {
		t.Errorf("--marker: got %v next %q", got, page.NextMarker)
	}

	before := len(f.requests())
	r = runCmd(t, f.URL, "", "tasks", "ls", "resize", "--limit", "2", "--all", "-o", "json")
	page = taskList{}
	if err := json.Unmarshal([]byte(r.stdout), &page); err != nil || r.err != nil {
		t.Fatalf("--all: got %q (%v, %v)", r.stdout, err, r.err)
	}
	if len(page.Tasks) != 5 || page.NextMarker != "" {
		t.Errorf("--all: got %v next %q, want all 5 tasks", taskIDs(page.Tasks), page.NextMarker)
	}
	var markers []string
	for _, req := range f.requests()[before:] {
		q, _ := url.ParseQuery(req.Query)
		markers = append(markers, q.Get("marker"))
	}
	if want := []string{"", "01HX0000000000000000000002", "01HX0000000000000000000004"}; !slices.Equal(markers, want) {
		t.Errorf("--all: markers sent %q, want %q", markers, want)
	}
}

func taskIDs(tasks []nimbus.Task) []string {
	var ids []string
	for _, t := range tasks {
		ids = append(ids, t.ID)
	}
	return ids
}

func TestTasksLsFilters(t *testing.T) {
	f := newFakeAsync(t)
	f.addSamples()
	tests := []struct {
		args []string
		want url.Values
		ids  []string
	}{
		{[]string{"--status", "failed"}, url.Values{"status": {"Failed"}}, []string{"01HX0000000000000000000002"}},
		{[]string{"--status", "Running", "--limit", "10"}, url.Values{"status": {"Running"}, "limit": {"10"}}, []string{"01HX0000000000000000000003"}},
		{[]string{"--since", "2024-05-01T12:00:02Z"}, url.Values{"since": {"2024-05-01T12:00:02Z"}},
			[]string{"01HX0000000000000000000003", "01HX0000000000000000000004", "order-42"}},
		{[]string{"--since", "2024-05-01T14:00:01+02:00", "--until", "2024-05-01T12:00:03Z"},
			url.Values{"since": {"2024-05-01T12:00:01Z"}, "until": {"2024-05-01T12:00:03Z"}},
			[]string{"01HX0000000000000000000002", "01HX0000000000000000000003"}},
	}
	for _, tc := range tests {
		r := runCmd(t, f.URL, "", append([]string{"tasks", "ls", "resize", "-o", "json"}, tc.args...)...)
		if r.err != nil {
			t.Fatalf("%q: %s", tc.args, OneLine(r.err))
		}
		if got, _ := url.ParseQuery(f.lastRequest(t).Query); !equalQuery(got, tc.want) {
			t.Errorf("%q: query %v, want %v", tc.args, got, tc.want)
		}
		var page taskList
		if err := json.Unmarshal([]byte(r.stdout), &page); err != nil || !slices.Equal(taskIDs(page.Tasks), tc.ids) {
			t.Errorf("%q: got %q (%v), want %v", tc.args, taskIDs(page.Tasks), err, tc.ids)
		}
	}
}

func equalQuery(a, b url.Values) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if !slices.Equal(v, b[k]) {
			return false
		}
	}
	return true
}

// TestTasksLsSinceDuration: a duration means that long before now.
func TestTasksLsSinceDuration(t *testing.T) {
	f := newFakeAsync(t)
	for _, tc := range []struct {
		flag, value string
		ago         time.Duration
	}{
		{"--since", "1h", time.Hour},
		{"--since", "90s", 90 * time.Second},
		{"--since", "2d", 48 * time.Hour},
		{"--until", "1.5d", 36 * time.Hour},
	} {
		before := time.Now()
		r := runCmd(t, f.URL, "", "tasks", "ls", "resize", tc.flag, tc.value)
		after := time.Now()
		if r.err != nil {
			t.Fatalf("%s %s: %s", tc.flag, tc.value, OneLine(r.err))
		}
		q, _ := url.ParseQuery(f.lastRequest(t).Query)
		got, err := time.Parse(time.RFC3339Nano, q.Get(strings.TrimPrefix(tc.flag, "--")))
		if err != nil || got.Before(before.Add(-tc.ago)) || got.After(after.Add(-tc.ago)) {
			t.Errorf("%s %s: sent %q (%v), want %s ago", tc.flag, tc.value, q.Get(strings.TrimPrefix(tc.flag, "--")), err, tc.ago)
		}
	}
}

func TestTasksBadInput(t *testing.T) {
	f := newFakeAsync(t)
	f.addSamples()
	tests := []struct {
		args   []string
		want   string
		sendNo bool // the client refuses it before sending
	}{
		{[]string{"tasks", "ls", "resize", "--status", "Done"}, `invalid --status "Done": want one of Enqueued, Running, Retrying, Succeeded, Failed, Expired, Stopping, Stopped`, true},
		{[]string{"tasks", "ls", "resize", "--since", "yesterday"}, `invalid --since "yesterday": want an RFC 3339 time such as 2026-11-24T10:00:00Z, or a duration ago such as 90s, 1h or 2d`, true},
		{[]string{"tasks", "ls", "resize", "--until", "-1h"}, `invalid --until "-1h": want an RFC 3339 time`, true},
		{[]string{"tasks", "ls", "resize", "--since", "1h", "--until", "2h"}, "--since (", true},
		{[]string{"tasks", "ls", "resize", "--limit", "0"}, "--limit must be 1 to 1000, not 0", true},
		{[]string{"tasks", "ls", "resize", "--limit", "1001"}, "--limit must be 1 to 1000, not 1001", true},
		{[]string{"tasks", "ls", "resize", "--limit", "x"}, `invalid --limit "x": want a whole number`, true},
		{[]string{"tasks", "ls", ""}, "the function name must not be empty", true},
		{[]string{"tasks", "ls"}, "accepts 1 arg(s), received 0", true},
		{[]string{"tasks", "get", "resize"}, "accepts 2 arg(s), received 1", true},
		{[]string{"tasks", "get", "resize", " "}, "the task id must not be empty", true},
		{[]string{"tasks", "stop", "resize"}, "requires at least 2 arg(s), only received 1", true},
		{[]string{"tasks", "frobnicate"}, `unknown command "frobnicate" for "nimbus tasks"`, true},
		{[]string{"tasks", "get", "resize", "nosuch"},
			"ResourceNotFoundException: Task nosuch of function resize not found (records are kept for 72h0m0s)", false},
		{[]string{"tasks", "get", "resize", "a/b c"},
			`InvalidParameterValueException: Invalid task id "a/b c": use 1 to 128 letters, digits, '-' or '_'`, false},
		{[]string{"tasks", "stop", "resize", "nosuch"}, "ResourceNotFoundException: Task nosuch of function resize not found", false},
		{[]string{"tasks", "stop", "resize", "01HX0000000000000000000001"},
			"ResourceConflictException: Task 01HX0000000000000000000001 has already finished: it is Succeeded", false},
	}
	for _, tc := range tests {
		before := len(f.requests())
		r := runCmd(t, f.URL, "", tc.args...)
		if got := OneLine(r.err); !strings.HasPrefix(got, tc.want) {
			t.Errorf("nimbus %q: got error %q, want it to start with %q", tc.args, got, tc.want)
		}
		if sent := len(f.requests()) > before; sent == tc.sendNo {
			t.Errorf("nimbus %q: sent a request = %v, want %v", tc.args, sent, !tc.sendNo)
		}
		if r.stdout != "" {
			t.Errorf("nimbus %q: stdout %q, want none", tc.args, r.stdout)
		}
	}
}

func TestTasksGet(t *testing.T) {
	f := newFakeAsync(t)
	f.addSamples()
	for _, tc := range []struct{ args, golden string }{
		{"tasks get resize 01HX0000000000000000000002", "tasks-get.golden"},
		{"tasks get resize 01HX0000000000000000000002 -o json", "tasks-get.json.golden"},
		{"tasks get resize 01HX0000000000000000000004", "tasks-get-enqueued.golden"},
	} {
		t.Run(tc.args, func(t *testing.T) {
			r := runCmd(t, f.URL, "", strings.Fields(tc.args)...)
			if r.err != nil {
				t.Fatalf("%s: %s", tc.args, OneLine(r.err))
			}
			golden(t, tc.golden, r.stdout)
		})
	}
	// The id is escaped into the path.
	runCmd(t, f.URL, "", "tasks", "get", "re size", "a/b")
	if got := f.lastRequest(t).Path; got != "/nimbus/v1/functions/re%20size/tasks/a%2Fb" {
		t.Errorf("path: got %q", got)
	}
}

func TestTasksStop(t *testing.T) {
	f := newFakeAsync(t)
	f.addSamples()
	r := runCmd(t, f.URL, "", "tasks", "stop", "resize", "01HX0000000000000000000003", "01HX0000000000000000000004")
	if r.err != nil {
		t.Fatal(OneLine(r.err))
	}
	want := "Stopping task 01HX0000000000000000000003: it was running.\nStopped task 01HX0000000000000000000004.\n"
	if r.stdout != want {
		t.Errorf("got %q, want %q", r.stdout, want)
	}
	for _, req := range f.requests() {
		if req.Method != http.MethodPost || len(req.Raw) != 0 || req.Header.Get("Authorization") == "" {
			t.Errorf("request %s %s: body %q, authorization %q; want a signed POST without a body",
				req.Method, req.Path, req.Raw, req.Header.Get("Authorization"))
		}
	}
	// Stopping a finished task is an error, and ends the command.
	r = runCmd(t, f.URL, "", "tasks", "stop", "resize", "01HX0000000000000000000004", "01HX0000000000000000000002", "order-42")
	if got, want := OneLine(r.err), "ResourceConflictException: Task 01HX0000000000000000000004 has already finished: it is Stopped"; got != want {
		t.Errorf("stop a stopped task: got %q, want %q", got, want)
	}

	f.mu.Lock()
	f.tasks["resize"][0].Status = nimbus.TaskRetrying
	f.mu.Unlock()
	r = runCmd(t, f.URL, "", "tasks", "stop", "resize", "01HX0000000000000000000001", "-o", "json")
	var got nimbus.Task
	if err := json.Unmarshal([]byte(r.stdout), &got); err != nil || r.err != nil || got.Status != nimbus.TaskStopped || got.ID != "01HX0000000000000000000001" {
		t.Errorf("-o json: got %q (%v, %v)", r.stdout, err, r.err)
	}
}

func TestInvokeAsync(t *testing.T) {
	f := newFakeAsync(t)
	r := runCmd(t, f.URL, "", "invoke", "resize", "--async", "--payload", `{"image": "a.png"}`)
	if r.err != nil {
		t.Fatal(OneLine(r.err))
	}
	if want := "Task 01HXNEW0000000000000000011 enqueued.\n"; r.stdout != want || r.stderr != "" {
		t.Errorf("got %q, %q; want %q", r.stdout, r.stderr, want)
	}
	req := f.lastRequest(t)
	if req.Header.Get("X-Amz-Invocation-Type") != "Event" || string(req.Raw) != `{"image": "a.png"}` || req.Header.Get("X-Nimbus-Task-Id") != "" {
		t.Errorf("sent invocation type %q, task id %q, body %q", req.Header.Get("X-Amz-Invocation-Type"), req.Header.Get("X-Nimbus-Task-Id"), req.Raw)
	}

	r = runCmd(t, f.URL, `{"n": 1}`, "invoke", "resize", "--async", "--task-id", "order-42", "--payload", "@-", "-o", "json")
	if r.err != nil {
		t.Fatal(OneLine(r.err))
	}
	if want := "{\n  \"taskId\": \"order-42\"\n}\n"; r.stdout != want {
		t.Errorf("-o json: got %q, want %q", r.stdout, want)
	}
	if req := f.lastRequest(t); req.Header.Get("X-Nimbus-Task-Id") != "order-42" || string(req.Raw) != `{"n": 1}` {
		t.Errorf("sent task id %q, body %q", req.Header.Get("X-Nimbus-Task-Id"), req.Raw)
	}

	// No payload: the server's default.
	if r := runCmd(t, f.URL, "", "invoke", "resize", "--async"); r.err != nil || len(f.lastRequest(t).Raw) != 0 {
		t.Errorf("no payload: %v, body %q", r.err, f.lastRequest(t).Raw)
	}
}

func TestInvokeAsyncBadInput(t *testing.T) {
	f := newFakeAsync(t)
	tests := []struct {
		args   []string
		want   string
		sendNo bool
	}{
		{[]string{"invoke", "resize", "--async", "--logs"}, "--logs cannot be used with --async", true},
		{[]string{"invoke", "resize", "--task-id", "x"}, "--task-id needs --async", true},
		{[]string{"invoke", "resize", "--async", "--task-id", ""}, "--task-id must not be empty", true},
		{[]string{"invoke", "resize", "--async", "--payload", "{oops"}, "invalid --payload: not valid JSON", true},
		{[]string{"invoke", "resize", "--async", "--task-id", "a/b c"},
			`InvalidParameterValueException: Invalid task id "a/b c": use 1 to 128 letters, digits, '-' or '_'`, false},
		{[]string{"invoke", "nope", "--async"},
			"ResourceNotFoundException: Function not found: arn:aws:lambda:us-east-1:000000000000:function:nope", false},
	}
	for _, tc := range tests {
		before := len(f.requests())
		r := runCmd(t, f.URL, "", tc.args...)
		if got := OneLine(r.err); !strings.HasPrefix(got, tc.want) {
			t.Errorf("nimbus %q: got error %q, want it to start with %q", tc.args, got, tc.want)
		}
		if sent := len(f.requests()) > before; sent == tc.sendNo {
			t.Errorf("nimbus %q: sent a request = %v, want %v", tc.args, sent, !tc.sendNo)
		}
	}
}

func TestTasksHelp(t *testing.T) {
	for _, cmd := range []string{"tasks", "dlq"} {
		r := runCmd(t, "", "", cmd)
		if r.err != nil || !strings.Contains(r.stdout, "Available Commands:") {
			t.Errorf("nimbus %s: got %q, %v; want its help", cmd, r.stdout, r.err)
		}
	}
}

func TestDurationText(t *testing.T) {
	for _, tc := range []struct {
		ms   float64
		want string
	}{
		{0, "-"}, {-1, "-"}, {0.42, "0.4ms"}, {9.96, "10.0ms"}, {12.4, "12ms"}, {999.4, "999ms"},
		{1534.2, "1.53s"}, {61234, "1m1.23s"},
	} {
		if got := durationText(tc.ms); got != tc.want {
			t.Errorf("durationText(%v) = %q, want %q", tc.ms, got, tc.want)
		}
	}
}

func TestTruncateText(t *testing.T) {
	for _, tc := range []struct {
		in   string
		n    int
		want string
	}{
		{"short", 10, "short"},
		{"a\n\tb   c", 10, "a b c"},
		{"0123456789abc", 10, "0123456..."},
		{"ééééééééééé", 10, "ééééééé..."},
	} {
		if got := truncateText(tc.in, tc.n); got != tc.want {
			t.Errorf("truncateText(%q, %d) = %q, want %q", tc.in, tc.n, got, tc.want)
		}
	}
}
