package nats

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/nimbus-serverless/nimbus/internal/engine"
	"github.com/nimbus-serverless/nimbus/internal/fnlog"
	natsstore "github.com/nimbus-serverless/nimbus/internal/store/nats"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// open starts an embedded store in dir and a Store on it.
func open(t *testing.T, dir string, mod func(*Config)) (*Store, *natsstore.Store) {
	t.Helper()
	ns, err := natsstore.Open(t.Context(), natsstore.Config{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ns.Close(context.Background()) })
	cfg := Config{JS: ns.JetStream(), Health: ns.Healthy, FlushInterval: 20 * time.Millisecond}
	if mod != nil {
		mod(&cfg)
	}
	s, err := Open(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close(context.Background()) })
	return s, ns
}

// waitFor polls cond for up to 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func read(t *testing.T, s *Store, fn string, q fnlog.Query) []engine.LogRecord {
	t.Helper()
	recs, _, err := s.Read(t.Context(), fn, q)
	if err != nil {
		t.Fatal(err)
	}
	return recs
}

func lines(recs []engine.LogRecord) string {
	var b []string
	for _, r := range recs {
		b = append(b, r.Line)
	}
	return strings.Join(b, ",")
}

// TestWriteAndRead: lines of two functions are written in batches and
// read back by request, substring, time window and limit, oldest first,
// and after a restart of the store.
func TestWriteAndRead(t *testing.T) {
	dir := t.TempDir()
	s, ns := open(t, dir, nil)
	t0 := time.Now().Add(-time.Hour).Truncate(time.Second)
	for i := range 30 {
		s.Add(engine.LogRecord{Time: t0.Add(time.Duration(i) * time.Second), Function: "a",
			RequestID: fmt.Sprintf("r%d", i/10), Line: fmt.Sprintf("a%d", i)})
		s.Add(engine.LogRecord{Time: t0, Function: "b", Line: fmt.Sprintf("b%d", i)})
		if i%7 == 0 {
			time.Sleep(30 * time.Millisecond) // several messages
		}
	}
	waitFor(t, "60 lines written", func() bool { return s.Written() == 60 })
	all := fnlog.Query{Limit: 1000}
	cases := []struct {
		name string
		q    fnlog.Query
		want string
	}{
		{"request", fnlog.Query{RequestID: "r1", Limit: 100}, "a10,a11,a12,a13,a14,a15,a16,a17,a18,a19"},
		{"filter", fnlog.Query{Filter: "2", Limit: 100}, "a2,a12,a20,a21,a22,a23,a24,a25,a26,a27,a28,a29"},
		{"limit: the most recent, oldest first", fnlog.Query{Limit: 3}, "a27,a28,a29"},
		{"window", fnlog.Query{Since: t0.Add(5 * time.Second), Until: t0.Add(7 * time.Second), Limit: 100}, "a5,a6,a7"},
		{"request and limit", fnlog.Query{RequestID: "r0", Limit: 2}, "a8,a9"},
		{"none", fnlog.Query{RequestID: "r9", Limit: 100}, ""},
		{"limit 0", fnlog.Query{}, ""},
	}
	for _, c := range cases {
		if got := lines(read(t, s, "a", c.q)); got != c.want {
			t.Errorf("%s: got %s, want %s", c.name, got, c.want)
		}
	}
	if got := read(t, s, "b", all); len(got) != 30 || got[0].Line != "b0" || got[0].Function != "b" {
		t.Fatalf("b: got %d lines (%v), want 30 from b0", len(got), got)
	}
	if got := read(t, s, "nothing", all); len(got) != 0 {
		t.Fatalf("a function with no log: %v", got)
	}
	// A restart of the store keeps every line.
	if err := s.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := ns.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	s2, _ := open(t, dir, nil)
	if got := lines(read(t, s2, "a", fnlog.Query{RequestID: "r2", Limit: 2})); got != "a28,a29" {
		t.Fatalf("after a restart: got %s, want a28,a29", got)
	}
}

// TestFollow: a follow starts after what a read returned and sends the
// matching lines written later.
func TestFollow(t *testing.T) {
	s, _ := open(t, t.TempDir(), nil)
	s.Add(engine.LogRecord{Time: time.Now(), Function: "f", RequestID: "old", Line: "old"})
	waitFor(t, "a line written", func() bool { return s.Written() == 1 })
	recs, pos, err := s.Read(t.Context(), "f", fnlog.Query{Limit: 10})
	if err != nil || len(recs) != 1 {
		t.Fatalf("read: %v %v", recs, err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	ch, err := s.Follow(ctx, "f", fnlog.Query{RequestID: "new"}, pos)
	if err != nil {
		t.Fatal(err)
	}
	s.Add(engine.LogRecord{Time: time.Now(), Function: "f", RequestID: "other", Line: "skipped"})
	s.Add(engine.LogRecord{Time: time.Now(), Function: "g", RequestID: "new", Line: "other function"})
	s.Add(engine.LogRecord{Time: time.Now(), Function: "f", RequestID: "new", Line: "new line"})
	select {
	case r := <-ch:
		if r.Line != "new line" || r.Function != "f" {
			t.Fatalf("followed %+v, want the new line of f", r)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no line followed")
	}
	cancel()
	for range ch { // closes once ctx ends
	}
}

// TestCapPerFunction: a function keeps at most MaxBytes (the oldest
// messages go first); another function keeps its own.
func TestCapPerFunction(t *testing.T) {
	const maxBytes = 4 * MaxMessageBytes
	s, _ := open(t, t.TempDir(), func(c *Config) { c.MaxBytes = maxBytes })
	s.Add(engine.LogRecord{Time: time.Now(), Function: "quiet", Line: "kept"})
	line := strings.Repeat("x", 1000)
	total := 0
	for i := range 2000 { // 2 MB, 32 times the cap
		s.Add(engine.LogRecord{Time: time.Now(), Function: "loud", Line: fmt.Sprintf("%06d%s", i, line)})
		total++
		if i%100 == 0 {
			time.Sleep(5 * time.Millisecond) // within the buffer
		}
	}
	waitFor(t, "every line written or dropped", func() bool { return s.Written()+s.Dropped() == uint64(total+1) })
	if s.Dropped() > 0 {
		t.Logf("%d lines dropped over the buffer", s.Dropped())
	}
	got := read(t, s, "loud", fnlog.Query{Limit: fnlog.MaxLimit})
	stored := 0
	for _, r := range got {
		stored += len(r.Line)
	}
	if stored > maxBytes || len(got) == 0 {
		t.Fatalf("loud keeps %d bytes in %d lines, want some and at most %d", stored, len(got), maxBytes)
	}
	if last := got[len(got)-1].Line[:6]; last != "001999" {
		t.Fatalf("the newest line kept is %s, want 001999", last)
	}
	if got[0].Line[:6] == "000000" {
		t.Fatal("the oldest line was kept")
	}
	if got := lines(read(t, s, "quiet", fnlog.Query{Limit: 10})); got != "kept" {
		t.Fatalf("quiet: got %q, want its line", got)
	}
}

// TestStreamConfig: retention and cap become the stream's limits, and a
// reopen with others updates them.
func TestStreamConfig(t *testing.T) {
	dir := t.TempDir()
	s, ns := open(t, dir, func(c *Config) { c.Retention = 2 * time.Hour; c.MaxBytes = 1 << 20; c.Prefix = "px" })
	info, err := s.st.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	c := info.Config
	if c.Name != "px_LOGS" || c.MaxAge != 2*time.Hour || c.MaxMsgsPerSubject != 16 || c.MaxMsgSize != MaxMessageBytes || c.Subjects[0] != "px.logs.>" {
		t.Fatalf("stream config %+v", c)
	}
	s2, err := Open(t.Context(), Config{JS: ns.JetStream(), Prefix: "px"})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close(context.Background())
	info, err = s2.st.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if info.Config.MaxAge != fnlog.DefaultRetention || info.Config.MaxMsgsPerSubject != fnlog.DefaultMaxBytes/MaxMessageBytes {
		t.Fatalf("after a reopen with the defaults: %+v", info.Config)
	}
}

// TestForget: a deleted function's buffered and stored lines go; others
// stay.
func TestForget(t *testing.T) {
	s, _ := open(t, t.TempDir(), nil)
	s.Add(engine.LogRecord{Time: time.Now(), Function: "gone", Line: "1"})
	s.Add(engine.LogRecord{Time: time.Now(), Function: "stays", Line: "2"})
	waitFor(t, "two lines written", func() bool { return s.Written() == 2 })
	s.Forget("gone")
	waitFor(t, "the purge", func() bool { return len(read(t, s, "gone", fnlog.Query{Limit: 10})) == 0 })
	if got := lines(read(t, s, "stays", fnlog.Query{Limit: 10})); got != "2" {
		t.Fatalf("stays: %q", got)
	}
}

// TestStoreDown: with the store gone, Add never blocks; the lines are
// dropped and counted.
func TestStoreDown(t *testing.T) {
	s, ns := open(t, t.TempDir(), func(c *Config) { c.WriteTimeout = 200 * time.Millisecond })
	if err := ns.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	const n = 60000 // 12 MB, over the buffer
	line := strings.Repeat("y", 200)
	var slowest time.Duration
	for range n {
		began := time.Now()
		s.Add(engine.LogRecord{Time: began, Function: "f", Line: line})
		slowest = max(slowest, time.Since(began))
	}
	if slowest > 500*time.Millisecond {
		t.Fatalf("an Add took %s with the store down", slowest)
	}
	waitFor(t, "every line counted as dropped", func() bool { return s.Dropped() == n })
	if s.Written() != 0 {
		t.Fatalf("written %d with the store down", s.Written())
	}
}

// TestBufferBound: over the buffer, lines are dropped at once.
func TestBufferBound(t *testing.T) {
	s, _ := open(t, t.TempDir(), func(c *Config) { c.BufferBytes = 8 << 10; c.FlushInterval = time.Hour })
	for range 100 {
		s.Add(engine.LogRecord{Time: time.Now(), Function: "f", Line: strings.Repeat("z", 1000)})
	}
	if d := s.Dropped(); d < 90 {
		t.Fatalf("dropped %d of 100 KB of lines over an 8 KB buffer, want at least 90", d)
	}
	if err := s.Close(t.Context()); err != nil { // flushes what it kept
		t.Fatal(err)
	}
	if got := s.Written() + s.Dropped(); got != 100 {
		t.Fatalf("written+dropped = %d, want 100", got)
	}
}

// TestLongLines: a line longer than a message, or escaped to many times
// its size, is stored in pieces that read back to it.
func TestLongLines(t *testing.T) {
	s, _ := open(t, t.TempDir(), nil)
	long := strings.Repeat("é", 100<<10) + "end"
	ctrl := strings.Repeat("\x01", 40<<10)
	s.Add(engine.LogRecord{Time: time.Now(), Function: "f", Line: long})
	s.Add(engine.LogRecord{Time: time.Now(), Function: "f", Line: ctrl})
	waitFor(t, "the pieces written", func() bool { return s.Written() > 2 })
	got := lines(read(t, s, "f", fnlog.Query{Limit: 1000}))
	if strings.ReplaceAll(got, ",", "") != long+ctrl {
		t.Fatalf("read back %d bytes, want %d", len(got), len(long)+len(ctrl))
	}
	if s.Dropped() != 0 {
		t.Fatalf("dropped %d", s.Dropped())
	}
}

// TestReadWritesBufferedLines: a read first writes what this node holds,
// so a line added just before is read back, however long the interval.
func TestReadWritesBufferedLines(t *testing.T) {
	s, _ := open(t, t.TempDir(), func(c *Config) { c.FlushInterval = time.Hour })
	s.Add(engine.LogRecord{Time: time.Now(), Function: "f", RequestID: "r", Line: "just now"})
	if got := lines(read(t, s, "f", fnlog.Query{Limit: 10})); got != "just now" {
		t.Fatalf("read %q, want the line just added", got)
	}
}
