package cli

import (
	"errors"
	"net/url"
	"strings"
	"syscall"

	"github.com/aws/smithy-go"
)

// OneLine formats err for the user on one line (several lines are joined
// with "; "), without the SDK's wrapping:
// an API error reads "ErrorType: message", an unreachable server reads
// "cannot reach Nimbus at <endpoint>: is `nimbus serve` running?". Context
// added around those (such as "deploy hello: ") is kept.
func OneLine(err error) string {
	if err == nil {
		return ""
	}
	var ue *unreachableError
	if errors.As(err, &ue) {
		return ue.Error()
	}
	msg := err.Error()
	var op *smithy.OperationError
	var ae smithy.APIError
	switch {
	case errors.As(err, &op):
		msg = strings.Replace(msg, op.Error(), describeOperationError(op), 1)
	case errors.As(err, &ae):
		msg = strings.Replace(msg, ae.Error(), describeAPIError(ae), 1)
	}
	return flatten(msg)
}

// flatten joins the lines of msg with "; " and collapses runs of spaces.
func flatten(msg string) string {
	var parts []string
	for line := range strings.Lines(msg) {
		if f := strings.Fields(line); len(f) > 0 {
			parts = append(parts, strings.Join(f, " "))
		}
	}
	return strings.Join(parts, "; ")
}

// describeOperationError is the useful part of an SDK error.
func describeOperationError(op *smithy.OperationError) string {
	var ae smithy.APIError
	if errors.As(op, &ae) {
		return describeAPIError(ae)
	}
	var ue *url.Error
	if errors.As(op, &ue) {
		endpoint := ue.URL
		if u, err := url.Parse(ue.URL); err == nil {
			endpoint = u.Scheme + "://" + u.Host
		}
		if errors.Is(ue, syscall.ECONNREFUSED) {
			return (&unreachableError{endpoint: endpoint}).Error()
		}
		return "cannot reach Nimbus at " + endpoint + ": " + ue.Err.Error()
	}
	return op.Err.Error()
}

func describeAPIError(ae smithy.APIError) string {
	code, msg := ae.ErrorCode(), ae.ErrorMessage()
	if msg == "" || msg == code {
		return code
	}
	return code + ": " + msg
}

// unreachableError: nothing listens at the endpoint.
type unreachableError struct {
	endpoint string
	err      error
}

func (e *unreachableError) Error() string {
	return "cannot reach Nimbus at " + e.endpoint + ": is `nimbus serve` running?"
}

func (e *unreachableError) Unwrap() error { return e.err }

func isConnRefused(err error) bool {
	return err != nil && errors.Is(err, syscall.ECONNREFUSED)
}
