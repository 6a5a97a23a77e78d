package node_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/async"
	"github.com/nimbus-serverless/nimbus/internal/node"
	"github.com/nimbus-serverless/nimbus/internal/node/nodetest"
)

// submitClients is how many clients submit at once in the async benchmarks.
const submitClients = 64

// asyncConcurrency is the node's async concurrency in the throughput benchmark.
var asyncConcurrency = 8

// submit posts one asynchronous invoke; anything but a 202 is an error.
func submit(hc *http.Client, url string, body []byte) error {
	req, err := http.NewRequest("POST", url, strings.NewReader(string(body)))
	if err != nil {
		return err
	}
	req.Header.Set("X-Amz-Invocation-Type", "Event")
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		return fmt.Errorf("async invoke: status %d", resp.StatusCode)
	}
	return nil
}

// parallel runs b.N calls of do from clients goroutines and reports the
// rate as unit/s.
func parallel(b *testing.B, clients int, unit string, do func() error) {
	b.Helper()
	var (
		next     atomic.Int64
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
	)
	b.ResetTimer()
	for range clients {
		wg.Go(func() {
			for next.Add(1) <= int64(b.N) {
				if err := do(); err != nil {
					mu.Lock()
					firstErr = err
					mu.Unlock()
					return
				}
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	if firstErr != nil {
		b.Fatal(firstErr)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), unit+"/s")
}

// BenchmarkAsyncSubmit measures durable asynchronous submits through the
// Invoke API (target: >= 10,000 events/s), beside two baselines in the same
// run: one JetStream publish per event on an fsync-always server (what a
// submit costs without group commit), and a plain HTTP handler answering
// 202 (what the HTTP path costs without storing anything).
func BenchmarkAsyncSubmit(b *testing.B) {
	body := []byte(`{"order":12345,"item":"book"}`)
	b.Run("nimbus", func(b *testing.B) {
		n := nodetest.Start(b, nil)
		c := lambdaClient(n)
		invokeURL := deploy(b, n, c, goFunction(b, "noop"))
		// Hold the events: this measures submits only.
		if _, err := c.PutFunctionConcurrency(b.Context(), &lambda.PutFunctionConcurrencyInput{
			FunctionName: aws.String("noop"), ReservedConcurrentExecutions: aws.Int32(0)}); err != nil {
			b.Fatal(err)
		}
		hc := httpClient(b, submitClients)
		parallel(b, submitClients, "events", func() error { return submit(hc, invokeURL, body) })
	})
	b.Run("baseline-publish-per-event", func(b *testing.B) {
		js := fsyncJetStream(b)
		parallel(b, submitClients, "events", func() error {
			_, err := js.Publish(context.Background(), "ev.bench", body)
			return err
		})
	})
	b.Run("baseline-http-202", func(b *testing.B) {
		url := startAccept(b)
		hc := httpClient(b, submitClients)
		parallel(b, submitClients, "events", func() error { return submit(hc, url, body) })
	})
}

// fsyncJetStream starts an embedded server configured like Nimbus's store
// (file storage, SyncAlways) with a stream on "ev.>".
func fsyncJetStream(b *testing.B) jetstream.JetStream {
	b.Helper()
	srv, err := server.NewServer(&server.Options{JetStream: true, StoreDir: b.TempDir(), SyncAlways: true, DontListen: true, NoSigs: true, NoLog: true})
	if err != nil {
		b.Fatal(err)
	}
	srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		b.Fatal("nats server not ready")
	}
	b.Cleanup(srv.Shutdown)
	nc, err := nats.Connect("", nats.InProcessServer(srv))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := js.CreateStream(b.Context(), jetstream.StreamConfig{Name: "EV", Subjects: []string{"ev.>"}, Storage: jetstream.FileStorage}); err != nil {
		b.Fatal(err)
	}
	return js
}

// startAccept serves 202 to every request.
func startAccept(b *testing.B) string {
	b.Helper()
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Amzn-RequestId", "x")
		w.WriteHeader(http.StatusAccepted)
	})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	b.Cleanup(func() { _ = srv.Close() })
	return "http://" + ln.Addr().String() + "/2015-03-31/functions/x/invocations"
}

// BenchmarkAsyncSubmitToStart measures, for a warm no-op Go function, the
// time from an asynchronous submit to the start of its invocation (task
// record: Started - Created, which includes the durable write; target p50
// <= 2 ms), one event at a time, beside a synchronous invoke's round trip
// of the same function in the same run.
func BenchmarkAsyncSubmitToStart(b *testing.B) {
	n := nodetest.Start(b, nil)
	c := lambdaClient(n)
	invokeURL := deploy(b, n, c, goFunction(b, "noop"))
	body := []byte(`{"sleep_ms":0}`)
	hc := httpClient(b, 1)
	warm(b, hc, invokeURL, body, 1, 20)
	b.Run("sync-invoke-baseline", func(b *testing.B) {
		lat := make([]time.Duration, 0, 1024)
		for b.Loop() {
			began := time.Now()
			if err := post(hc, invokeURL, body); err != nil {
				b.Fatal(err)
			}
			lat = append(lat, time.Since(began))
		}
		reportLatency(b, lat, "ms")
	})
	b.Run("async", func(b *testing.B) {
		svc := n.Async()
		var lat []time.Duration
		for b.Loop() {
			req, _ := http.NewRequest("POST", invokeURL, strings.NewReader(string(body)))
			req.Header.Set("X-Amz-Invocation-Type", "Event")
			resp, err := hc.Do(req)
			if err != nil {
				b.Fatal(err)
			}
			resp.Body.Close()
			id := resp.Header.Get("X-Nimbus-Task-Id")
			t := waitFinal(b, svc, "noop", id)
			lat = append(lat, t.Started.Sub(t.Created))
		}
		reportLatency(b, lat, "ms")
	})
}

func waitFinal(b *testing.B, svc interface {
	Task(fn, id string) (nimbus.Task, error)
}, fn, id string) nimbus.Task {
	b.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		t, err := svc.Task(fn, id)
		if err == nil && nimbus.TaskFinal(t.Status) {
			if t.Status != nimbus.TaskSucceeded {
				b.Fatalf("task %s: %+v", id, t)
			}
			return t
		}
		if time.Now().After(deadline) {
			b.Fatalf("task %s not done: %+v %v", id, t, err)
		}
		time.Sleep(100 * time.Microsecond)
	}
}

// BenchmarkAsyncThroughput measures end-to-end asynchronous throughput of
// the no-op Go function (target >= 5,000 events/s), beside synchronous
// invokes of the same function from 8 clients in the same run: "async"
// submits b.N events from 64 clients while they run, timed until the last
// one succeeded; "async-drain" runs a backlog of b.N events submitted
// beforehand (the function held at reserved concurrency 0), timed from its
// release to the last success.
func BenchmarkAsyncThroughput(b *testing.B) {
	n := nodetest.Start(b, func(c *node.Config) { c.AsyncConcurrency = asyncConcurrency })
	c := lambdaClient(n)
	invokeURL := deploy(b, n, c, goFunction(b, "noop"))
	body := []byte(`{"sleep_ms":0}`)
	hc := httpClient(b, submitClients)
	warm(b, hc, invokeURL, []byte(`{"sleep_ms":300}`), parallelClients, 1)
	b.Run("sync-invoke-baseline", func(b *testing.B) {
		parallel(b, parallelClients, "events", func() error { return post(hc, invokeURL, body) })
	})
	b.Run("async", func(b *testing.B) {
		svc := n.Async()
		before := succeeded(b, svc)
		var next atomic.Int64
		var wg sync.WaitGroup
		b.ResetTimer()
		for range submitClients {
			wg.Go(func() {
				for next.Add(1) <= int64(b.N) {
					if err := submit(hc, invokeURL, body); err != nil {
						b.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
		deadline := time.Now().Add(5 * time.Minute)
		for succeeded(b, svc)-before < b.N {
			if time.Now().After(deadline) {
				counts, _ := svc.Counts(b.Context(), "noop")
				b.Fatalf("not done after 5 minutes: %v", counts)
			}
			time.Sleep(5 * time.Millisecond)
		}
		b.StopTimer()
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
	})
	b.Run("async-drain", func(b *testing.B) {
		svc := n.Async()
		hold(b, c, aws.Int32(0))
		before := succeeded(b, svc)
		var next atomic.Int64
		var wg sync.WaitGroup
		for range submitClients {
			wg.Go(func() {
				for next.Add(1) <= int64(b.N) {
					if err := submit(hc, invokeURL, body); err != nil {
						b.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
		b.ResetTimer()
		hold(b, c, nil)
		deadline := time.Now().Add(5 * time.Minute)
		for succeeded(b, svc)-before < b.N {
			if time.Now().After(deadline) {
				counts, _ := svc.Counts(b.Context(), "noop")
				b.Fatalf("not done after 5 minutes: %v", counts)
			}
			time.Sleep(5 * time.Millisecond)
		}
		b.StopTimer()
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
	})
}

// hold sets the function's reserved concurrency (nil: none).
func hold(b *testing.B, c *lambda.Client, n *int32) {
	b.Helper()
	var err error
	if n == nil {
		_, err = c.DeleteFunctionConcurrency(b.Context(), &lambda.DeleteFunctionConcurrencyInput{FunctionName: aws.String("noop")})
	} else {
		_, err = c.PutFunctionConcurrency(b.Context(), &lambda.PutFunctionConcurrencyInput{FunctionName: aws.String("noop"), ReservedConcurrentExecutions: n})
	}
	if err != nil {
		b.Fatal(err)
	}
}

// succeeded is how many of the noop function's tasks have succeeded.
func succeeded(b *testing.B, svc *async.Service) int {
	counts, err := svc.Counts(b.Context(), "noop")
	if err != nil {
		b.Fatal(err)
	}
	return counts[nimbus.TaskSucceeded]
}
