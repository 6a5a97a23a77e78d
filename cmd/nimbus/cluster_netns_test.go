package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/nimbus-serverless/nimbus/internal/seal"
	"github.com/nimbus-serverless/nimbus/internal/testenv"
)

// lab is the network TestClusterPartition makes: a hub namespace with a
// bridge, one namespace per host with a veth to the bridge, and one veth
// from the test's own namespace to the bridge (its end in the test's
// namespace holds .1, the collector's address). The bridge is in a
// namespace of its own, not the test's, so that no firewall of the test's
// namespace (br_netfilter passes bridged packets through it) sees the
// hosts' traffic.
type lab struct {
	ip     string // the ip command
	id     string // unique per run: in every name
	prefix string // "10.a.b": the /24 the lab uses
	hub    string // the hub namespace
	root   string // the veth in the test's namespace
	hosts  []string
}

// ipRun runs ip with args, failing the test on an error.
func (l *lab) ipRun(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command(l.ip, args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// newLab makes the hub and n host namespaces, all removed when the test
// ends (whether it passed or not). It skips when the test is not root, and
// when ip cannot make a namespace (failing instead under
// NIMBUS_REQUIRE_SERVICES=1, where CI is root with iproute2).
func newLab(t *testing.T, n int) *lab {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("network namespaces need root")
	}
	ip, err := exec.LookPath("ip")
	if err != nil {
		ip = "/usr/sbin/ip"
	}
	if _, err := exec.LookPath("nsenter"); err != nil {
		testenv.Unavailable(t, "nsenter (util-linux)", "PATH", err)
	}
	var b [4]byte
	_, _ = rand.Read(b[:])
	l := &lab{ip: ip, id: hex.EncodeToString(b[:3])}
	l.prefix = l.freePrefix(t, b[3])
	l.hub, l.root = "nbt-"+l.id+"-hub", "nbt"+l.id
	if out, err := exec.Command(ip, "netns", "add", l.hub).CombinedOutput(); err != nil {
		testenv.Unavailable(t, "ip netns", "ip netns add", fmt.Errorf("%v: %s", err, out))
	}
	// Registered first, so it runs after the cleanups that stop the
	// processes in the namespaces.
	t.Cleanup(l.remove)
	l.ipRun(t, "-n", l.hub, "link", "add", "br0", "type", "bridge")
	l.ipRun(t, "-n", l.hub, "link", "set", "br0", "up")
	l.ipRun(t, "link", "add", l.root, "type", "veth", "peer", "name", "up0", "netns", l.hub)
	l.ipRun(t, "addr", "add", l.prefix+".1/24", "dev", l.root)
	l.ipRun(t, "link", "set", l.root, "up")
	l.ipRun(t, "-n", l.hub, "link", "set", "up0", "master", "br0", "up")
	for i := range n {
		ns := fmt.Sprintf("nbt-%s-%d", l.id, i)
		l.ipRun(t, "netns", "add", ns)
		l.hosts = append(l.hosts, ns)
		port := fmt.Sprintf("p%d", i)
		l.ipRun(t, "-n", l.hub, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns)
		l.ipRun(t, "-n", l.hub, "link", "set", port, "master", "br0", "up")
		l.ipRun(t, "-n", ns, "addr", "add", l.addr(i)+"/24", "dev", "eth0")
		l.ipRun(t, "-n", ns, "link", "set", "eth0", "up")
		l.ipRun(t, "-n", ns, "link", "set", "lo", "up")
	}
	return l
}

// freePrefix picks a 10.a.b.0/24 that no route or address of the test's
// namespace overlaps.
func (l *lab) freePrefix(t *testing.T, seed byte) string {
	t.Helper()
	out, err := exec.Command(l.ip, "-4", "route", "show", "table", "all").CombinedOutput()
	if err != nil {
		testenv.Unavailable(t, "ip route", "ip", fmt.Errorf("%v: %s", err, out))
	}
	var used []*net.IPNet
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		for _, w := range f {
			if !strings.Contains(w, ".") {
				continue
			}
			if !strings.Contains(w, "/") {
				w += "/32"
			}
			if _, n, err := net.ParseCIDR(w); err == nil {
				used = append(used, n)
			}
		}
	}
	for i := range 200 {
		a, b := 100+(int(seed)+i*7)%150, (int(seed)*13+i*31)%256
		_, mine, _ := net.ParseCIDR(fmt.Sprintf("10.%d.%d.0/24", a, b))
		if !slices.ContainsFunc(used, func(n *net.IPNet) bool { return n.Contains(mine.IP) || mine.Contains(n.IP) }) {
			return fmt.Sprintf("10.%d.%d", a, b)
		}
	}
	t.Fatal("no free 10.x.y.0/24 for the test's network")
	return ""
}

// addr is host i's address.
func (l *lab) addr(i int) string { return fmt.Sprintf("%s.%d", l.prefix, 10+i) }

// cut takes host i off the network (its port on the bridge goes down), or
// puts it back.
func (l *lab) cut(t *testing.T, i int, off bool) {
	t.Helper()
	state := "up"
	if off {
		state = "down"
	}
	l.ipRun(t, "-n", l.hub, "link", "set", fmt.Sprintf("p%d", i), state)
}

// remove deletes what newLab made; errors are logged.
func (l *lab) remove() {
	for _, ns := range append(slices.Clone(l.hosts), l.hub) {
		if out, err := exec.Command(l.ip, "netns", "del", ns).CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "ip netns del %s: %v %s\n", ns, err, out)
		}
	}
	// Gone with the hub's end; deleted in case it is not.
	_ = exec.Command(l.ip, "link", "del", l.root).Run()
}

// collector takes what the functions POST: {"kind": "tick"|"event",
// "key": ...}, with the address it came from.
type collector struct {
	mu    sync.Mutex
	seen  map[string]map[string][]string  // kind -> key -> sender addresses
	first map[string]map[string]time.Time // kind -> key -> first arrival
}

func (c *collector) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var m struct{ Kind, Key string }
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&m); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	host, _, _ := net.SplitHostPort(r.RemoteAddr)
	c.mu.Lock()
	if c.seen[m.Kind] == nil {
		c.seen[m.Kind] = map[string][]string{}
		c.first[m.Kind] = map[string]time.Time{}
	}
	if _, ok := c.first[m.Kind][m.Key]; !ok {
		c.first[m.Kind][m.Key] = time.Now()
	}
	c.seen[m.Kind][m.Key] = append(c.seen[m.Kind][m.Key], host)
	c.mu.Unlock()
}

// latest returns the latest first arrival of a tick in [from, to] after
// its scheduled time, and that tick.
func (c *collector) latest(from, to int64) (time.Duration, int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var worst time.Duration
	var tick int64
	for s := from; s <= to; s++ {
		if at, ok := c.first["tick"][fmt.Sprint(s)]; ok && at.Sub(time.Unix(s, 0)) > worst {
			worst, tick = at.Sub(time.Unix(s, 0)), s
		}
	}
	return worst, tick
}

// get returns a copy of what came of kind.
func (c *collector) get(kind string) map[string][]string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string][]string{}
	for k, v := range c.seen[kind] {
		out[k] = slices.Clone(v)
	}
	return out
}

// reporter posts each timer tick's Unix time, or each async event's id, to
// the collector (the function runs on its node's network: the host
// namespace the test made).
const reporter = `import json, os, urllib.request
from datetime import datetime
def handler(event, context):
    if event.get("type") == "com.nimbus.timer.tick":
        t = datetime.fromisoformat(event["time"].replace("Z", "+00:00"))
        msg = {"kind": "tick", "key": str(int(t.timestamp()))}
    else:
        msg = {"kind": "event", "key": event["id"]}
    req = urllib.request.Request(os.environ["COLLECTOR"], data=json.dumps(msg).encode(),
                                 headers={"Content-Type": "application/json"})
    urllib.request.urlopen(req, timeout=3).read()
    return msg
`

// TestClusterPartition runs a cluster of three `nimbus serve` processes,
// each in a network namespace of its own, with a function fired every
// second by a timer, and cuts one member (the leader of the timer's claim
// bucket) off the network for 18 s: the two others keep firing every tick
// and running the async events submitted to them, and the cut member
// rejoins and serves once its link is back.
func TestClusterPartition(t *testing.T) {
	began := time.Now()
	l := newLab(t, 3)
	col := &collector{seen: map[string]map[string][]string{}, first: map[string]map[string]time.Time{}}
	ln, err := net.Listen("tcp", l.prefix+".1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: col}
	go func() { _ = hs.Serve(ln) }()
	t.Cleanup(func() { _ = hs.Close() })

	ms := startNetnsCluster(t, l)
	t.Logf("%s: cluster formed on %s.0/24", time.Since(began).Round(time.Millisecond), l.prefix)
	a := ms[0]
	env := map[string]string{"COLLECTOR": "http://" + ln.Addr().String() + "/"}
	in := createInput(t, "rep", reporter, env)
	if _, err := a.client().CreateFunction(t.Context(), in); err != nil {
		t.Fatalf("CreateFunction: %v", err)
	}
	// At most 3 instances across the cluster: after the restore, the late
	// ticks and the events of the cut arrive at once, and a burst of cold
	// starts on a loaded machine (-race, other tests) can exceed the init
	// timeout, whose error the pool then gives every attempt for a while:
	// the burst waits for the warm instances instead (throttled, retried).
	if _, err := a.client().PutFunctionConcurrency(t.Context(), &lambda.PutFunctionConcurrencyInput{
		FunctionName: aws.String("rep"), ReservedConcurrentExecutions: aws.Int32(3)}); err != nil {
		t.Fatalf("PutFunctionConcurrency: %v", err)
	}
	// A tick whose run failed (its node was cut off the collector) is
	// retried, not dropped.
	postJSON(t, "http://"+a.addr+"/nimbus/v1/functions/rep/triggers", map[string]any{
		"name": "every", "type": "timer", "config": map[string]any{"schedule": "@every 1s"}, "maxRetries": 10})
	first := waitTicks(t, col, 60*time.Second)
	t.Logf("%s: first tick %d", time.Since(began).Round(time.Millisecond), first)
	time.Sleep(4 * time.Second)

	victim := tickLeader(t, ms)
	t.Logf("cutting %s (%s), the leader of the tick bucket", ms[victim].name, l.addr(victim))
	var majority []*member
	for i, m := range ms {
		if i != victim {
			majority = append(majority, m)
		}
	}
	l.cut(t, victim, true)
	cutAt := time.Now()
	acked := submitDuring(t, majority, 18*time.Second)
	l.cut(t, victim, false)
	restored := time.Now()
	t.Logf("%s: link restored after %s; %d async events acknowledged during the cut",
		time.Since(began).Round(time.Millisecond), restored.Sub(cutAt).Round(time.Millisecond), len(acked))

	// The cut member serves again: a synchronous invoke, an async event.
	m := ms[victim]
	waitSyncEvent(t, m, "sync-"+m.name, 120*time.Second)
	after := "after-" + m.name
	for !submitTimed(m.addr, "rep", after) {
		if time.Since(restored) > 2*time.Minute {
			t.Fatalf("%s: no async submission acknowledged 2 min after the link came back", m.name)
		}
		time.Sleep(time.Second)
	}
	t.Logf("%s after the restore: %s serves", time.Since(restored).Round(time.Millisecond), m.name)
	acked = append(acked, after)

	// Every acknowledged event runs. The waits here and for the ticks are
	// long: KNOWN ISSUE (docs/cluster.md), a member that has to fetch the
	// function's code after a failover may not get it for up to about two
	// minutes; its runs fail meanwhile and are retried.
	defer logStall(t, ms)
	deadline := time.Now().Add(150 * time.Second)
	for {
		got := col.get("event")
		var missing []string
		for _, id := range acked {
			if len(got[id]) == 0 {
				missing = append(missing, id)
			}
		}
		if len(missing) == 0 {
			break
		}
		if time.Now().After(deadline) {
			queueState(t, ms, missing)
			t.Fatalf("%d of %d acknowledged async events never ran: %v", len(missing), len(acked), missing)
		}
		time.Sleep(500 * time.Millisecond)
	}

	// Every tick from the first to 5 s after the restore ran; late runs
	// (a tick claimed by the cut member just before the cut is retried
	// until it reaches the collector) are waited for.
	last := time.Now().Add(-3 * time.Second).Unix()
	if end := restored.Add(5 * time.Second).Unix(); end < last {
		last = end
	}
	checkTicks(t, l, col, first, last, cutAt, restored)
	t.Logf("%s: done", time.Since(began).Round(time.Millisecond))
}

// queueState logs what each member says of the tasks ids and of the
// async queue's stream (diagnostics of a failure).
func queueState(t *testing.T, ms []*member, ids []string) {
	t.Helper()
	for _, m := range ms {
		for _, id := range ids {
			resp, err := get("http://" + m.addr + "/nimbus/v1/functions/rep/tasks/" + id)
			if err != nil {
				t.Logf("%s: task %s: %v", m.name, id, err)
				continue
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			t.Logf("%s: task %s: %d %s", m.name, id, resp.StatusCode, b)
		}
		nc, err := nats.Connect("nats://"+m.nats, nats.Timeout(5*time.Second))
		if err != nil {
			t.Logf("%s: nats: %v", m.name, err)
			continue
		}
		js, _ := jetstream.New(nc)
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		if s, err := js.Stream(ctx, "nimbus_QUEUE"); err == nil {
			info, err := s.Info(ctx, jetstream.WithSubjectFilter("nimbus.async.q.>"))
			if err == nil {
				t.Logf("%s: queue stream: state %+v subjects %v cluster %+v", m.name, info.State, info.State.Subjects, info.Cluster)
			}
			for seq := info.State.FirstSeq; err == nil && seq <= info.State.LastSeq && seq > 0; seq++ {
				msg, err := s.GetMsg(ctx, seq)
				if err == nil {
					t.Logf("%s: queue message %d on %s: %.300s", m.name, seq, msg.Subject, msg.Data)
				}
			}
		}
		if kv, err := js.KeyValue(ctx, "nimbus_async_claims"); err == nil {
			if keys, err := kv.ListKeys(ctx); err == nil {
				for k := range keys.Keys() {
					if e, err := kv.Get(ctx, k); err == nil {
						t.Logf("%s: claim %s = %s", m.name, k, e.Value())
					}
				}
			}
		}
		cancel()
		nc.Close()
	}
}

// logStall says whether a member could not fetch the function's code for
// a while (the known failover stall).
func logStall(t *testing.T, ms []*member) {
	for _, m := range ms {
		if n := strings.Count(m.logs.String(), "prepare code: context deadline exceeded"); n > 0 {
			t.Logf("%s: %d runs failed for want of the function's code (the known failover stall, docs/cluster.md)", m.name, n)
		}
	}
}

// startNetnsCluster starts a member in each host of l and waits until
// they serve.
func startNetnsCluster(t *testing.T, l *lab) []*member {
	t.Helper()
	nodeKey := seal.Generate()
	cluster := "p" + l.id
	ms := make([]*member, len(l.hosts))
	routes := make([]string, len(l.hosts))
	for i := range l.hosts {
		routes[i] = l.addr(i) + ":6222" // ports are free: the namespaces are the test's own
	}
	for i, ns := range l.hosts {
		host := l.addr(i)
		m := &member{name: string(rune('A' + i)), addr: host + ":9000", nats: host + ":4223", dir: dataDir(t),
			// nsenter, not `ip netns exec`, which mounts a sysfs of the
			// namespace over /sys and so hides the cgroups the sandbox uses.
			wrap: []string{"nsenter", "--net=/run/netns/" + ns, "--"}}
		m.args = []string{"serve", "--addr", m.addr, "--data-dir", m.dir, "--shutdown-grace", "5s",
			"--node-key", nodeKey, "--cluster-name", cluster, "--cluster-listen", routes[i],
			"--peers", peersOf(routes, i), "--cluster-wait", "60s", "--prestarted-helpers", "1",
			"--nats-listen", m.nats, "--function-network", "host"}
		m.start(t)
		ms[i] = m
	}
	deadline := time.Now().Add(90 * time.Second)
	for _, m := range ms {
		if err := m.ready(deadline); err != nil {
			t.Fatal(err)
		}
	}
	shareAdminKey(t, ms)
	return ms
}

// waitSyncEvent invokes rep on m with event id once a second until it
// answers, within d. (Once a second: a member that has not caught up with
// the keys bucket refuses the key, then the address; docs/cluster.md.)
func waitSyncEvent(t *testing.T, m *member, id string, d time.Duration) {
	t.Helper()
	want := `{"kind": "event", "key": "` + id + `"}`
	deadline := time.Now().Add(d)
	for {
		ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
		out, err := m.client().Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("rep"), Payload: []byte(`{"id":"` + id + `"}`)})
		cancel()
		got := fmt.Sprint(err)
		if err == nil {
			got = string(out.Payload)
			if out.FunctionError == nil && got == want {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: invoke rep = %s, want %s", m.name, got, want)
		}
		time.Sleep(time.Second)
	}
}

// waitTicks waits for the first tick to reach the collector and returns
// its Unix time.
func waitTicks(t *testing.T, col *collector, d time.Duration) int64 {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		var first int64
		for k := range col.get("tick") {
			var v int64
			fmt.Sscan(k, &v)
			if first == 0 || v < first {
				first = v
			}
		}
		if first != 0 {
			return first
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("no timer tick reached the collector within %s", d)
	return 0
}

// tickLeader returns the index of the member that leads the stream of the
// timer's claims.
func tickLeader(t *testing.T, ms []*member) int {
	t.Helper()
	nc, err := nats.Connect("nats://"+ms[0].nats, nats.Timeout(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, "KV_nimbus_timer_ticks")
	if err != nil {
		t.Fatal(err)
	}
	info := s.CachedInfo()
	if info.Cluster == nil {
		t.Fatal("the tick bucket's stream has no cluster info")
	}
	for i, m := range ms {
		id, err := os.ReadFile(filepath.Join(m.dir, "node-id"))
		if err != nil {
			t.Fatal(err)
		}
		if strings.TrimSpace(string(id)) == info.Cluster.Leader {
			return i
		}
	}
	t.Fatalf("the tick bucket's leader %q is no member", info.Cluster.Leader)
	return 0
}

// submitDuring submits an async event every 500 ms to the members in turn
// for d, and returns the ids of those acknowledged (202).
func submitDuring(t *testing.T, ms []*member, d time.Duration) []string {
	t.Helper()
	var acked []string
	refused := 0
	end := time.Now().Add(d)
	for i := 0; time.Now().Before(end); i++ {
		id := fmt.Sprintf("cut-%d", i)
		if submitTimed(ms[i%len(ms)].addr, "rep", id) {
			acked = append(acked, id)
		} else {
			refused++
		}
		time.Sleep(500 * time.Millisecond)
	}
	if refused > 0 {
		t.Logf("%d async submissions during the cut got no 202 (not counted)", refused)
	}
	return acked
}

// submitTimed is submitAsync with a 10 s bound on the answer.
func submitTimed(addr, fn, id string) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "POST", "http://"+addr+"/2015-03-31/functions/"+fn+"/invocations",
		strings.NewReader(`{"id":"`+id+`"}`))
	req.Header.Set("X-Amz-Invocation-Type", "Event")
	req.Header.Set("X-Nimbus-Task-Id", id)
	resp, err := do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusAccepted
}

// checkTicks checks that every tick in [first, last] ran at least once,
// waiting up to 150 s for late ones, and logs the duplicates.
func checkTicks(t *testing.T, l *lab, col *collector, first, last int64, cutAt, restored time.Time) {
	t.Helper()
	deadline := time.Now().Add(150 * time.Second)
	for {
		got := col.get("tick")
		var missing []int64
		dups, byNode := 0, map[string]int{}
		for s := first; s <= last; s++ {
			runs := got[fmt.Sprint(s)]
			if len(runs) == 0 {
				missing = append(missing, s)
			}
			if len(runs) > 1 {
				dups++
				t.Logf("tick %d (%+ds from the cut) ran %d times: %v", s, s-cutAt.Unix(), len(runs), runs)
			}
			for _, a := range runs {
				byNode[a]++
			}
		}
		if len(missing) == 0 {
			late, tick := col.latest(first, last)
			t.Logf("ticks %d..%d (%d; cut at %d, restored at %d): all ran, %d more than once; runs by node %v; the latest ran %s after its time (tick %+ds from the cut)",
				first, last, last-first+1, cutAt.Unix(), restored.Unix(), dups, byNode, late.Round(time.Millisecond), tick-cutAt.Unix())
			if dups > 2 {
				t.Errorf("%d ticks ran more than once, want at most 2 (a claim taken over, or a run whose done mark was lost)", dups)
			}
			return
		}
		if time.Now().After(deadline) {
			rel := make([]string, len(missing))
			for i, s := range missing {
				rel[i] = fmt.Sprintf("%d (%+ds)", s, s-cutAt.Unix())
			}
			t.Fatalf("%d of %d ticks never ran (seconds from the cut): %s", len(missing), last-first+1, strings.Join(rel, ", "))
		}
		time.Sleep(time.Second)
	}
}
