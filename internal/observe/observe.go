// Package observe wraps the engine's Invoke for everything that watches
// invocations: each Observer (metrics, traces) begins with the invocation
// and ends with its record, and the record goes to the records writer
// (records.Writer: durable, batched, off the invoke path). Every caller of
// the engine (the Invoke API, function URLs, the Async Service, triggers)
// goes through it, so that every invocation is seen once.
package observe

import (
	"context"
	"time"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/records"
	"github.com/nimbus-serverless/nimbus/internal/recursion"
)

// Engine is what Invoker wraps (engine.Engine).
type Engine interface {
	Invoke(ctx context.Context, fn *nimbus.Function, req nimbus.Invocation) (nimbus.Result, error)
	Warm(name string) int
}

// Observer watches invocations. Begin is called before an invocation runs,
// on the invoke path: it must not block. The context it returns is the
// invocation's (a span in it, say); end is called once with the
// invocation's record when it ended.
type Observer interface {
	Begin(ctx context.Context, fn *nimbus.Function, req *nimbus.Invocation) (context.Context, func(*records.Record))
}

// Sink takes finished records (records.Writer). Add must not block.
type Sink interface {
	Add(r *records.Record)
}

// Invoker is the engine seen through the observers.
type Invoker struct {
	Engine    Engine
	Observers []Observer
	Sink      Sink   // nil: records are not kept
	Node      string // the node's id, in every record
	Now       func() time.Time
}

// Invoke runs req through the engine, observed. An invocation of a
// function in a recursive loop past its limit is refused before it runs
// (internal/recursion), unobserved: it never ran.
func (o *Invoker) Invoke(ctx context.Context, fn *nimbus.Function, req nimbus.Invocation) (nimbus.Result, error) {
	if err := recursion.Check(fn, &req); err != nil {
		return nimbus.Result{}, err
	}
	now := o.Now
	if now == nil {
		now = time.Now
	}
	var buf [4]func(*records.Record) // no allocation for up to 4 observers
	ends := buf[:0]
	for _, ob := range o.Observers {
		var end func(*records.Record)
		ctx, end = ob.Begin(ctx, fn, &req)
		if end != nil {
			ends = append(ends, end)
		}
	}
	start := now()
	res, err := o.Engine.Invoke(ctx, fn, req)
	rec := records.Of(fn, &req, start, now(), &res, err, o.Node)
	for i := len(ends) - 1; i >= 0; i-- {
		ends[i](&rec)
	}
	if o.Sink != nil {
		o.Sink.Add(&rec)
	}
	return res, err
}

// Warm reports the running instances of a function.
func (o *Invoker) Warm(name string) int { return o.Engine.Warm(name) }
