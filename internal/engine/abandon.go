package engine

import (
	"context"
	"errors"
	"io"
	"net/http"

	"github.com/nimbus-serverless/nimbus"
)

// A caller that leaves mid-request (its context ends) does not cost the
// function its instance: an HTTP function's request is cancelled, a
// Runtime-API function's invocation runs on to its answer within the
// function's timeout, and the instance then serves the next request
// (instance.invoke). Killing it would turn every client timeout into a
// cold start. Only a caller that stops the invocation, with a cause of its
// own, has the instance killed.

// abandonedType is the error type of an invocation whose caller left
// before its answer (records.StatusAbandoned), or that was stopped.
const abandonedType = "Runtime.Abandoned"

// callerLeft reports whether ctx, which has ended, ended because its caller
// went away (context.Canceled or context.DeadlineExceeded as its cause)
// rather than to stop the invocation (another cause, given to a
// context.CancelCauseFunc: the Async Service's stop).
func callerLeft(ctx context.Context) bool {
	cause := context.Cause(ctx)
	return errors.Is(cause, context.Canceled) || errors.Is(cause, context.DeadlineExceeded)
}

// abandoned is the result of an invocation whose caller left: no one gets
// the answer.
func abandoned(requestID string) nimbus.Result {
	return nimbus.Result{Err: &nimbus.FunctionError{Type: abandonedType, Unhandled: true,
		Message: "RequestId: " + requestID + " Error: the caller left before the answer"}}
}

// callerWriter passes a streamed answer on to its caller until the caller
// leaves (ctx ends, or a write to it fails); the rest is dropped, so that
// the function's answer is taken to its end. It is used by one goroutine
// at a time.
type callerWriter struct {
	ctx  context.Context
	w    io.Writer
	gone bool // a write failed
}

func (c *callerWriter) Write(p []byte) (int, error) {
	if !c.gone && c.ctx.Err() == nil {
		if _, err := c.w.Write(p); err != nil {
			c.gone = true
		}
	}
	return len(p), nil
}

// streamTo is w (a streamed answer's writer, or nil) for the caller of ctx.
func streamTo(ctx context.Context, w io.Writer) io.Writer {
	if w == nil {
		return nil
	}
	return &callerWriter{ctx: ctx, w: w}
}

// withRespondTo is req, with the writers of its HTTP request's Respond (if
// any) for the caller of ctx.
func withRespondTo(ctx context.Context, req nimbus.Invocation) nimbus.Invocation {
	if req.HTTP == nil || req.HTTP.Respond == nil {
		return req
	}
	hr := *req.HTTP
	respond := hr.Respond
	hr.Respond = func(status int, h http.Header) io.Writer { return streamTo(ctx, respond(status, h)) }
	req.HTTP = &hr
	return req
}
