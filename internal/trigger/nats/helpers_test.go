package nats

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
	"go.uber.org/goleak"

	"github.com/nimbus-serverless/nimbus/internal/testenv"
	"github.com/nimbus-serverless/nimbus/internal/trigger"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const waitLong = 60 * time.Second

// sharedURL is the machine's NATS server (with JetStream).
func sharedURL() string {
	if u := os.Getenv("NIMBUS_NATS_URL"); u != "" {
		return u
	}
	return "nats://127.0.0.1:4222"
}

// shared returns the machine's NATS server URL, skipping the test when it
// is unreachable unless NIMBUS_REQUIRE_SERVICES=1.
func shared(t testing.TB) string {
	t.Helper()
	url := sharedURL()
	c, err := net.DialTimeout("tcp", strings.TrimPrefix(url, "nats://"), time.Second)
	if err != nil {
		testenv.Unavailable(t, "NATS", url, err)
	}
	c.Close()
	return url
}

// unique returns a name unique to this test run.
func unique(prefix string) string { return prefix + "_" + nuid.Next() }

// embedded is a JetStream server the test owns, restartable on its port
// and store directory.
type embedded struct {
	t    testing.TB
	dir  string
	port int
	srv  *server.Server
}

func startEmbedded(t testing.TB) *embedded {
	t.Helper()
	e := &embedded{t: t, dir: t.TempDir(), port: server.RANDOM_PORT}
	e.start()
	e.port = e.srv.Addr().(*net.TCPAddr).Port
	t.Cleanup(e.stop)
	return e
}

func (e *embedded) start() {
	e.t.Helper()
	srv, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: e.port, JetStream: true, StoreDir: e.dir,
		NoSigs: true, NoLog: true,
	})
	if err != nil {
		e.t.Fatal(err)
	}
	srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		e.t.Fatal("embedded nats-server not ready")
	}
	e.srv = srv
}

func (e *embedded) stop() {
	if e.srv != nil {
		e.srv.Shutdown()
		e.srv.WaitForShutdown()
		e.srv = nil
	}
}

func (e *embedded) url() string { return "nats://127.0.0.1:" + strconv.Itoa(e.port) }

// connect opens a client connection for the test (reconnecting forever).
func connect(t testing.TB, url string) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := nats.Connect(url, nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return nc, js
}

// stream creates a stream on subjects prefix.> and deletes it at the end.
func stream(t testing.TB, js jetstream.JetStream, storage jetstream.StorageType) (name, prefix string) {
	t.Helper()
	name, prefix = unique("NIMBUS_TEST"), unique("nimbustest")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: name, Subjects: []string{prefix + ".>"}, Storage: storage}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = js.DeleteStream(ctx, name)
	})
	return name, prefix
}

// publish stores n messages {"n":from+i} on prefix.k<i%keys>.
func publish(t testing.TB, js jetstream.JetStream, prefix string, from, n, keys int) {
	t.Helper()
	for i := range n {
		k := from + i
		if _, err := js.PublishAsync(fmt.Sprintf("%s.k%d", prefix, k%keys), fmt.Appendf(nil, `{"n":%d}`, k)); err != nil {
			t.Fatal(err)
		}
		if i%1000 == 999 { // stay below the client's limit of outstanding publishes
			publishWait(t, js)
		}
	}
	publishWait(t, js)
}

func publishWait(t testing.TB, js jetstream.JetStream) {
	t.Helper()
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(waitLong):
		t.Fatal("publish did not complete")
	}
}

// testSource builds a Source from cfg with test-friendly timings.
func testSource(t testing.TB, cfg Config) *Source {
	t.Helper()
	raw, _ := json.Marshal(cfg)
	src, err := newSource(raw)
	if err != nil {
		t.Fatal(err)
	}
	src.lagEvery = 20 * time.Millisecond
	src.probeWait = 2 * time.Second
	src.minBackoff = 5 * time.Millisecond
	src.maxBackoff = 50 * time.Millisecond
	src.reconnectWait = 50 * time.Millisecond
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
	t.Cleanup(func() { _ = r.stop() })
	return r
}

// stop cancels the source and returns Run's result.
func (r *running) stop() error {
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

func waitLag(t testing.TB, st *trigger.Status, want int64) {
	t.Helper()
	waitFor(t, fmt.Sprintf("lag %d", want), waitLong, func() bool {
		v := st.View()
		return v.Lag != nil && *v.Lag == want
	})
}
