package main

import (
	"context"
	"errors"
	"io"
	"math"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Load is the one load generator of every warm row: a closed loop of Conns
// clients, each sending its next request when the last one is answered,
// over Conns kept-alive connections.
type Load struct {
	Conns    int           // clients, and connections
	Warmup   time.Duration // run but not counted, first
	Duration time.Duration // counted
	Count    int           // when positive: send this many requests, then stop (Duration caps the run)
}

// Requester makes the next request of a client. It runs on the client's
// goroutine before the request's clock starts (so a SigV4 signature costs
// throughput, as the client's CPU, but not latency).
type Requester func(ctx context.Context) (*http.Request, error)

// Outcome is what one load run measured.
type Outcome struct {
	Requests int             // answered with a 2xx within the counted time
	Errors   int             // other answers and transport errors, counted alike
	Elapsed  time.Duration   // the counted time
	Latency  []time.Duration // of the answered requests, sorted
}

// PerSecond is the answered requests per second.
func (o Outcome) PerSecond() float64 {
	if o.Elapsed <= 0 {
		return 0
	}
	return float64(o.Requests) / o.Elapsed.Seconds()
}

// Percentile is the q-quantile (0 to 1) of the answered requests' latency,
// 0 with none.
func (o Outcome) Percentile(q float64) time.Duration {
	return percentile(o.Latency, q)
}

// percentile is the q-quantile of sorted, 0 when it is empty.
func percentile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q * float64(len(sorted)-1))
	return sorted[i]
}

// errorPause is how long a client waits after a transport error (a refused
// or dropped connection), so that a target that is down is not spun on.
const errorPause = time.Millisecond

// Run drives next's requests for l.Warmup then l.Duration (or until l.Count
// were sent) and returns what the counted part measured.
func (l Load) Run(ctx context.Context, next Requester) Outcome {
	tr := &http.Transport{
		MaxIdleConns: l.Conns, MaxIdleConnsPerHost: l.Conns, MaxConnsPerHost: l.Conns,
		DialContext:        (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		DisableCompression: true,
	}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	ctx, cancel := context.WithTimeout(ctx, l.Warmup+l.Duration)
	defer cancel()
	start := time.Now().Add(l.Warmup)
	left := new(atomic.Int64) // requests left to send
	left.Store(math.MaxInt64)
	if l.Count > 0 {
		left.Store(int64(l.Count))
	}
	outs := make([]Outcome, l.Conns)
	var wg sync.WaitGroup
	for i := range outs {
		wg.Go(func() { outs[i] = client(ctx, hc, next, start, left) })
	}
	wg.Wait()
	var total Outcome
	for _, o := range outs {
		total.Requests += o.Requests
		total.Errors += o.Errors
		total.Latency = append(total.Latency, o.Latency...)
	}
	total.Elapsed = l.Duration
	if l.Count > 0 {
		total.Elapsed = time.Since(start)
	}
	slices.Sort(total.Latency)
	return total
}

// client is one closed-loop client: it counts what ends after start, until
// ctx is done or no request is left.
func client(ctx context.Context, hc *http.Client, next Requester, start time.Time, left *atomic.Int64) Outcome {
	var o Outcome
	for ctx.Err() == nil && left.Add(-1) >= 0 {
		req, err := next(ctx)
		if err != nil {
			o.Errors++
			continue
		}
		began := time.Now()
		ok, err := do(hc, req)
		took := time.Since(began)
		switch {
		case ctx.Err() != nil && errors.Is(err, context.DeadlineExceeded):
			// The run ended while this request was in flight.
		case began.Before(start):
		case ok:
			o.Requests++
			o.Latency = append(o.Latency, took)
		default:
			o.Errors++
		}
		if err != nil && ctx.Err() == nil {
			time.Sleep(errorPause)
		}
	}
	return o
}

// do sends req and reads its answer to the end; ok is a 2xx status.
func do(hc *http.Client, req *http.Request) (ok bool, err error) {
	resp, err := hc.Do(req)
	if err != nil {
		return false, err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return err == nil && resp.StatusCode/100 == 2, err
}
