package api

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strconv"

	"github.com/google/uuid"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/auth"
)

// Lambda's error types.
const (
	errInvalidParameter = "InvalidParameterValueException"
	errInvalidContent   = "InvalidRequestContentException"
	errValidation       = "ValidationException"
	errNotFound         = "ResourceNotFoundException"
	errConflict         = "ResourceConflictException"
	errPrecondition     = "PreconditionFailedException"
	errTooLarge         = "RequestTooLargeException"
	errTooManyRequests  = "TooManyRequestsException"
	errService          = "ServiceException"
	errUnknownOperation = "UnknownOperationException"
	errUnrecognized     = "UnrecognizedClientException"
	errAccessDenied     = "AccessDeniedException"
	errRecursive        = "RecursiveInvocationException"
)

// apiError is an error with a Lambda error type and status.
type apiError struct {
	status int
	typ    string
	msg    string
}

func (e *apiError) Error() string { return e.typ + ": " + e.msg }

func newError(status int, typ, msg string) error {
	return &apiError{status: status, typ: typ, msg: msg}
}

// errorBody is the JSON body of a Lambda error.
type errorBody struct {
	Type    string `json:"Type"`
	Message string `json:"message"`
	Reason  string `json:"Reason,omitempty"`
}

// problem is what an error means for the caller: the one mapping from
// errors to statuses, shared by the Lambda API (writeError) and function
// URLs (urlCall.error).
type problem struct {
	status int
	typ    string // Lambda's error type
	msg    string // safe to show: a platform failure shows only its id
	reason string
	id     string // a platform failure's error id, as logged
	// gone: the caller went away; nothing is written and nothing failed.
	gone bool
}

// classify maps err to a problem. A platform failure (5xx other than
// ErrUnavailable) is logged with an id, and only the id is shown. An error
// of a request whose caller has gone away is not a failure: it is logged at
// debug level and nothing is answered.
func classify(r *http.Request, log *slog.Logger, err error) problem {
	if r != nil && r.Context().Err() != nil && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)) {
		log.Debug("the caller went away", "method", r.Method, "path", r.URL.Path, nimbus.LogErr, err)
		return problem{gone: true}
	}
	p := kind(err)
	if p.status >= 500 && p.status != http.StatusServiceUnavailable {
		id := uuid.NewString()
		log.Error("request failed", nimbus.LogErrorID, id, nimbus.LogErr, err)
		p.id, p.msg = id, "Internal error (id "+id+"); the server log has the details."
	}
	return p
}

// kind maps an error to its status and Lambda error type by the sentinel
// it wraps; the message is the user's part of it.
func kind(err error) problem {
	var ae *apiError
	if errors.As(err, &ae) {
		return problem{status: ae.status, typ: ae.typ, msg: ae.msg}
	}
	var authErr *auth.Error
	if errors.As(err, &authErr) {
		return problem{status: authErr.Status, typ: authErr.Type, msg: authErr.Message}
	}
	msg := err.Error()
	var ue *nimbus.UserError
	if errors.As(err, &ue) {
		msg = ue.Msg
	}
	for _, m := range kinds {
		if errors.Is(err, m.sentinel) {
			return problem{status: m.status, typ: m.typ, msg: msg, reason: m.reason}
		}
	}
	return problem{status: http.StatusInternalServerError, typ: errService, msg: msg}
}

// kinds maps the sentinel errors, first match wins.
var kinds = []struct {
	sentinel error
	status   int
	typ      string
	reason   string
}{
	{nimbus.ErrNotFound, http.StatusNotFound, errNotFound, ""},
	{nimbus.ErrValidation, http.StatusBadRequest, errValidation, ""},
	{nimbus.ErrInvalid, http.StatusBadRequest, errInvalidParameter, ""},
	{nimbus.ErrMalformed, http.StatusBadRequest, errInvalidContent, ""},
	{nimbus.ErrConflict, http.StatusConflict, errConflict, ""},
	{nimbus.ErrPreconditionFailed, http.StatusPreconditionFailed, errPrecondition, ""},
	{nimbus.ErrTooLarge, http.StatusRequestEntityTooLarge, errTooLarge, ""},
	{nimbus.ErrReservedConcurrency, http.StatusTooManyRequests, errTooManyRequests, "ReservedFunctionConcurrentInvocationLimitExceeded"},
	{nimbus.ErrThrottled, http.StatusTooManyRequests, errTooManyRequests, "ConcurrentInvocationLimitExceeded"},
	{nimbus.ErrUnauthorized, http.StatusForbidden, errUnrecognized, ""},
	{nimbus.ErrForbidden, http.StatusForbidden, errAccessDenied, ""},
	{nimbus.ErrUnavailable, http.StatusServiceUnavailable, errService, ""},
	{nimbus.ErrRecursive, http.StatusBadRequest, errRecursive, ""},
}

// writeError answers a Lambda API request with err in Lambda's shape.
func writeError(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error) {
	p := classify(r, log, err)
	if p.gone {
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("X-Amzn-ErrorType", p.typ)
	if p.status == http.StatusTooManyRequests || p.status == http.StatusServiceUnavailable {
		h.Set("Retry-After", strconv.Itoa(1))
	}
	w.WriteHeader(p.status)
	kind := "User"
	if p.status >= 500 {
		kind = "Service"
	}
	_ = json.NewEncoder(w).Encode(errorBody{Type: kind, Message: p.msg, Reason: p.reason})
}
