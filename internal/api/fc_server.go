package api

// The Function Compute 3.0 dialect (API version 2023-03-30): Alibaba Cloud
// Function Compute's REST API under /2023-03-30/, over the same registry,
// engine, Async Service and triggers as the Lambda dialect. Requests are
// signed with ACS3-HMAC-SHA256 (auth.ACS3Verifier) by the same access keys,
// authorized per operation as the Lambda operation it equals, recorded in
// the same audit trail; errors go through fcWriteError, this dialect's one
// error mapper, into Function Compute's shape {Code, Message, RequestId}.

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/auth"
)

// fcPrefix is the dialect's path prefix.
const fcPrefix = "/2023-03-30"

// Function Compute's error codes.
const (
	fcInvalidArgument       = "InvalidArgument"
	fcFunctionNotFound      = "FunctionNotFound"
	fcFunctionAlreadyExists = "FunctionAlreadyExists"
	fcTriggerNotFound       = "TriggerNotFound"
	fcTriggerAlreadyExists  = "TriggerAlreadyExists"
	fcAliasNotFound         = "AliasNotFound"
	fcVersionNotFound       = "VersionNotFound"
	fcAsyncConfigNotExist   = "AsyncConfigNotExist"
	fcAsyncTaskNotFound     = "AsyncTaskNotFound"
	fcResourceNotFound      = "ResourceNotFound"
	fcConcurrencyNotFound   = "ConcurrencyConfigNotFound"
	fcProvisionNotFound     = "ProvisionConfigNotExist"
	fcConflict              = "ResourceConflict"
	fcPrecondition          = "PreconditionFailed"
	fcTooLarge              = "EntityTooLarge"
	fcThrottled             = "ResourceThrottled"
	fcAccessDenied          = "AccessDenied"
	fcInternal              = "InternalServerError"
	fcUnavailable           = "ServiceUnavailable"
	fcNotImplemented        = "NotImplemented"
)

// fcError is an error with Function Compute's code and status.
type fcError struct {
	status int
	code   string
	msg    string
}

func (e *fcError) Error() string { return e.code + ": " + e.msg }

func fcErr(status int, code, msg string) error { return &fcError{status: status, code: code, msg: msg} }

// fcInvalid is Function Compute's InvalidArgument.
func fcInvalid(format string, a ...any) error {
	return fcErr(http.StatusBadRequest, fcInvalidArgument, fmt.Sprintf(format, a...))
}

// fcNotYet answers an operation Nimbus does not have yet, or that does not
// apply to it, saying why.
func fcNotYet(why string) handlerFunc {
	return func(http.ResponseWriter, *http.Request) error {
		return fcErr(http.StatusNotImplemented, fcNotImplemented, why)
	}
}

// fcNotFound turns a not-found error into code (a resource's code:
// FunctionNotFound, TriggerNotFound, ...), other errors pass.
func fcNotFound(err error, code string) error {
	var fe *fcError
	if err == nil || errors.As(err, &fe) || !errors.Is(err, nimbus.ErrNotFound) {
		return err
	}
	return fcErr(http.StatusNotFound, code, kind(err).msg)
}

// fcErrorBody is Function Compute's error body.
type fcErrorBody struct {
	Code      string `json:"Code"`
	Message   string `json:"Message"`
	RequestID string `json:"RequestId"`
}

// fcProblem maps err to Function Compute's status, code and message: an
// fcError as it is, an authentication failure with its code, the
// sentinels by their status (through kind, the Lambda dialect's mapping,
// so that both dialects agree on statuses).
func fcProblem(r *http.Request, s *Server, err error) (p problem, code string) {
	var fe *fcError
	if errors.As(err, &fe) {
		return problem{status: fe.status, msg: fe.msg}, fe.code
	}
	p = classify(r, s.log, err)
	var ae *auth.Error
	if errors.As(err, &ae) {
		switch ae.Type {
		case "AccessDeniedException":
			return p, fcAccessDenied
		case "TooManyRequestsException":
			return p, fcThrottled
		case "RequestTooLargeException":
			return p, fcTooLarge
		}
		return p, ae.Type // ACS3Verifier's codes are Function Compute's
	}
	switch p.status {
	case http.StatusBadRequest:
		code = fcInvalidArgument
	case http.StatusNotFound:
		code = fcResourceNotFound
		if strings.HasPrefix(p.msg, "Function not found") {
			code = fcFunctionNotFound
		}
	case http.StatusConflict:
		code = fcConflict
	case http.StatusPreconditionFailed:
		code = fcPrecondition
	case http.StatusRequestEntityTooLarge:
		code = fcTooLarge
	case http.StatusTooManyRequests:
		code = fcThrottled
	case http.StatusForbidden:
		code = fcAccessDenied
	case http.StatusServiceUnavailable:
		code = fcUnavailable
	default:
		code = fcInternal
	}
	return p, code
}

// fcWriteError answers a Function Compute request with err in its shape.
func (s *Server) fcWriteError(w http.ResponseWriter, r *http.Request, err error) {
	p, code := fcProblem(r, s, err)
	if p.gone {
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	if p.status == http.StatusTooManyRequests || p.status == http.StatusServiceUnavailable {
		h.Set("Retry-After", "1")
	}
	w.WriteHeader(p.status)
	_ = json.NewEncoder(w).Encode(fcErrorBody{Code: code, Message: p.msg, RequestID: h.Get("X-Fc-Request-Id")})
}

// fcHandle serves a Function Compute operation: a request id, the ACS3
// signature, the access its Lambda twin needs (accessOf its pattern) on
// the function it names, the audit trail, and errors in Function
// Compute's shape.
func (s *Server) fcHandle(pattern, action string, h handlerFunc) {
	access := accessOf(pattern)
	trail := s.trail(pattern, access)
	if trail != nil {
		trail.action = action
	}
	s.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		w.Header().Set("X-Fc-Request-Id", uuid.NewString())
		w, r = trail.begin(w, r)
		release, err := s.admitUpload(r, pattern)
		if err == nil {
			r, err = s.fcAuthorize(r, pattern, action, access)
		}
		if err == nil {
			err = h(w, r)
		}
		release()
		if err != nil {
			s.fcWriteError(w, r, err)
		}
		trail.end(w, r, start, err)
	})
}

// fcAuthorize authenticates r by its ACS3 signature (failures count
// against the client's address, as SigV4's) and checks access on the
// function the path names.
func (s *Server) fcAuthorize(r *http.Request, pattern, action string, access auth.Access) (*http.Request, error) {
	p := auth.Anonymous
	if s.fcVerifier != nil {
		if err := s.cfg.Limiter.Check(r); err != nil {
			return r, err
		}
		var err error
		if p, err = s.fcVerifier.Verify(r, access == auth.Invoke); err != nil {
			if ae, ok := err.(*auth.Error); ok && ae.Status == http.StatusForbidden {
				s.cfg.Limiter.Failed(r)
			}
			return r, err
		}
	}
	fn := ""
	if strings.Contains(pattern, "{name}") {
		fn = r.PathValue("name")
	}
	r = r.WithContext(auth.With(r.Context(), p))
	return r, p.Allow(access, fn, "fc:"+action)
}

// fcWriteJSON writes v as JSON.
func fcWriteJSON(w http.ResponseWriter, status int, v any) error { return writeJSON(w, status, v) }

// fcNoContent answers 204.
func fcNoContent(w http.ResponseWriter) error {
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// fcDecode reads a JSON body of at most limit bytes into v, refusing
// fields v lacks, as InvalidArgument.
func fcDecode(w http.ResponseWriter, r *http.Request, limit int64, v any) error {
	err := decodeStrictLimit(w, r, limit, v)
	var ae *apiError
	if errors.As(err, &ae) {
		if ae.status == http.StatusRequestEntityTooLarge {
			return fcErr(ae.status, fcTooLarge, ae.msg)
		}
		return fcErr(ae.status, fcInvalidArgument, ae.msg)
	}
	return err
}

// fcTime is Function Compute's time format.
func fcTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format("2006-01-02T15:04:05Z")
}

// fcARN is a function's ARN in Function Compute's form.
func (s *Server) fcARN(name string) string {
	return "acs:fc:" + s.cfg.Region + ":" + s.cfg.Account + ":functions/" + name
}

// fcRoutes mounts every Function Compute 3.0 operation: those Nimbus has,
// and the others answered NotImplemented saying why (docs/fc-api.md).
func (s *Server) fcRoutes() {
	const fns = fcPrefix + "/functions"
	const fn = fns + "/{name}"
	s.fcHandle("POST "+fns, "CreateFunction", s.fcFunctionsCreate)
	s.fcHandle("GET "+fns, "ListFunctions", s.fcFunctionsList)
	s.fcHandle("GET "+fn, "GetFunction", s.fcFunctionsGet)
	s.fcHandle("PUT "+fn, "UpdateFunction", s.fcFunctionsUpdate)
	s.fcHandle("DELETE "+fn, "DeleteFunction", s.fcFunctionsDelete)
	s.fcHandle("GET "+fn+"/code", "GetFunctionCode", s.fcFunctionsCode)
	s.fcHandle("POST "+fn+"/invocations", "InvokeFunction", s.fcFunctionsInvoke)
	s.fcAsyncRoutes()
	s.fcProvisionRoutes()
	s.fcTriggerRoutes()
	s.fcVersionRoutes()
	s.fcInstanceAndTagRoutes()
	s.fcMoreRoutes()
	s.mux.HandleFunc(fcPrefix+"/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Fc-Request-Id", uuid.NewString())
		s.fcWriteError(w, r, fcErr(http.StatusNotFound, "UnknownOperation",
			"Unknown Function Compute operation: "+r.Method+" "+r.URL.Path))
	})
}
