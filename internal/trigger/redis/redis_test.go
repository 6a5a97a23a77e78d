package redis

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/testenv"
	"github.com/nimbus-serverless/nimbus/internal/trigger"
	"github.com/nimbus-serverless/nimbus/internal/trigger/triggertest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// serverURL is the shared Redis (NIMBUS_REDIS_URL overrides).
func serverURL() string {
	if u := os.Getenv("NIMBUS_REDIS_URL"); u != "" {
		return u
	}
	return "redis://127.0.0.1:6379/0"
}

// server connects to the shared Redis, skipping the test when it is down
// unless NIMBUS_REQUIRE_SERVICES=1.
func server(t testing.TB) *goredis.Client {
	t.Helper()
	opt, err := goredis.ParseURL(serverURL())
	if err != nil {
		t.Fatal(err)
	}
	opt.DialTimeout, opt.MaxRetries = 2*time.Second, -1
	rc := goredis.NewClient(opt)
	if err := rc.Ping(context.Background()).Err(); err != nil {
		rc.Close()
		testenv.Unavailable(t, "Redis", serverURL(), err)
	}
	t.Cleanup(func() { rc.Close() })
	return rc
}

// stream names a fresh stream, deleted when the test ends.
func stream(t testing.TB, rc *goredis.Client) string {
	t.Helper()
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	name := "nimbus-test-" + strings.ReplaceAll(t.Name(), "/", "-") + "-" + hex.EncodeToString(b)
	t.Cleanup(func() { rc.Del(context.Background(), name, name+"-dlq") })
	return name
}

// add appends entries body=m-<from>..m-<to-1>.
func add(t testing.TB, rc *goredis.Client, s string, from, to int) {
	t.Helper()
	ctx := context.Background()
	for lo := from; lo < to; lo += 500 {
		p := rc.Pipeline()
		for i := lo; i < min(lo+500, to); i++ {
			p.XAdd(ctx, &goredis.XAddArgs{Stream: s, Values: []any{"body", triggertest.Body(i)}})
		}
		if _, err := p.Exec(ctx); err != nil {
			t.Fatal(err)
		}
	}
}

// source builds a Source reading body from s at url, from the stream's
// start, as consumer, with short timings.
func source(t testing.TB, url, s, consumer string) *Source {
	t.Helper()
	raw, _ := json.Marshal(Config{URL: url, Stream: s, StartPosition: StartTrimHorizon, Consumer: consumer, DataField: "body"})
	src, err := newSource(raw)
	if err != nil {
		t.Fatal(err)
	}
	src.minBackoff, src.maxBackoff = 10*time.Millisecond, 100*time.Millisecond
	src.idleBlock, src.lagEvery = 50*time.Millisecond, 50*time.Millisecond
	return src
}

func TestNewValidation(t *testing.T) {
	tests := []struct {
		name, raw, want string
	}{
		{"not json", `[`, "redis trigger config"},
		{"unknown field", `{"url":"redis://h:6379","stream":"s","steam":1}`, `unknown field "steam"`},
		{"wrong type", `{"url":"redis://h:6379","stream":5}`, "stream"},
		{"no url", `{"stream":"s"}`, "url is required"},
		{"bad url", `{"url":"http://u:secret@h:6379","stream":"s"}`, "url is not a valid Redis URL"},
		{"bad db", `{"url":"redis://u:secret@h:6379/x","stream":"s"}`, "url is not a valid Redis URL"},
		{"no stream", `{"url":"redis://h:6379"}`, "stream is required"},
		{"bad start", `{"url":"redis://h:6379","stream":"s","startPosition":"AT_TIMESTAMP"}`, "startPosition must be"},
		{"negative claim", `{"url":"redis://h:6379","stream":"s","claimIdleSeconds":-1}`, "claimIdleSeconds must be"},
		{"huge claim", `{"url":"redis://h:6379","stream":"s","claimIdleSeconds":100000}`, "claimIdleSeconds must be"},
		{"dlq is stream", `{"url":"redis://h:6379","stream":"s","deadLetterStream":"s"}`, "deadLetterStream must differ"},
		{"bad orderBy", `{"url":"redis://h:6379","stream":"s","orderBy":"partition"}`, `orderBy must be "none", "stream" or "field:<name>", got "partition"`},
		{"orderBy wrong type", `{"url":"redis://h:6379","stream":"s","orderBy":true}`, "orderBy"},
		{"orderBy field without name", `{"url":"redis://h:6379","stream":"s","orderBy":"field:"}`, `orderBy "field:" needs a field name`},
		{"orderBy field with space", `{"url":"redis://h:6379","stream":"s","orderBy":"field :k"}`, "orderBy must be"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(json.RawMessage(tt.raw))
			if !errors.Is(err, nimbus.ErrInvalid) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("New(%s) = %v, want an ErrInvalid containing %q", tt.raw, err, tt.want)
			}
			if strings.Contains(err.Error(), "secret") {
				t.Errorf("error %q shows the password", err)
			}
		})
	}
	src, err := New(json.RawMessage(`{"url":"redis://:pw@h:6380/2","stream":"s","startPosition":"trim_horizon"}`))
	if err != nil {
		t.Fatalf("valid config: %v", err)
	}
	if got, want := src.(*Source).source, "redis://h:6380/2/s"; got != want {
		t.Errorf("source = %q, want %q", got, want)
	}
	if got := src.(*Source).settings(trigger.Options{Group: "g"}); got.group != "g" || got.start != "0" || got.consumer == "" || got.Concurrency != 1 {
		t.Errorf("settings = %+v, want group g from Options, start 0, a host consumer name, concurrency 1", got)
	}
	for _, tt := range []struct{ orderBy, want, field string }{
		{"", OrderNone, ""}, {"None", OrderNone, ""}, {"STREAM", OrderStream, ""},
		{"field:Customer", "field:Customer", "Customer"}, {"FIELD:k:v", "field:k:v", "k:v"},
	} {
		raw, _ := json.Marshal(Config{URL: "redis://h:6379", Stream: "s", OrderBy: tt.orderBy})
		src, err := newSource(raw)
		if err != nil {
			t.Errorf("orderBy %q: %v", tt.orderBy, err)
			continue
		}
		if src.cfg.OrderBy != tt.want || src.orderField != tt.field {
			t.Errorf("orderBy %q = %q, field %q; want %q, field %q", tt.orderBy, src.cfg.OrderBy, src.orderField, tt.want, tt.field)
		}
	}
}

// TestEntryData checks how an entry becomes a message: its data (the JSON
// object of its fields, or with dataField that field's value), its id and
// its time (the suite checks entries with dataField).
func TestEntryData(t *testing.T) {
	rc := server(t)
	s := stream(t, rc)
	id, err := rc.XAdd(t.Context(), &goredis.XAddArgs{Stream: s, ID: "1700000000000-0", Values: []any{"a", "1", "b", "x"}}).Result()
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := json.Marshal(Config{URL: serverURL(), Stream: s, StartPosition: StartTrimHorizon, Consumer: "c"})
	src, err := newSource(raw)
	if err != nil {
		t.Fatal(err)
	}
	sink := &triggertest.Sink{}
	stop := triggertest.Run(t, src, sink, triggertest.Options(10, 0))
	sink.WaitDistinct(t, 1, 10*time.Second)
	stop()
	m := sink.Messages()[0]
	var fields map[string]string
	if err := json.Unmarshal(m.Data, &fields); err != nil || fields["a"] != "1" || fields["b"] != "x" {
		t.Errorf("data = %s, want the JSON object of the fields", m.Data)
	}
	if m.ID != id || !m.Time.Equal(time.UnixMilli(1700000000000)) || m.DataContentType != "application/json" {
		t.Errorf("message = %+v, want the entry id, its time, JSON", m)
	}
	c := &consumer{Source: &Source{cfg: Config{DataField: "d"}}}
	if b, ct := c.data(map[string]any{"d": "\x00\xff"}); string(b) != "\x00\xff" || ct != "application/octet-stream" {
		t.Errorf("binary dataField = %q, %q; want the raw value as octet-stream", b, ct)
	}
	if b, ct := c.data(map[string]any{"d": `{"k":1}`}); string(b) != `{"k":1}` || ct != "application/json" {
		t.Errorf("JSON dataField = %q, %q; want the raw value as JSON", b, ct)
	}
}

func TestStartPosition(t *testing.T) {
	rc := server(t)
	s := stream(t, rc)
	add(t, rc, s, 0, 5)
	raw, _ := json.Marshal(Config{URL: serverURL(), Stream: s, DataField: "body", Consumer: "c"})
	src, err := newSource(raw)
	if err != nil {
		t.Fatal(err)
	}
	sink := &triggertest.Sink{}
	o := triggertest.Options(10, 0)
	stop := triggertest.Run(t, src, sink, o)
	triggertest.WaitFor(t, "the group", func() bool { return o.Status.View().State == trigger.StateActive })
	add(t, rc, s, 5, 8)
	sink.WaitDistinct(t, 3, 10*time.Second)
	stop()
	if m := sink.Messages(); len(m) != 3 || string(m[0].Data) != triggertest.Body(5) {
		t.Errorf("LATEST delivered %d messages starting %s, want 3 from %s", len(m), m[0].Data, triggertest.Body(5))
	}
}

// blockSink blocks until ctx ends.
type blockSink struct {
	entered chan struct{}
	once    sync.Once
}

func (s *blockSink) Deliver(ctx context.Context, _ []trigger.Message) error {
	s.once.Do(func() { close(s.entered) })
	<-ctx.Done()
	return ctx.Err()
}

// crash runs a consumer whose sink blocks, then cancels it: nothing is
// acknowledged.
func crash(t *testing.T, src *Source) {
	t.Helper()
	sink := &blockSink{entered: make(chan struct{})}
	stop := triggertest.Run(t, src, sink, triggertest.Options(10, 0))
	select {
	case <-sink.entered:
	case <-time.After(20 * time.Second):
		t.Fatal("sink never called")
	}
	stop()
}

// TestCrashTakenOver checks that entries pending at a consumer that went
// away are taken over by another once idle for claimIdle (a new source of
// the same consumer is in the conformance suite).
func TestCrashTakenOver(t *testing.T) {
	rc := server(t)
	s := stream(t, rc)
	add(t, rc, s, 0, 200)
	crash(t, source(t, serverURL(), s, "a"))
	b := source(t, serverURL(), s, "b")
	b.claimIdle = 50 * time.Millisecond
	sink := &triggertest.Sink{}
	o := triggertest.Options(10, 0)
	stop := triggertest.Run(t, b, sink, o)
	sink.WaitDistinct(t, 200, 20*time.Second)
	triggertest.WaitFor(t, "200 acknowledged", func() bool { return o.Status.View().Delivered == 200 })
	stop()
	if n, err := rc.XPending(t.Context(), s, "test").Result(); err != nil || n.Count != 0 {
		t.Errorf("pending = %+v, %v; want none", n, err)
	}
}

func TestDeadLetter(t *testing.T) {
	rc := server(t)
	s := stream(t, rc)
	raw, _ := json.Marshal(Config{URL: serverURL(), Stream: s, DeadLetterStream: s + "-dlq"})
	src, err := newSource(raw)
	if err != nil {
		t.Fatal(err)
	}
	msgs := []trigger.Message{{ID: "1-0", Data: []byte("poison"), DataContentType: "text/plain", Subject: s, Time: time.Now()}}
	if err := src.DeadLetter(t.Context(), msgs); err != nil {
		t.Fatalf("DeadLetter: %v", err)
	}
	got, err := rc.XRange(t.Context(), s+"-dlq", "-", "+").Result()
	if err != nil || len(got) != 1 || got[0].Values["data"] != "poison" || got[0].Values["id"] != "1-0" {
		t.Fatalf("dead-letter stream holds %+v, %v; want the poison message", got, err)
	}
	plain := source(t, serverURL(), s, "c")
	if err := plain.DeadLetter(t.Context(), msgs); !errors.Is(err, trigger.ErrNoDeadLetter) {
		t.Errorf("DeadLetter without a stream = %v, want ErrNoDeadLetter", err)
	}
}

// BenchmarkThroughput measures entries/s from a stream into a no-op sink
// with batches of 100.
func BenchmarkThroughput(b *testing.B) {
	rc := server(b)
	s := stream(b, rc)
	add(b, rc, s, 0, b.N)
	sink := &countSink{}
	b.ResetTimer()
	stop := triggertest.Run(b, source(b, serverURL(), s, "bench"), sink, triggertest.Options(100, 5*time.Millisecond))
	for sink.n.Load() < int64(b.N) {
		time.Sleep(time.Millisecond)
	}
	b.StopTimer()
	stop()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}

// countSink counts what it is given.
type countSink struct{ n atomic.Int64 }

func (s *countSink) Deliver(_ context.Context, batch []trigger.Message) error {
	s.n.Add(int64(len(batch)))
	return nil
}
