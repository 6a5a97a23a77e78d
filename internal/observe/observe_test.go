package observe_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/observe"
	"github.com/nimbus-serverless/nimbus/internal/records"
)

type ctxKey string

// engine answers each invocation as its payload says, and reports what
// context it was given.
type engine struct{ seen []string }

func (e *engine) Invoke(ctx context.Context, fn *nimbus.Function, req nimbus.Invocation) (nimbus.Result, error) {
	e.seen = append(e.seen, fmt.Sprint(ctx.Value(ctxKey("a")), ctx.Value(ctxKey("b"))))
	rep := nimbus.Report{InstanceID: "i-1", Duration: 2500 * time.Microsecond, MemoryMB: fn.MemoryMB, MaxMemoryUsedMB: 40}
	switch string(req.Payload) {
	case "throttle":
		return nimbus.Result{}, nimbus.Errorf(nimbus.ErrThrottled, "Rate Exceeded.")
	case "broken":
		return nimbus.Result{}, errors.New("sandbox failed")
	case "cancel":
		return nimbus.Result{}, context.Canceled
	case "fail":
		return nimbus.Result{Err: &nimbus.FunctionError{Type: "Runtime.ExitError"}, Report: rep}, nil
	case "timeout":
		return nimbus.Result{Err: &nimbus.FunctionError{Type: "Sandbox.Timedout"}, Report: rep}, nil
	case "left":
		return nimbus.Result{Err: &nimbus.FunctionError{Type: "Runtime.Abandoned"}, Report: rep}, nil
	case "cold":
		rep.ColdStart, rep.Init = true, 30*time.Millisecond+100*time.Microsecond
	}
	return nimbus.Result{Payload: []byte("ok"), Report: rep}, nil
}

func (e *engine) Warm(string) int { return 3 }

// observer records the order of begins and ends.
type observer struct {
	name  string
	trail *[]string
}

func (o observer) Begin(ctx context.Context, fn *nimbus.Function, req *nimbus.Invocation) (context.Context, func(*records.Record)) {
	*o.trail = append(*o.trail, "begin "+o.name)
	req.TraceID = "Root=" + o.name // an observer may set what the function is handed
	return context.WithValue(ctx, ctxKey(o.name), o.name), func(r *records.Record) {
		*o.trail = append(*o.trail, "end "+o.name+" "+r.Status)
	}
}

type sink struct{ got []records.Record }

func (s *sink) Add(r *records.Record) { s.got = append(s.got, *r) }

func TestInvokerRecordsEveryOutcome(t *testing.T) {
	var trail []string
	e, sk := &engine{}, &sink{}
	inv := &observe.Invoker{Engine: e, Sink: sk, Node: "n1",
		Observers: []observe.Observer{observer{"a", &trail}, observer{"b", &trail}}}
	fn := &nimbus.Function{Name: "f", MemoryMB: 512}
	cases := []struct {
		payload, status, errType string
		billed                   int64
		wantErr                  bool
	}{
		{"ok", records.StatusSuccess, "", 3, false},
		{"cold", records.StatusSuccess, "", 33, false},
		{"fail", records.StatusFunctionError, "Runtime.ExitError", 3, false},
		{"timeout", records.StatusTimeout, "Sandbox.Timedout", 3, false},
		{"throttle", records.StatusThrottled, "TooManyRequestsException", 0, true},
		{"broken", records.StatusPlatformError, "ServiceException", 0, true},
		{"cancel", records.StatusPlatformError, "RequestCancelled", 0, true},
		{"left", records.StatusAbandoned, "Runtime.Abandoned", 3, false}, // the run is billed
	}
	for i, c := range cases {
		trail = trail[:0]
		_, err := inv.Invoke(t.Context(), fn, nimbus.Invocation{RequestID: fmt.Sprint("r", i), Payload: []byte(c.payload), Trigger: nimbus.TriggerAsync, TaskID: "t"})
		if (err != nil) != c.wantErr {
			t.Fatalf("%s: err %v", c.payload, err)
		}
		r := sk.got[len(sk.got)-1]
		if r.Status != c.status || r.ErrorType != c.errType || r.BilledDuration != c.billed || r.RequestID != fmt.Sprint("r", i) ||
			r.Trigger != "async" || r.TaskID != "t" || r.Node != "n1" || r.MemorySize != 512 || r.Function != "f" || r.TraceID != "Root=b" {
			t.Errorf("%s: record %+v", c.payload, r)
		}
		if want := fmt.Sprint([]string{"begin a", "begin b", "end b " + c.status, "end a " + c.status}); fmt.Sprint(trail) != want {
			t.Errorf("%s: observers ran %v, want %v", c.payload, trail, want)
		}
	}
	if cold := sk.got[1]; !cold.ColdStart || cold.InitDuration != 30.1 || cold.Duration != 2.5 {
		t.Errorf("cold start record %+v", cold)
	}
	if e.seen[0] != "ab" {
		t.Errorf("the engine got the context %q, want both observers' values", e.seen[0])
	}
	if inv.Warm("f") != 3 {
		t.Error("Warm is not the engine's")
	}
	if g := (&records.Record{MemorySize: 2048, BilledDuration: 1500}).GBSeconds(); g != 3 {
		t.Errorf("2 GB for 1.5 s = %v GB-s, want 3", g)
	}
}
