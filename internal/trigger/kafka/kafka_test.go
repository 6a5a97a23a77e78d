package kafka

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/goleak"

	"github.com/nimbus-serverless/nimbus/internal/trigger"
	"github.com/nimbus-serverless/nimbus/internal/trigger/triggertest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const (
	testTopic      = "orders"
	testPartitions = 8
	waitLong       = 60 * time.Second
)

// cluster starts an in-process Kafka with testTopic.
func cluster(t testing.TB) []string {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(testPartitions, testTopic))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c.ListenAddrs()
}

// produce writes n records {"n":from+i}, keyed so they spread over the
// partitions.
func produce(t testing.TB, brokers []string, from, n int) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.DefaultProduceTopic(testTopic))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	recs := make([]*kgo.Record, n)
	for i := range recs {
		k := from + i
		recs[i] = &kgo.Record{Key: []byte("k" + strconv.Itoa(k%31)), Value: fmt.Appendf(nil, `{"n":%d}`, k)}
	}
	if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

// testSource builds a Source on brokers with test-friendly timings.
func testSource(t testing.TB, brokers []string, start string) *Source {
	t.Helper()
	raw, _ := json.Marshal(Config{Brokers: brokers, Topic: testTopic, StartPosition: start})
	src, err := newSource(raw)
	if err != nil {
		t.Fatal(err)
	}
	src.lagEvery = 20 * time.Millisecond
	src.probeWait = 2 * time.Second
	src.minBackoff = 5 * time.Millisecond
	src.maxBackoff = 50 * time.Millisecond
	src.extra = []kgo.Opt{kgo.HeartbeatInterval(100 * time.Millisecond), kgo.FetchMaxWait(200 * time.Millisecond)}
	return src
}

// running is a Source running in the background.
type running struct {
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
	err    error
}

func start(t testing.TB, src *Source, sink trigger.Sink, opts trigger.Options) *running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- src.Run(ctx, sink, opts) }()
	t.Cleanup(func() { r.stop(t) })
	return r
}

// stop cancels the source and returns Run's result.
func (r *running) stop(t testing.TB) error {
	t.Helper()
	r.once.Do(func() {
		r.cancel()
		select {
		case r.err = <-r.done:
		case <-time.After(waitLong):
			r.err = fmt.Errorf("Run did not return within %s of cancel", waitLong)
		}
	})
	return r.err
}

func options(group string, batch, conc int) trigger.Options {
	return trigger.Options{BatchSize: batch, Concurrency: conc, Group: group, Status: trigger.NewStatus()}
}

// waitFor polls cond until it holds, failing the test after timeout.
func waitFor(t testing.TB, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestRecordKeyAndTime checks the record's key extension (as text, or
// base64 when it is not UTF-8) and that a message's time is the record's
// timestamp (the suite checks records without keys).
func TestRecordKeyAndTime(t *testing.T) {
	brokers := cluster(t)
	at := time.UnixMilli(1_700_000_000_000)
	recs := []*kgo.Record{
		{Topic: testTopic, Partition: 3, Key: []byte("customer-7"), Value: []byte(`{"id":1}`), Timestamp: at},
		{Topic: testTopic, Partition: 3, Key: []byte{0xff, 0x00}, Value: []byte("not json"), Timestamp: at},
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	sink := &triggertest.Sink{}
	start(t, testSource(t, brokers, StartTrimHorizon), sink, options("g-fields", 10, 1))
	sink.WaitDistinct(t, 2, waitLong)
	for i, m := range sink.Messages() {
		if want := []string{"customer-7", "/wA="}[i]; m.Extensions["key"] != want {
			t.Errorf("message %d: key extension %#v, want %q", i, m.Extensions["key"], want)
		}
		if !m.Time.Equal(at) {
			t.Errorf("message %d: time %v, want the record's %v", i, m.Time, at)
		}
	}
}

func TestLatestSkipsEarlierMessages(t *testing.T) {
	brokers := cluster(t)
	produce(t, brokers, 0, 20)
	sink := &triggertest.Sink{}
	start(t, testSource(t, brokers, StartLatest), sink, options("g-latest", 10, 2))
	// The group starts at the end once it has joined: keep producing
	// until something arrives.
	for i := 0; sink.Distinct() == 0; i++ {
		if i == 2000 {
			t.Fatal("nothing delivered from a LATEST source")
		}
		produce(t, brokers, 1000+i, 1)
		waitBriefly(sink)
	}
	for _, m := range sink.Messages() {
		var v struct{ N int }
		if err := json.Unmarshal(m.Data, &v); err != nil || v.N < 1000 {
			t.Errorf("LATEST source delivered earlier message %s", m.Data)
		}
	}
}

// waitBriefly gives a source a moment to deliver (LatestSkips's loop only).
func waitBriefly(s *triggertest.Sink) {
	for range 10 {
		if s.Distinct() > 0 {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestTwoMembersShareTheTopic(t *testing.T) {
	brokers := cluster(t)
	produce(t, brokers, 0, 500)
	shared := triggertest.NewCheckSink(20)
	shared.Delay = time.Millisecond
	a, b := &countSink{inner: shared}, &countSink{inner: shared}
	start(t, testSource(t, brokers, StartTrimHorizon), a, options("g-two", 20, 4))
	shared.WaitDistinct(t, 50, waitLong)
	start(t, testSource(t, brokers, StartTrimHorizon), b, options("g-two", 20, 4))
	waitFor(t, "the second member to get partitions", waitLong, func() bool { return b.n.Load() > 0 || shared.Distinct() == 500 })
	produce(t, brokers, 500, 500)
	shared.WaitDistinct(t, 1000, waitLong)
	shared.Check(t)
	t.Logf("first member: %d messages, second: %d", a.n.Load(), b.n.Load())
}

// countSink counts messages and passes them on.
type countSink struct {
	inner trigger.Sink
	n     atomic.Int64
}

func (s *countSink) Deliver(ctx context.Context, batch []trigger.Message) error {
	if err := s.inner.Deliver(ctx, batch); err != nil {
		return err
	}
	s.n.Add(int64(len(batch)))
	return nil
}

func TestLagReported(t *testing.T) {
	brokers := cluster(t)
	produce(t, brokers, 0, 50)
	release := make(chan struct{})
	sink := &triggertest.Sink{Fail: func([]trigger.Message) error { <-release; return nil }}
	opts := options("g-lag", 100, 8)
	start(t, testSource(t, brokers, StartTrimHorizon), sink, opts)
	waitFor(t, "lag 50", waitLong, func() bool {
		v := opts.Status.View()
		return v.Lag != nil && *v.Lag == 50
	})
	close(release)
	sink.WaitDistinct(t, 50, waitLong)
	waitFor(t, "lag 0", waitLong, func() bool {
		v := opts.Status.View()
		return v.Lag != nil && *v.Lag == 0
	})
}

func TestUnreachableBrokerShowsInStatus(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	src := testSource(t, []string{addr}, StartLatest)
	src.probeWait = 300 * time.Millisecond
	opts := options("g-down", 10, 1)
	r := start(t, src, &triggertest.Sink{}, opts)
	waitFor(t, "the Error state", waitLong, func() bool { return opts.Status.View().State == trigger.StateError })
	if v := opts.Status.View(); !strings.Contains(v.Reason, "refused") {
		t.Errorf("reason = %q, want the connection refusal", v.Reason)
	}
	if err := r.stop(t); err != nil {
		t.Errorf("Run = %v, want nil after cancel", err)
	}
}

func TestUnknownTopicShowsInStatus(t *testing.T) {
	brokers := cluster(t)
	raw, _ := json.Marshal(Config{Brokers: brokers, Topic: "missing"})
	src, err := newSource(raw)
	if err != nil {
		t.Fatal(err)
	}
	src.lagEvery = 20 * time.Millisecond
	opts := options("g-missing", 10, 1)
	r := start(t, src, &triggertest.Sink{}, opts)
	waitFor(t, "the Error state", waitLong, func() bool { return opts.Status.View().State == trigger.StateError })
	if v := opts.Status.View(); !strings.Contains(v.Reason, "UNKNOWN_TOPIC") || !strings.Contains(v.Reason, "missing") {
		t.Errorf("reason = %q, want the unknown topic", v.Reason)
	}
	if err := r.stop(t); err != nil {
		t.Errorf("Run = %v, want nil after cancel", err)
	}
}

func TestRunWithoutGroupFails(t *testing.T) {
	src := testSource(t, []string{"127.0.0.1:1"}, StartLatest)
	err := src.Run(t.Context(), &triggertest.Sink{}, trigger.Options{BatchSize: 1, Concurrency: 1})
	if err == nil || !strings.Contains(err.Error(), "no consumer group") {
		t.Errorf("Run without a group = %v, want a no consumer group error", err)
	}
}

func TestForgetDeletesNimbusGroup(t *testing.T) {
	brokers := cluster(t)
	produce(t, brokers, 0, 40)
	opts := options("g-forget", 10, 2)
	src := testSource(t, brokers, StartTrimHorizon)
	sink := &triggertest.Sink{}
	r := start(t, src, sink, opts)
	sink.WaitDistinct(t, 40, waitLong)

	// While a member is in the group, it is not deleted.
	short, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	if err := src.Forget(short, opts); err == nil || !strings.Contains(err.Error(), "members") {
		t.Fatalf("Forget of a group in use: %v, want an error about its members", err)
	}
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
	for range 2 { // the second finds it gone: success
		if err := src.Forget(t.Context(), opts); err != nil {
			t.Fatal(err)
		}
	}
	// The commits went with the group: the same group starts over.
	again := &triggertest.Sink{}
	start(t, testSource(t, brokers, StartTrimHorizon), again, opts)
	again.WaitDistinct(t, 40, waitLong)

	// A group the user named is theirs: Forget leaves it alone.
	raw, _ := json.Marshal(Config{Brokers: brokers, Topic: testTopic, Group: "users-group"})
	own, err := newSource(raw)
	if err != nil {
		t.Fatal(err)
	}
	if err := own.Forget(short, opts); err != nil {
		t.Fatalf("Forget with a user-named group: %v, want nil (nothing to do)", err)
	}
}

// TestSessionTimeoutHandsOverACrashedMembersPartitions cuts a member off
// the broker (as a crash would: no heartbeat, no leaving): the other
// member gets its partitions once the configured session timeout has
// passed, not after the default 45 s.
func TestSessionTimeoutHandsOverACrashedMembersPartitions(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(testPartitions, testTopic), kfake.GroupMinSessionTimeout(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	brokers := c.ListenAddrs()
	member := func(via string) *Source {
		raw, _ := json.Marshal(Config{Brokers: brokers, Topic: testTopic, StartPosition: StartTrimHorizon, SessionTimeout: "1s"})
		src, err := newSource(raw)
		if err != nil {
			t.Fatal(err)
		}
		src.lagEvery, src.probeWait = 20*time.Millisecond, 2*time.Second
		src.minBackoff, src.maxBackoff = 5*time.Millisecond, 50*time.Millisecond
		src.extra = []kgo.Opt{kgo.FetchMaxWait(200 * time.Millisecond)}
		if via != "" {
			src.extra = append(src.extra, kgo.Dialer(func(ctx context.Context, network, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, network, via)
			}))
		}
		return src
	}
	proxy := triggertest.NewProxy(t, brokers[0])
	first := &countSink{inner: &triggertest.Sink{}}
	start(t, member(proxy.Addr()), first, options("g-crash", 10, 8))
	produce(t, brokers, 0, 80)
	waitFor(t, "the first member consuming", waitLong, func() bool { return first.n.Load() > 0 })
	proxy.Cut() // the first member can neither heartbeat nor leave
	cutAt := time.Now()

	second := &triggertest.Sink{}
	start(t, member(""), second, options("g-crash", 10, 8))
	produce(t, brokers, 80, 120)
	waitFor(t, "the second member to get every partition", 15*time.Second, func() bool {
		later := map[string]bool{}
		for _, m := range second.Messages() {
			var v struct{ N int }
			if json.Unmarshal(m.Data, &v) == nil && v.N >= 80 {
				later[string(m.Data)] = true
			}
		}
		return len(later) == 120
	})
	if took := time.Since(cutAt); took >= DefaultSessionTimeout {
		t.Errorf("the partitions were handed over after %s, want about the 1s session timeout", took)
	}
	proxy.Restore() // lets the first member stop without waiting out its commit timeout
}

func TestSessionTimeoutRefusedByTheBrokerShowsInStatus(t *testing.T) {
	brokers := cluster(t) // the group's minimum session timeout is 6s
	raw, _ := json.Marshal(Config{Brokers: brokers, Topic: testTopic, SessionTimeout: "2s"})
	src, err := newSource(raw)
	if err != nil {
		t.Fatal(err)
	}
	src.lagEvery = 20 * time.Millisecond
	opts := options("g-refused", 10, 1)
	r := start(t, src, &triggertest.Sink{}, opts)
	waitFor(t, "the Error state", waitLong, func() bool { return opts.Status.View().State == trigger.StateError })
	if v := opts.Status.View(); !strings.Contains(v.Reason, "INVALID_SESSION_TIMEOUT") {
		t.Errorf("reason = %q, want the broker's INVALID_SESSION_TIMEOUT", v.Reason)
	}
	if err := r.stop(t); err != nil {
		t.Errorf("Run = %v, want nil after cancel", err)
	}
}
