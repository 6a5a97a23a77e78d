package api

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strconv"

	"github.com/google/uuid"

	"github.com/nimbus-serverless/nimbus"
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

// writeError is the one place that maps errors to HTTP statuses and Lambda's
// error shape. Errors that are not the caller's fault are logged with an id
// and shown only as that id.
func writeError(w http.ResponseWriter, log *slog.Logger, err error) {
	status, typ, msg, reason := classify(err)
	if status >= 500 {
		id := uuid.NewString()
		log.Error("request failed", "error_id", id, "err", err)
		msg = "Internal error (id " + id + "); the server log has the details."
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("X-Amzn-ErrorType", typ)
	if status == http.StatusTooManyRequests {
		h.Set("Retry-After", strconv.Itoa(1))
	}
	w.WriteHeader(status)
	kind := "User"
	if status >= 500 {
		kind = "Service"
	}
	_ = json.NewEncoder(w).Encode(errorBody{Type: kind, Message: msg, Reason: reason})
}

func classify(err error) (status int, typ, msg, reason string) {
	var ae *apiError
	if errors.As(err, &ae) {
		return ae.status, ae.typ, ae.msg, ""
	}
	msg = err.Error()
	var ue *nimbus.UserError
	if errors.As(err, &ue) {
		msg = ue.Msg
	}
	switch {
	case errors.Is(err, nimbus.ErrNotFound):
		return http.StatusNotFound, errNotFound, msg, ""
	case errors.Is(err, nimbus.ErrValidation):
		return http.StatusBadRequest, errValidation, msg, ""
	case errors.Is(err, nimbus.ErrInvalid):
		return http.StatusBadRequest, errInvalidParameter, msg, ""
	case errors.Is(err, nimbus.ErrConflict):
		return http.StatusConflict, errConflict, msg, ""
	case errors.Is(err, nimbus.ErrPreconditionFailed):
		return http.StatusPreconditionFailed, errPrecondition, msg, ""
	case errors.Is(err, nimbus.ErrTooLarge):
		return http.StatusRequestEntityTooLarge, errTooLarge, msg, ""
	case errors.Is(err, nimbus.ErrThrottled):
		return http.StatusTooManyRequests, errTooManyRequests, msg, "ConcurrentInvocationLimitExceeded"
	}
	return http.StatusInternalServerError, errService, msg, ""
}
