package api

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/google/uuid"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/async"
	"github.com/nimbus-serverless/nimbus/internal/tracing"
)

// Invoker runs functions (the engine).
type Invoker interface {
	Invoke(ctx context.Context, fn *nimbus.Function, req nimbus.Invocation) (nimbus.Result, error)
	// Warm reports the running instances of a function.
	Warm(name string) int
}

// Invoke limits, as Lambda's.
const (
	maxInvokePayload    = 6 << 20
	maxClientContextB64 = 3583
)

func (s *Server) functionsInvoke(w http.ResponseWriter, r *http.Request) error {
	fn, err := s.qualified(r.Context(), r, true)
	if err != nil {
		return err
	}
	isAsync := false
	switch t := r.Header.Get("X-Amz-Invocation-Type"); t {
	case "", "RequestResponse":
	case "DryRun":
		w.WriteHeader(http.StatusNoContent)
		return nil
	case "Event":
		isAsync = true
	default:
		return nimbus.Errorf(nimbus.ErrValidation,
			"1 validation error detected: Value '%s' at 'invocationType' failed to satisfy constraint: Member must satisfy enum value set: [Event, RequestResponse, DryRun]", t)
	}
	logType := r.Header.Get("X-Amz-Log-Type")
	if logType != "" && logType != "None" && logType != "Tail" {
		return nimbus.Errorf(nimbus.ErrValidation,
			"1 validation error detected: Value '%s' at 'logType' failed to satisfy constraint: Member must satisfy enum value set: [None, Tail]", logType)
	}
	if fn.State == nimbus.StateFailed {
		return nimbus.Errorf(nimbus.ErrConflict,
			"The operation cannot be performed at this time. The function is currently in the following state: Failed. %s", fn.StateReason)
	}
	clientContext, err := decodeClientContext(r.Header.Get("X-Amz-Client-Context"))
	if err != nil {
		return err
	}
	payload, err := readPayload(w, r)
	if err != nil {
		return err
	}
	if isAsync {
		return s.invokeAsync(w, r, fn, payload)
	}
	if s.cfg.Invoker == nil {
		return newError(http.StatusInternalServerError, errService, "this node runs no engine")
	}
	reqID := uuid.NewString()
	res, err := s.cfg.Invoker.Invoke(traceContext(r), fn, nimbus.Invocation{
		RequestID: reqID, Payload: payload, ClientContext: clientContext, TraceID: traceID(r), Trigger: nimbus.TriggerAPI,
	})
	if err == nil {
		err = callerGone(r)
	}
	if err != nil {
		return err
	}
	h := w.Header()
	h.Set("X-Amzn-RequestId", reqID)
	h.Set("X-Amz-Executed-Version", fn.Qualifier())
	if logType == "Tail" {
		h.Set("X-Amz-Log-Result", base64.StdEncoding.EncodeToString(res.LogTail))
	}
	body := res.Payload
	if res.Err != nil {
		h.Set("X-Amz-Function-Error", "Unhandled")
		body, _ = json.Marshal(res.Err)
	}
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body)
	return nil
}

// callerGone returns the request's context error once its caller has gone
// away, nil before. The engine answers an invocation its caller abandoned
// with a Runtime.Abandoned function error; that answer would reach no one,
// and the error mapper (classify) logs a gone caller at debug level and
// writes nothing.
func callerGone(r *http.Request) error {
	return r.Context().Err()
}

// invokeAsync stores an event with the Async Service and answers 202 once it
// is durable. X-Nimbus-Task-Id (or Function Compute's x-fc-async-task-id)
// makes the submission idempotent.
func (s *Server) invokeAsync(w http.ResponseWriter, r *http.Request, fn *nimbus.Function, payload []byte) error {
	as, err := s.asyncService()
	if err != nil {
		return err
	}
	taskID := r.Header.Get("X-Nimbus-Task-Id")
	if taskID == "" {
		taskID = r.Header.Get("X-Fc-Async-Task-Id")
	}
	// A version or an alias: the event keeps the qualifier asked for
	// (an alias routes it when it runs) and goes to the function's queue.
	q := invokedQualifier(r)
	if fn.Version != "" {
		if fn, err = s.reg.Get(r.Context(), fn.Name); err != nil {
			return err
		}
	}
	id, _, err := as.Submit(r.Context(), fn, async.SubmitRequest{Payload: payload, TaskID: taskID, TraceID: traceID(r), TraceParent: traceParent(r),
		Qualifier: q})
	if err != nil {
		return err
	}
	h := w.Header()
	h.Set("X-Amzn-RequestId", id)
	h.Set("X-Nimbus-Task-Id", id)
	h.Set("Content-Length", "0")
	w.WriteHeader(http.StatusAccepted)
	return nil
}

// readPayload reads an invoke's JSON payload (at most 6 MB; "{}" when empty).
func readPayload(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	payload, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxInvokePayload))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, newError(http.StatusRequestEntityTooLarge, errTooLarge,
				"Request must be smaller than 6291456 bytes for the InvokeFunction operation")
		}
		return nil, newError(http.StatusBadRequest, errInvalidContent, "Could not read the request body: "+err.Error())
	}
	if len(payload) == 0 {
		return []byte("{}"), nil
	}
	if !json.Valid(payload) {
		return nil, newError(http.StatusBadRequest, errInvalidContent, "Could not parse request body into json: the payload must be valid JSON")
	}
	return payload, nil
}

// decodeClientContext checks X-Amz-Client-Context (base64 of a JSON object)
// and returns the JSON the runtime receives.
func decodeClientContext(v string) (string, error) {
	if v == "" {
		return "", nil
	}
	if len(v) > maxClientContextB64 {
		return "", nimbus.Invalidf("Client context must be at most %d bytes of base64", maxClientContextB64)
	}
	b, err := base64.StdEncoding.DecodeString(v)
	if err != nil || !json.Valid(b) {
		return "", newError(http.StatusBadRequest, errInvalidContent, "Client context must be a valid Base64-encoded JSON object.")
	}
	return string(b), nil
}

// traceContext is the request's context with the caller's span context
// (traceparent, else X-Amzn-Trace-Id): the invocation's span is its child.
func traceContext(r *http.Request) context.Context {
	return tracing.Extract(r.Context(), r.Header)
}

// traceParent is the caller's span context as a traceparent ("" when it
// sent none), stored with an async event: the event's invocation links to
// it.
func traceParent(r *http.Request) string {
	if r.Header.Get(tracing.HeaderTraceParent) == "" && r.Header.Get(tracing.HeaderXRay) == "" {
		return ""
	}
	return tracing.TraceParentOf(traceContext(r))
}

// traceID passes on the caller's X-Amzn-Trace-Id or makes an X-Ray-style one.
func traceID(r *http.Request) string {
	if t := r.Header.Get("X-Amzn-Trace-Id"); t != "" {
		return t
	}
	var rnd [12]byte
	_, _ = rand.Read(rnd[:])
	now := uint32(time.Now().Unix())
	var buf [64]byte // Root=1-{8 hex digits of the time}-{24 of rnd};Sampled=0
	b := append(buf[:0], "Root=1-"...)
	b = hex.AppendEncode(b, []byte{byte(now >> 24), byte(now >> 16), byte(now >> 8), byte(now)})
	b = append(b, '-')
	b = hex.AppendEncode(b, rnd[:])
	return string(append(b, ";Sampled=0"...))
}
