package api

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/async"
)

// Function Compute's payload limits: 32 MB for a synchronous invocation's
// request body, 128 KB for an asynchronous one's (its limits page, cited
// in docs/fc-api.md).
const (
	fcMaxSyncPayload  = 32 << 20
	fcMaxAsyncPayload = 128 << 10
)

// fcFunctionsInvoke is InvokeFunction: x-fc-invocation-type Sync (the
// default) or Async, x-fc-log-type Tail (the log tail, base64, in
// x-fc-log-result), the qualifier query, x-fc-async-task-id (an idempotent
// async task). A function error answers 200 with x-fc-error-type
// UnhandledInvocationError and the error as the body, as Function Compute
// does.
func (s *Server) fcFunctionsInvoke(w http.ResponseWriter, r *http.Request) error {
	fn, err := s.fcQualified(r)
	if err != nil {
		return err
	}
	isAsync := false
	switch t := r.Header.Get("X-Fc-Invocation-Type"); t {
	case "", "Sync":
	case "Async":
		isAsync = true
	default:
		return fcInvalid("x-fc-invocation-type %q is invalid: it must be Sync or Async", t)
	}
	logType := r.Header.Get("X-Fc-Log-Type")
	if logType != "" && logType != "None" && logType != "Tail" {
		return fcInvalid("x-fc-log-type %q is invalid: it must be None or Tail", logType)
	}
	if fn.State == nimbus.StateFailed {
		return fcErr(http.StatusConflict, fcConflict, "the function is in state Failed: "+fn.StateReason)
	}
	limit := int64(fcMaxSyncPayload)
	if isAsync {
		limit = fcMaxAsyncPayload
	}
	payload, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return fcErr(http.StatusRequestEntityTooLarge, fcTooLarge,
				"the payload is larger than "+strconv.FormatInt(limit, 10)+" bytes, the limit of an "+map[bool]string{true: "Async", false: "Sync"}[isAsync]+" invocation")
		}
		return fcInvalid("could not read the request body: %v", err)
	}
	if isAsync {
		return s.fcInvokeAsync(w, r, fn, payload)
	}
	if s.cfg.Invoker == nil {
		return newError(http.StatusInternalServerError, errService, "this node runs no engine")
	}
	reqID := w.Header().Get("X-Fc-Request-Id")
	res, err := s.cfg.Invoker.Invoke(traceContext(r), fn, nimbus.Invocation{
		RequestID: reqID, Payload: payload, TraceID: traceID(r), Trigger: nimbus.TriggerAPI,
	})
	if err == nil {
		err = callerGone(r)
	}
	if err != nil {
		return err
	}
	h := w.Header()
	h.Set("X-Fc-Invocation-Service-Version", fcVersionName(fn))
	if logType == "Tail" {
		h.Set("X-Fc-Log-Result", base64.StdEncoding.EncodeToString(res.LogTail))
	}
	body := res.Payload
	switch {
	case res.Err != nil && res.Err.Type == "HandledInvocationError":
		// A custom function's answer with x-fc-status 404 (the engine's
		// fcAnswer): its body goes back as it is.
		h.Set("X-Fc-Error-Type", "HandledInvocationError")
	case res.Err != nil && res.Err.Type == "InitializationError":
		h.Set("X-Fc-Error-Type", "InitializationError")
		body, _ = json.Marshal(map[string]any{"errorMessage": res.Err.Message, "errorType": res.Err.Type})
	case res.Err != nil:
		h.Set("X-Fc-Error-Type", "UnhandledInvocationError")
		body, _ = json.Marshal(map[string]any{"errorMessage": res.Err.Message, "errorType": res.Err.Type, "stackTrace": res.Err.StackTrace})
	}
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body)
	return nil
}

// fcVersionName is the version fn is, as Function Compute names it.
func fcVersionName(fn *nimbus.Function) string {
	if fn.Version == "" {
		return "LATEST"
	}
	return fn.Version
}

// fcInvokeAsync submits an event to the Async Service and answers 202 once
// it is durable, with the task's id in x-fc-async-task-id.
func (s *Server) fcInvokeAsync(w http.ResponseWriter, r *http.Request, fn *nimbus.Function, payload []byte) error {
	as, err := s.asyncService()
	if err != nil {
		return err
	}
	q := r.URL.Query().Get("qualifier")
	if q == "LATEST" {
		q = ""
	}
	if fn.Version != "" {
		if fn, err = s.reg.Get(r.Context(), fn.Name); err != nil {
			return err
		}
	}
	taskID := r.Header.Get("X-Fc-Async-Task-Id")
	id, _, err := as.Submit(r.Context(), fn, async.SubmitRequest{Payload: payload, TaskID: taskID,
		TraceID: traceID(r), TraceParent: traceParent(r), Qualifier: q})
	if err != nil {
		return err
	}
	h := w.Header()
	h.Set("X-Fc-Async-Task-Id", id)
	h.Set("Content-Length", "0")
	w.WriteHeader(http.StatusAccepted)
	return nil
}
