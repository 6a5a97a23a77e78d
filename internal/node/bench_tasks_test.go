package node_test

// BenchmarkAsyncTaskRecords (issue 11.11): a node's memory with a million
// async task records in retention, and a page of a function's tasks at that
// size, through the API.

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/api"
	"github.com/nimbus-serverless/nimbus/internal/async"
	"github.com/nimbus-serverless/nimbus/internal/node"
	"github.com/nimbus-serverless/nimbus/internal/node/nodetest"
)

// The shape of BenchmarkAsyncTaskRecords: records spread over functions,
// one of which holds bigTasks; every failedEvery-th of its tasks failed.
const (
	totalTasks   = 1_000_000
	taskFns      = 10_000
	bigTasks     = 100_000
	bigFn        = "big"
	recsPerMsg   = 100
	failedEvery  = 10
	deepPosition = 90_000 // the deep page starts after this task of bigFn (a failed one)
)

// BenchmarkAsyncTaskRecords measures issue 11.11's targets on a real node:
// its RSS with 1,000,000 task records in retention (target: under 300 MB)
// and a page of 100 of a function's tasks through the API at that size
// (target: under 10 ms), first and deep (by marker), with and without a
// status filter. The records (final ones, ~330 bytes of JSON each) are
// published to the node's task stream as another node's Records.Record
// writes them (a JSON array per message, one function per message, 100
// records a message), over 10,000 functions (bigFn holds 100,000, every
// tenth of them Failed); the node follows the stream into its index. The
// benchmark process is the node: "memory" reports its VmRSS before the
// records, once the index has them, and after 20 s idle, its peak (VmHWM),
// its Go heap in use (before, and the largest of samples taken every 100 ms
// while the records arrive and are indexed), the index's size on disk and
// how long the records took to publish and to index. "page/small-fn" is the
// baseline: the same page of a function with 90 tasks, in the same index.
// Run it alone, with -benchtime 200x: each -count writes the million records
// again (~2 minutes).
func BenchmarkAsyncTaskRecords(b *testing.B) {
	natsAddr := freeAddr(b)
	var dataDir string
	n := nodetest.Start(b, func(c *node.Config) {
		c.NATSListen = natsAddr
		dataDir = c.DataDir
	})
	js := connectJS(b, natsAddr)
	before := readMem(b, true)
	began := time.Now()
	peak := sampleMem(b)
	marks := publishRecords(b, js, strings.ToLower(node.Defaults().NATSPrefix)+".async.task.")
	published := time.Since(began)
	waitIndexed(b, n.Async())
	indexed := time.Since(began)
	heapPeak := peak()
	after := readMem(b, true)
	time.Sleep(20 * time.Second)
	idle := readMem(b, true)
	b.Run("memory", func(b *testing.B) {
		for b.Loop() {
		}
		mb := func(v uint64) float64 { return float64(v) / (1 << 20) }
		b.ReportMetric(mb(before.rss), "rss-before-MB")
		b.ReportMetric(mb(after.rss), "rss-indexed-MB")
		b.ReportMetric(mb(idle.rss), "rss-idle-MB")
		b.ReportMetric(mb(idle.hwm), "rss-peak-MB")
		b.ReportMetric(mb(before.heap), "heap-before-MB")
		b.ReportMetric(mb(heapPeak), "heap-peak-MB")
		b.ReportMetric(mb(idle.heap), "heap-idle-MB")
		b.ReportMetric(mb(dirSize(b, filepath.Join(dataDir, "async"))), "index-disk-MB")
		b.ReportMetric(published.Seconds(), "s-published")
		b.ReportMetric(indexed.Seconds(), "s-indexed")
	})
	base := nodetest.Endpoint(n) + "/nimbus/v1/functions/"
	pages := []struct {
		name, fn, query string
		first           string // the id the page must start with
	}{
		{"small-fn", smallFn(1), "", ""},
		{"first", bigFn, "", marks[0]},
		{"deep", bigFn, "&marker=" + marks[deepPosition], marks[deepPosition+1]},
		{"first-status", bigFn, "&status=Failed", marks[0]},
		{"deep-status", bigFn, "&status=Failed&marker=" + marks[deepPosition], marks[deepPosition+failedEvery]},
	}
	hc := httpClient(b, 1)
	for _, p := range pages {
		b.Run("page/"+p.name, func(b *testing.B) {
			u := base + p.fn + "/tasks?limit=100" + p.query
			var lat []time.Duration
			for b.Loop() {
				began := time.Now()
				list := getTasks(b, hc, u)
				lat = append(lat, time.Since(began))
				if len(list.Tasks) == 0 || (p.first != "" && list.Tasks[0].ID != p.first) {
					b.Fatalf("GET %s: %d tasks, want a page starting with %q", u, len(list.Tasks), p.first)
				}
			}
			reportLatency(b, lat, "ms")
		})
	}
}

// freeAddr returns a free 127.0.0.1 address.
func freeAddr(b *testing.B) string {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// connectJS connects to the node's embedded NATS.
func connectJS(b *testing.B, addr string) jetstream.JetStream {
	b.Helper()
	nc, err := nats.Connect("nats://" + addr)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(nc.Close)
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(256))
	if err != nil {
		b.Fatal(err)
	}
	return js
}

// smallFn names the i-th of the functions other than bigFn.
func smallFn(i int) string { return fmt.Sprintf("fn-%05d", i) }

// publishRecords publishes the benchmark's records to the task stream
// (subjects subj+function) and returns the ids of bigFn's tasks at the
// positions the pages check, by position. Each round is one message of
// bigFn's and ten of other functions' (90 or 91 records each), so a
// function's records are created in order, one microsecond apart.
func publishRecords(b *testing.B, js jetstream.JetStream, subj string) map[int]string {
	b.Helper()
	marks := map[int]string{}
	created := time.Now().Add(-time.Hour).UTC()
	next := func() time.Time { created = created.Add(time.Microsecond); return created }
	small := totalTasks - bigTasks
	rounds := bigTasks / recsPerMsg
	fn := 0
	for r := range rounds {
		recs := make([]*nimbus.Task, 0, recsPerMsg)
		for i := range recsPerMsg {
			pos := r*recsPerMsg + i
			t := taskRecord(bigFn, next(), pos%failedEvery == 0)
			if pos == 0 || pos == deepPosition || pos == deepPosition+1 || pos == deepPosition+failedEvery {
				marks[pos] = t.ID
			}
			recs = append(recs, t)
		}
		publishBatch(b, js, subj+bigFn, recs)
		for end := (r + 1) * (taskFns - 1) / rounds; fn < end; fn++ {
			count := small/(taskFns-1) + boolInt(fn < small%(taskFns-1))
			recs = recs[:0]
			for range count {
				recs = append(recs, taskRecord(smallFn(fn), next(), false))
			}
			publishBatch(b, js, subj+smallFn(fn), recs)
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(time.Minute):
		b.Fatalf("task stream: %d publishes unacknowledged after a minute", js.PublishAsyncPending())
	}
	return marks
}

func boolInt(v bool) int {
	if v {
		return 1
	}
	return 0
}

// taskRecord is a final record as the Async Service writes one for a run of
// a function that answered {"statusCode":200,"body":"ok"}, or failed.
func taskRecord(fn string, created time.Time, failed bool) *nimbus.Task {
	t := &nimbus.Task{ID: uuid.Must(uuid.NewV7()).String(), Function: fn, Status: nimbus.TaskSucceeded, Attempts: 1,
		Created: created, Started: created.Add(1200 * time.Microsecond), DurationMs: 0.87}
	t.Updated = t.Started.Add(900 * time.Microsecond)
	t.Finished = t.Updated
	t.Result = `{"statusCode":200,"body":"ok"}`
	if failed {
		t.Status, t.Attempts, t.Result = nimbus.TaskFailed, 3, ""
		t.Error = `{"errorMessage":"boom","errorType":"Exception"}`
	}
	return t
}

func publishBatch(b *testing.B, js jetstream.JetStream, subject string, recs []*nimbus.Task) {
	body, err := json.Marshal(recs)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := js.PublishAsync(subject, body, jetstream.WithStallWait(time.Minute)); err != nil {
		b.Fatalf("publish %s: %v", subject, err)
	}
}

// waitIndexed polls until the node's index counts every record: the last
// function written first (the index applies the stream in order), then
// all of them.
func waitIndexed(b *testing.B, svc *async.Service) {
	b.Helper()
	count := func(fn string) int {
		c, err := svc.Counts(b.Context(), fn)
		if err != nil {
			b.Fatal(err)
		}
		total := 0
		for _, v := range c {
			total += v
		}
		return total
	}
	last := smallFn(taskFns - 2)
	deadline := time.Now().Add(15 * time.Minute)
	for count(last) < (totalTasks-bigTasks)/(taskFns-1) {
		if time.Now().After(deadline) {
			b.Fatalf("the index has %d of %s's records after 15 minutes", count(last), last)
		}
		time.Sleep(100 * time.Millisecond)
	}
	total := count(bigFn)
	for i := range taskFns - 1 {
		total += count(smallFn(i))
	}
	if total != totalTasks {
		b.Fatalf("the index counts %d records, want %d", total, totalTasks)
	}
}

// mem is the process's memory at one time.
type mem struct {
	rss, hwm, heap uint64 // VmRSS, VmHWM, Go heap in use: bytes
}

// sampleMem samples the Go heap in use every 100 ms until the function it
// returns is called, which returns the largest sample.
func sampleMem(b *testing.B) func() uint64 {
	stop, done := make(chan struct{}), make(chan uint64)
	go func() {
		var most uint64
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stop:
				done <- most
				return
			case <-t.C:
				most = max(most, readMem(b, false).heap)
			}
		}
	}()
	return func() uint64 {
		close(stop)
		return <-done
	}
}

// readMem reads this process's memory, after collecting garbage if gc.
func readMem(b *testing.B, gc bool) mem {
	if gc {
		runtime.GC()
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	m := mem{heap: ms.HeapInuse}
	f, err := os.Open("/proc/self/status")
	if err != nil {
		b.Error(err)
		return m
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), ":")
		kb, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		switch {
		case err != nil:
		case k == "VmRSS":
			m.rss = kb << 10
		case k == "VmHWM":
			m.hwm = kb << 10
		}
	}
	if m.rss == 0 {
		b.Error("no VmRSS in /proc/self/status")
	}
	return m
}

// dirSize is the size of the files under dir.
func dirSize(b *testing.B, dir string) uint64 {
	b.Helper()
	var size uint64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		info, err := d.Info()
		if err == nil {
			size += uint64(info.Size())
		}
		return err
	})
	if err != nil {
		b.Fatal(err)
	}
	return size
}

// getTasks GETs a page of tasks.
func getTasks(b *testing.B, hc *http.Client, u string) api.TaskList {
	b.Helper()
	resp, err := hc.Get(u)
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		b.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		b.Fatalf("GET %s: %d %s", u, resp.StatusCode, body)
	}
	var list api.TaskList
	if err := json.Unmarshal(body, &list); err != nil {
		b.Fatalf("GET %s: %v", u, err)
	}
	return list
}
