package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/store"
	"github.com/nimbus-serverless/nimbus/internal/store/mem"
)

func openMember(t *testing.T, kv store.KV, id, addr string, interval, ttl time.Duration, warm map[string]int) *Membership {
	t.Helper()
	m, err := Open(t.Context(), Config{KV: kv, Interval: interval, TTL: ttl, Self: func() Member {
		return Member{ID: id, Address: addr, Version: "test", Started: time.Now(), Warm: warm}
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close(context.Background()) })
	return m
}

func putMember(t testing.TB, kv store.KV, m Member) {
	t.Helper()
	m.At = time.Now()
	b, _ := json.Marshal(m)
	if _, err := kv.Put(t.Context(), m.ID, b); err != nil {
		t.Fatal(err)
	}
}

func ids(ms []Member) string {
	var s []string
	for _, m := range ms {
		s = append(s, m.ID)
	}
	return strings.Join(s, ",")
}

func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestMembership: nodes see each other; a node that stops writing its
// heartbeat without leaving (a crash) is forgotten after the TTL; one that
// closes is forgotten at once; candidates come least loaded first.
func TestMembership(t *testing.T) {
	kv := mem.NewKV()
	a := openMember(t, kv, "a", "http://a", 50*time.Millisecond, 300*time.Millisecond, nil)
	b := openMember(t, kv, "b", "http://b", 50*time.Millisecond, 300*time.Millisecond, map[string]int{"f@k1": 2})
	eventually(t, time.Second, "a and b see each other", func() bool { return ids(a.Live()) == "a,b" && ids(b.Live()) == "a,b" })
	if !a.PeersWarm("f") || a.PeersWarm("g") || b.PeersWarm("f") {
		t.Errorf("PeersWarm: a sees f %v, g %v; b sees its own f %v; want true, false, false", a.PeersWarm("f"), a.PeersWarm("g"), b.PeersWarm("f"))
	}
	// Crashed nodes: one heartbeat each, never again.
	putMember(t, kv, Member{ID: "ghost1", Address: "http://g1", Load: 0.5, Warm: map[string]int{"f@k1": 1}})
	putMember(t, kv, Member{ID: "ghost2", Address: "http://g2", Load: 0.1, Warm: map[string]int{"f@k1": 1, "f@k2": 5}})
	eventually(t, time.Second, "a sees the ghosts", func() bool { return ids(a.Live()) == "a,b,ghost1,ghost2" })
	if got := ids(a.Candidates("f@k1")); got != "b,ghost2,ghost1" {
		t.Errorf("candidates of f@k1: %s, want b (load 0), ghost2 (0.1), ghost1 (0.5)", got)
	}
	if got := ids(a.Candidates("f@k2")); got != "ghost2" {
		t.Errorf("candidates of f@k2 (another version): %s, want ghost2", got)
	}
	start := time.Now()
	eventually(t, time.Second, "the ghosts are forgotten after the TTL", func() bool { return ids(a.Live()) == "a,b" })
	if waited := time.Since(start); waited < 200*time.Millisecond {
		t.Errorf("the ghosts went after %s, before the TTL", waited)
	}
	if got := ids(a.Candidates("f@k1")); got != "b" {
		t.Errorf("candidates after the expiry: %s, want b", got)
	}
	if err := b.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	eventually(t, 150*time.Millisecond, "a closed node is forgotten at once", func() bool { return ids(a.Live()) == "a" })
	if a.PeersWarm("f") {
		t.Errorf("a still sees f warm on the closed node")
	}
	// A malformed heartbeat is ignored.
	if _, err := kv.Put(t.Context(), "junk", []byte("{")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	if got := ids(a.Live()); got != "a" {
		t.Errorf("after a malformed heartbeat: %s", got)
	}
}

func TestMembershipBadInputs(t *testing.T) {
	kv := mem.NewKV()
	self := func(id string) func() Member { return func() Member { return Member{ID: id} } }
	for name, cfg := range map[string]Config{
		"no KV":        {Self: self("a")},
		"no Self":      {KV: kv},
		"short TTL":    {KV: kv, Self: self("a"), Interval: time.Second, TTL: time.Second},
		"empty id":     {KV: kv, Self: self("")},
		"bad id chars": {KV: kv, Self: self("a b/c")},
	} {
		if m, err := Open(t.Context(), cfg); err == nil {
			m.Close(t.Context())
			t.Errorf("%s: no error", name)
		}
	}
}

type fakeLocal struct {
	calls atomic.Int32
	name  string
}

func (f *fakeLocal) Invoke(ctx context.Context, fn *nimbus.Function, req nimbus.Invocation) (nimbus.Result, error) {
	f.calls.Add(1)
	return nimbus.Result{Payload: []byte(`"` + f.name + ":" + string(req.Payload) + `"`), Report: nimbus.Report{InstanceID: f.name}}, nil
}
func (f *fakeLocal) Warm(string) int { return 0 }

type fakeEngine struct {
	key  string
	free bool
	hold error
	used atomic.Bool
}

func (e *fakeEngine) Free(*nimbus.Function) (string, bool, error) { return e.key, e.free, nil }
func (e *fakeEngine) Hold(ctx context.Context, fn *nimbus.Function, key string) (context.Context, func() bool, error) {
	if e.hold != nil {
		return ctx, nil, e.hold
	}
	if key != e.key {
		return ctx, nil, errors.New("another version")
	}
	return ctx, func() bool { return true }, nil
}

var testKey = []byte(strings.Repeat("k", 32))

func newFwd(t testing.TB, m *Membership, local Invoker, eng Engine) *Forwarder {
	t.Helper()
	f, err := NewForwarder(ForwarderConfig{Members: m, Local: local, Engine: eng, Key: testKey,
		Resolve: func(_ context.Context, name, _ string) (*nimbus.Function, error) {
			if name == "missing" {
				return nil, nimbus.Errorf(nimbus.ErrNotFound, "no %s", name)
			}
			return &nimbus.Function{Name: name}, nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// TestForward: A forwards to B's warm instance (B's local runs it, A's not);
// B without a free instance gives it back and A runs it; a peer nobody
// answers at makes A run it; a peer that took the request and hung up makes
// the invocation fail without running it again.
func TestForward(t *testing.T) {
	kv := mem.NewKV()
	bLocal, bEng := &fakeLocal{name: "b"}, &fakeEngine{key: "f@k"}
	var bFwd *Forwarder
	bSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { bFwd.ServeHTTP(w, r) }))
	defer bSrv.Close()
	bm := openMember(t, kv, "b", bSrv.URL, 50*time.Millisecond, 10*time.Second, map[string]int{"f@k": 1})
	bFwd = newFwd(t, bm, bLocal, bEng)
	am := openMember(t, kv, "a", "http://a", 50*time.Millisecond, 10*time.Second, nil)
	aLocal := &fakeLocal{name: "a"}
	aFwd := newFwd(t, am, aLocal, &fakeEngine{key: "f@k"})
	eventually(t, time.Second, "a sees b", func() bool { return am.PeersWarm("f") })

	fn := &nimbus.Function{Name: "f"}
	call := func(trigger string) (string, error) {
		res, err := aFwd.Invoke(t.Context(), fn, nimbus.Invocation{RequestID: "r" + time.Now().String(), Payload: []byte("1"), Trigger: trigger})
		return string(res.Payload), err
	}
	if got, err := call(nimbus.TriggerAPI); err != nil || got != `"b:1"` || bLocal.calls.Load() != 1 || aLocal.calls.Load() != 0 {
		t.Errorf("forward: %s %v; calls a %d b %d; want b's answer, run once on b", got, err, aLocal.calls.Load(), bLocal.calls.Load())
	}
	if got, _ := call(nimbus.TriggerAsync); got != `"a:1"` {
		t.Errorf("an async invocation went to %s, want a (never forwarded)", got)
	}
	bEng.hold = errors.New("busy")
	if got, err := call(nimbus.TriggerURL); err != nil || got != `"a:1"` || aFwd.Fallbacks.Load() != 1 {
		t.Errorf("b busy: %s %v, fallbacks %d; want a's answer", got, err, aFwd.Fallbacks.Load())
	}
	bEng.hold = nil

	// A peer at a dead address.
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := "http://" + l.Addr().String()
	l.Close()
	putMember(t, kv, Member{ID: "dead", Address: dead, Warm: map[string]int{"g@k": 1}})
	eventually(t, time.Second, "a sees dead", func() bool { return am.PeersWarm("g") })
	aFwdG := newFwd(t, am, aLocal, &fakeEngine{key: "g@k"})
	before := aLocal.calls.Load()
	if res, err := aFwdG.Invoke(t.Context(), &nimbus.Function{Name: "g"}, nimbus.Invocation{RequestID: "x", Trigger: nimbus.TriggerAPI}); err != nil || aLocal.calls.Load() != before+1 {
		t.Errorf("a dead peer: %s %v; a ran %d, want a fallback to a", res.Payload, err, aLocal.calls.Load()-before)
	}
	// Not asked again for a while: no fallback counted, a runs it at once.
	fb := aFwdG.Fallbacks.Load()
	t0 := time.Now()
	if _, err := aFwdG.Invoke(t.Context(), &nimbus.Function{Name: "g"}, nimbus.Invocation{RequestID: "x2", Trigger: nimbus.TriggerAPI}); err != nil || aFwdG.Fallbacks.Load() != fb {
		t.Errorf("the dead peer again: %v, fallbacks %d -> %d; want it skipped", err, fb, aFwdG.Fallbacks.Load())
	}
	if d := time.Since(t0); d > 100*time.Millisecond {
		t.Errorf("the invoke after a dead peer took %s", d)
	}

	// A peer that reads the request and hangs up: the outcome is unknown.
	var hung atomic.Int32
	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.ReadAll(r.Body)
		hung.Add(1)
		c, _, _ := w.(http.Hijacker).Hijack()
		c.Close()
	}))
	defer hang.Close()
	putMember(t, kv, Member{ID: "hang", Address: hang.URL, Warm: map[string]int{"h@k": 1}})
	eventually(t, time.Second, "a sees hang", func() bool { return am.PeersWarm("h") })
	aFwdH := newFwd(t, am, aLocal, &fakeEngine{key: "h@k"})
	before = aLocal.calls.Load()
	_, err := aFwdH.Invoke(t.Context(), &nimbus.Function{Name: "h"}, nimbus.Invocation{RequestID: "y", Trigger: nimbus.TriggerAPI})
	if !errors.Is(err, nimbus.ErrUnavailable) || aLocal.calls.Load() != before || hung.Load() != 1 {
		t.Errorf("a peer that hung up: %v, a ran %d, the peer got %d; want ErrUnavailable, nothing run again", err, aLocal.calls.Load()-before, hung.Load())
	}
}

// TestForwardBadInputs: a forwarder's config, and requests the receiving
// end refuses.
func TestForwardBadInputs(t *testing.T) {
	kv := mem.NewKV()
	m := openMember(t, kv, "a", "http://a", 50*time.Millisecond, time.Second, nil)
	if _, err := NewForwarder(ForwarderConfig{Members: m, Local: &fakeLocal{}, Engine: &fakeEngine{}, Key: []byte("short"),
		Resolve: func(context.Context, string, string) (*nimbus.Function, error) { return nil, nil }}); err == nil {
		t.Errorf("a short key: no error")
	}
	if _, err := NewForwarder(ForwarderConfig{Members: m, Key: testKey}); err == nil {
		t.Errorf("no invoker, engine or resolver: no error")
	}
	local := &fakeLocal{name: "a"}
	f := newFwd(t, m, local, &fakeEngine{key: "f@k"})
	send := func(method, body string) *httptest.ResponseRecorder {
		r := httptest.NewRequest(method, ForwardPath, strings.NewReader(body))
		Sign(r.Header, testKey, "b", time.Now(), []byte(body))
		w := httptest.NewRecorder()
		f.ServeHTTP(w, r)
		return w
	}
	for _, tc := range []struct {
		method, body string
		status       int
	}{
		{http.MethodGet, ``, http.StatusMethodNotAllowed},
		{http.MethodPost, `{`, http.StatusBadRequest},
		{http.MethodPost, `{"function":"f","key":"f@k","invocation":{"trigger":"api"}}`, http.StatusBadRequest},                           // no request id
		{http.MethodPost, `{"function":"f","key":"f@k","invocation":{"requestId":"1","trigger":"async"}}`, http.StatusBadRequest},         // not synchronous
		{http.MethodPost, `{"function":"f","key":"f@k","extra":1,"invocation":{"requestId":"2","trigger":"api"}}`, http.StatusBadRequest}, // unknown field
		{http.MethodPost, `{"function":"missing","key":"f@k","invocation":{"requestId":"3","trigger":"api"}}`, http.StatusConflict},
		{http.MethodPost, `{"function":"f","key":"f@other","invocation":{"requestId":"4","trigger":"api"}}`, http.StatusConflict},
		{http.MethodPost, `{"function":"f","key":"f@k","invocation":{"requestId":"5","trigger":"api","payload":"e30="}}`, http.StatusOK},
	} {
		w := send(tc.method, tc.body)
		if w.Code != tc.status {
			t.Errorf("%s %s: %d %s, want %d", tc.method, tc.body, w.Code, w.Body, tc.status)
		}
		if tc.status == http.StatusConflict && w.Header().Get(HeaderNotRun) != "1" {
			t.Errorf("%s: no %s header", tc.body, HeaderNotRun)
		}
	}
	if local.calls.Load() != 1 {
		t.Errorf("the receiving end ran %d invocations, want 1 (the valid one)", local.calls.Load())
	}
}

// TestShare: the nodes' shares of a provisioned concurrency add up to it
// whatever the number of nodes, differ by at most one, and the odd ones of
// different pools do not all land on the same node; a node that does not
// see itself among the live ones keeps it all.
func TestShare(t *testing.T) {
	ids := []string{"a", "b", "c", "d", "e"}
	for n := 1; n <= len(ids); n++ {
		for total := 0; total <= 11; total++ {
			sum, lo, hi := 0, total, 0
			for _, id := range ids[:n] {
				s := Share(ids[:n], id, "fn", total)
				sum, lo, hi = sum+s, min(lo, s), max(hi, s)
			}
			if sum != total || hi-lo > 1 {
				t.Errorf("%d nodes, %d provisioned: shares add up to %d, from %d to %d", n, total, sum, lo, hi)
			}
		}
	}
	first := map[string]bool{}
	for _, pool := range []string{"f1", "f2", "f3", "f4", "f5", "f6", "f7", "f8"} {
		for _, id := range ids[:3] {
			if Share(ids[:3], id, pool, 1) == 1 {
				first[id] = true
			}
		}
	}
	if len(first) < 2 {
		t.Errorf("one instance of 8 pools on 3 nodes: all on %v", first)
	}
	if s := Share(ids[:3], "z", "fn", 5); s != 5 {
		t.Errorf("a node not among the live ones keeps %d of 5", s)
	}
}
