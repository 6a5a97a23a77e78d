package main

import (
	"context"
	"fmt"
	"time"
)

// asyncRows measures the Async Service end to end: each round, Count
// synchronous invokes of the no-op (the baseline), then Count asynchronous
// ones (InvocationType Event), timed from the first submit until the
// node's metrics count all of them as successes.
type asyncRows struct {
	n     *nimbusNode
	fn    string // the no-op function they invoke
	count int
	conns int
}

// asyncWait bounds the wait for the events' ends.
const asyncWait = 5 * time.Minute

// measure runs one round's pair.
func (a *asyncRows) measure(ctx context.Context) (sync, async Sample, err error) {
	l := Load{Conns: a.conns, Duration: asyncWait, Count: a.count}
	url := a.n.invokeURL(a.fn)
	o := l.Run(ctx, poster(url, body, a.n.creds))
	sync = Sample{Row: "sync", Value: o.PerSecond(), P50: o.Percentile(0.5), P99: o.Percentile(0.99), Errors: o.Errors}
	before, err := a.n.successes(ctx, a.fn)
	if err != nil {
		return sync, async, err
	}
	began := time.Now()
	o = l.Run(ctx, poster(url, body, a.n.creds, "X-Amz-Invocation-Type", "Event"))
	deadline := time.Now().Add(asyncWait)
	for {
		done, err := a.n.successes(ctx, a.fn)
		if err != nil {
			return sync, async, err
		}
		if done-before >= o.Requests {
			break
		}
		if time.Now().After(deadline) {
			return sync, async, fmt.Errorf("%d of %d events ended after %s", done-before, o.Requests, asyncWait)
		}
		time.Sleep(2 * time.Millisecond)
	}
	took := time.Since(began)
	async = Sample{Row: "async, end to end", Value: float64(o.Requests) / took.Seconds(), Errors: o.Errors}
	return sync, async, nil
}
