package engine

import (
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nimbus-serverless/nimbus"
)

func appendLines(s *LogStore, fn string, n, lineBytes int) {
	for i := range n {
		line := fmt.Sprintf("%s %06d ", fn, i)
		line += strings.Repeat("x", max(0, lineBytes-len(line)))
		s.Append(LogRecord{Time: time.Now(), Function: fn, Line: line})
	}
}

// checkAccounts checks that the store's byte count is its records' and
// within the total cap.
func checkAccounts(t *testing.T, s *LogStore) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	sum := 0
	for name, l := range s.funcs {
		n := 0
		for i := range l.recs[l.head:] {
			n += l.recs[l.head+i].size()
		}
		if n != l.bytes {
			t.Errorf("%s: counted %d bytes, holds %d", name, l.bytes, n)
		}
		if l.bytes > s.perFunction {
			t.Errorf("%s: %d bytes, over the per-function cap %d", name, l.bytes, s.perFunction)
		}
		sum += n
	}
	if sum != s.bytes || s.bytes > s.total {
		t.Errorf("store counts %d bytes, holds %d; total cap %d", s.bytes, sum, s.total)
	}
}

func TestLogStoreForget(t *testing.T) {
	s := NewLogStore(0, 0)
	appendLines(s, "a", 10, 50)
	appendLines(s, "b", 10, 50)
	ch, cancel := s.Follow("a")
	s.Forget("a")
	if got := s.Read("a", -1); len(got) != 0 {
		t.Errorf("a forgotten function has %d records", len(got))
	}
	if got := s.Read("b", -1); len(got) != 10 {
		t.Errorf("another function has %d records, want its 10", len(got))
	}
	select {
	case _, ok := <-ch:
		if ok {
			t.Error("the follower got a record after Forget, want its channel closed")
		}
	default:
		t.Error("the follower's channel is still open after Forget")
	}
	cancel()
	cancel()
	s.Forget("a")       // again: nothing
	s.Forget("missing") // never logged: nothing

	// A new function of the same name starts empty.
	appendLines(s, "a", 3, 50)
	if got := s.Read("a", -1); len(got) != 3 || !strings.HasPrefix(got[0].Line, "a 000000") {
		t.Errorf("new function a has %d records, want only its own 3", len(got))
	}
	checkAccounts(t, s)
}

// TestLogStoreCaps: the per-function cap drops a function's oldest
// records; the total cap drops the least recently written function's
// oldest records first.
func TestLogStoreCaps(t *testing.T) {
	const line = 100
	rec := line + recordOverhead
	s := NewLogStore(20*rec, 100*rec)

	appendLines(s, "chatty", 1000, line)
	got := s.Read("chatty", -1)
	if len(got) != 20 || !strings.HasPrefix(got[0].Line, "chatty 000980") || !strings.HasPrefix(got[19].Line, "chatty 000999") {
		t.Errorf("per-function cap kept %d records from %q, want the newest 20", len(got), got[0].Line)
	}
	checkAccounts(t, s)

	// 20 functions of 10 records each, written in turn: 200 records
	// against a cap of 100.
	for i := range 20 {
		appendLines(s, fmt.Sprintf("f%02d", i), 10, line)
	}
	appendLines(s, "f00", 1, line) // f00 is now the most recently written
	checkAccounts(t, s)
	if got := s.Read("chatty", -1); len(got) != 0 {
		t.Errorf("the least recently written function kept %d records", len(got))
	}
	if got := s.Read("f00", -1); len(got) != 1 {
		t.Errorf("f00 (written last) has %d records, want the 1 written after its older ones were evicted", len(got))
	}
	for i := 11; i < 20; i++ {
		if got := s.Read(fmt.Sprintf("f%02d", i), -1); len(got) != 10 {
			t.Errorf("f%02d (recently written) has %d records, want all 10", i, len(got))
		}
	}
	if got := s.Read("f01", -1); len(got) != 0 {
		t.Errorf("f01 (least recently written now) has %d records, want none", len(got))
	}
	// The function at the boundary keeps its newest records.
	for i := 1; i < 11; i++ {
		recs := s.Read(fmt.Sprintf("f%02d", i), -1)
		if len(recs) > 0 && !strings.HasSuffix(strings.Fields(recs[len(recs)-1].Line)[1], "9") {
			t.Errorf("f%02d kept %q last, want its newest record", i, recs[len(recs)-1].Line)
		}
	}
}

// TestLogStoreMemory: with many functions logging far more than the total
// cap, the heap stays near the cap (the per-record estimate holds).
func TestLogStoreMemory(t *testing.T) {
	const total = 8 << 20
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	s := NewLogStore(256<<10, total)
	for i := range 2000 {
		appendLines(s, fmt.Sprintf("fn-%04d", i), 200, 80) // 2000 × 200 × 80 B: 32 MB of lines
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	checkAccounts(t, s)
	grown := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	if grown > 2*total {
		t.Errorf("the heap grew by %d MB for a total cap of %d MB", grown>>20, total>>20)
	}
	runtime.KeepAlive(s)
}

// TestDeletedFunctionLogs (issue 11): a deleted function's log is gone,
// its followers end, and a new function of the same name sees nothing of
// it, not even the lines of the old instances still finishing a request.
func TestDeletedFunctionLogs(t *testing.T) {
	h := newHarness(t, nil)
	h.fn.Timeout = 60
	h.ok(t, h.fn, `{}`)
	ch, cancel := h.e.cfg.Logs.Follow("behave")
	defer cancel()

	g := newGate(t)
	old := make(chan nimbus.Result, 1)
	go func() {
		res, _ := h.e.Invoke(t.Context(), h.fn, nimbus.Invocation{RequestID: "old-in-flight", Payload: []byte(g.payload())})
		old <- res
	}()
	waitFor(t, func() bool { running, _, _, _, _ := g.Stats(); return running == 1 })

	h.e.Refresh("behave", nil)
	if got := h.e.cfg.Logs.Read("behave", -1); len(got) != 0 {
		t.Errorf("the deleted function still has %d log records", len(got))
	}
	for range len(ch) {
		<-ch // what was followed before the delete
	}
	select {
	case _, ok := <-ch:
		if ok {
			t.Error("the follower got a record after the delete")
		}
	case <-time.After(5 * time.Second):
		t.Error("the follower of the deleted function's log did not end")
	}

	again := *h.fn
	again.RevisionID = "new"
	if _, err := h.e.Invoke(t.Context(), &again, nimbus.Invocation{RequestID: "new-function", Payload: []byte(`{}`)}); err != nil {
		t.Fatal(err)
	}
	g.Open()
	if res := <-old; !strings.Contains(string(res.LogTail), "REPORT RequestId: old-in-flight") {
		t.Errorf("the in-flight request's own tail lacks its REPORT:\n%s", res.LogTail)
	}
	recs := h.e.cfg.Logs.Read("behave", -1)
	if len(recs) == 0 {
		t.Fatal("the new function has no log")
	}
	for _, r := range recs {
		if r.RequestID != "new-function" {
			t.Errorf("the new function's log shows %q of request %q", r.Line, r.RequestID)
		}
	}
}

// sinkRecorder is a LogSink that keeps what it gets.
type sinkRecorder struct {
	mu     sync.Mutex
	recs   []LogRecord
	forgot []string
}

func (k *sinkRecorder) Add(r LogRecord) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.recs = append(k.recs, r)
}

func (k *sinkRecorder) Forget(fn string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.forgot = append(k.forgot, fn)
}

// TestLogStoreSink: every record the store keeps goes to its sink, a
// forgotten function too, and the lines of a forgotten function's last
// instances go to neither.
func TestLogStoreSink(t *testing.T) {
	s := NewLogStore(0, 0)
	k := &sinkRecorder{}
	s.SetSink(k)
	s.Append(LogRecord{Function: "a", Line: "1"})
	l := s.handle("b")
	s.appendTo(l, LogRecord{Function: "b", Line: "2"})
	s.Forget("b")
	s.appendTo(l, LogRecord{Function: "b", Line: "late"})
	if len(k.recs) != 2 || k.recs[0].Line != "1" || k.recs[1].Line != "2" {
		t.Errorf("the sink got %+v, want lines 1 and 2", k.recs)
	}
	if len(k.forgot) != 1 || k.forgot[0] != "b" {
		t.Errorf("the sink forgot %v, want [b]", k.forgot)
	}
}

// TestOutputRateLimit: lines over an instance's log rate are dropped, and
// a marker line attributed to the request says how many bytes; the lines
// within it and the platform's lines are kept.
func TestOutputRateLimit(t *testing.T) {
	s := NewLogStore(0, 0)
	var wg sync.WaitGroup
	o, err := newOutput(s, "f", sysLog{}, newLogLimiter(100_000), &wg) // burst 256 KB+1
	if err != nil {
		t.Fatal(err)
	}
	o.begin("req-1")
	line := strings.Repeat("x", 999) + "\n" // 1000 bytes a line
	o.mu.Lock()
	for range 1000 { // 1 MB at once: about 256 lines fit the burst
		o.consumeLocked([]byte(line))
	}
	o.mu.Unlock()
	o.end("req-1", invokeReport{status: statusSuccess})
	o.close()
	wg.Wait()
	kept, dropped := 0, 0
	var markers []string
	for _, r := range s.Read("f", -1) {
		if r.RequestID != "req-1" {
			t.Errorf("line %q of request %q", r.Line, r.RequestID)
		}
		switch {
		case strings.HasPrefix(r.Line, "xxx"):
			kept++
		case strings.HasPrefix(r.Line, "[nimbus] log rate limit: dropped "):
			markers = append(markers, r.Line)
			var n int
			if _, err := fmt.Sscanf(r.Line, "[nimbus] log rate limit: dropped %d bytes in the last second", &n); err != nil {
				t.Fatalf("marker %q: %v", r.Line, err)
			}
			dropped += n
		}
	}
	if kept < 200 || kept > 300 {
		t.Errorf("kept %d lines of 1000 bytes, want about 256 (the burst)", kept)
	}
	if got := s.RateDropped(); got != uint64(dropped) {
		t.Errorf("RateDropped() = %d, the markers say %d", got, dropped)
	}
	if dropped != (1000-kept)*1000 || len(markers) == 0 || len(markers) > 2 {
		t.Errorf("markers %v count %d bytes dropped, want %d in one or two markers", markers, dropped, (1000-kept)*1000)
	}
	all := s.Read("f", -1)
	if !strings.HasPrefix(all[0].Line, "START") || !strings.HasPrefix(all[len(all)-1].Line, "REPORT") {
		t.Errorf("the platform lines were dropped: first %q, last %q", all[0].Line, all[len(all)-1].Line)
	}
}

// TestReportLine: the text REPORT line, exactly as Lambda writes it, with
// and without the init of a cold start.
func TestReportLine(t *testing.T) {
	r := invokeReport{duration: 1234567 * time.Nanosecond, memoryMB: 128, maxUsedMB: 20}
	if got, want := (sysLog{}).report("id-1", r), "REPORT RequestId: id-1\tDuration: 1.23 ms\tBilled Duration: 2 ms\tMemory Size: 128 MB\tMax Memory Used: 20 MB"; got != want {
		t.Errorf("warm REPORT\n got %q\nwant %q", got, want)
	}
	r.init = 2500 * time.Microsecond
	if got, want := (sysLog{}).report("id-2", r), "REPORT RequestId: id-2\tDuration: 1.23 ms\tBilled Duration: 4 ms\tMemory Size: 128 MB\tMax Memory Used: 20 MB\tInit Duration: 2.50 ms"; got != want {
		t.Errorf("cold REPORT\n got %q\nwant %q", got, want)
	}
}
