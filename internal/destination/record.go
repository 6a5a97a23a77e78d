package destination

import (
	"encoding/json"
	"strings"
	"time"
)

// Conditions of a destination record: Lambda's, and Nimbus's own for events
// whose function was deleted while they waited and for stopped tasks.
const (
	ConditionSuccess          = "Success"
	ConditionRetriesExhausted = "RetriesExhausted"
	ConditionEventAgeExceeded = "EventAgeExceeded"
	ConditionFunctionDeleted  = "FunctionDeleted"
	ConditionStopped          = "Stopped"
)

// RecordVersion is the version of the record format (Lambda's).
const RecordVersion = "1.0"

// timestampLayout is Lambda's: UTC with milliseconds.
const timestampLayout = "2006-01-02T15:04:05.000Z"

// Record is what a destination receives, shaped like Lambda's invocation
// record.
type Record struct {
	Version   string    `json:"version"`
	Timestamp time.Time `json:"timestamp"` // encoded as Lambda does, UTC with milliseconds
	// RequestContext says which invocation this is and how it ended.
	RequestContext RequestContext `json:"requestContext"`
	// RequestPayload is the event. A payload that is not JSON is encoded
	// as a JSON string.
	RequestPayload json.RawMessage `json:"requestPayload"`
	// ResponseContext is nil when the function never ran (an event that
	// expired before its first attempt, or whose function was deleted).
	ResponseContext *ResponseContext `json:"responseContext,omitempty"`
	// ResponsePayload is the function's result, or its error payload; not
	// JSON is encoded as a JSON string.
	ResponsePayload json.RawMessage `json:"responsePayload,omitempty"`
}

// RequestContext identifies the invocation.
type RequestContext struct {
	RequestID   string `json:"requestId"`
	FunctionARN string `json:"functionArn"` // qualified: ...:function:<name>:$LATEST
	Condition   string `json:"condition"`   // one of the Condition* constants
	// ApproximateInvokeCount is how many times the function ran.
	ApproximateInvokeCount int `json:"approximateInvokeCount"`
	// Reason explains a failure in words (a Nimbus addition to Lambda's
	// record), e.g. "the event is older than its maximum age of 3600 s".
	Reason string `json:"nimbusReason,omitempty"`
}

// ResponseContext describes the function's last response.
type ResponseContext struct {
	StatusCode      int    `json:"statusCode"`
	ExecutedVersion string `json:"executedVersion"`
	// FunctionError is "Handled" or "Unhandled" when the function failed.
	FunctionError string `json:"functionError,omitempty"`
}

// MarshalJSON encodes the record with Lambda's timestamp format, and
// payloads that are not JSON as JSON strings.
func (r Record) MarshalJSON() ([]byte, error) {
	w := wireRecord{
		Version: r.Version, Timestamp: r.Timestamp.UTC().Format(timestampLayout),
		RequestContext: r.RequestContext, RequestPayload: jsonPayload(r.RequestPayload),
		ResponseContext: r.ResponseContext,
	}
	if w.Version == "" {
		w.Version = RecordVersion
	}
	if r.ResponsePayload != nil {
		w.ResponsePayload = jsonPayload(r.ResponsePayload)
	}
	return json.Marshal(w)
}

// wireRecord is Record as encoded, in Lambda's field order.
type wireRecord struct {
	Version         string           `json:"version"`
	Timestamp       string           `json:"timestamp"`
	RequestContext  RequestContext   `json:"requestContext"`
	RequestPayload  json.RawMessage  `json:"requestPayload"`
	ResponseContext *ResponseContext `json:"responseContext,omitempty"`
	ResponsePayload json.RawMessage  `json:"responsePayload,omitempty"`
}

// jsonPayload returns b when it is JSON, null when empty, and otherwise b
// as a JSON string.
func jsonPayload(b json.RawMessage) json.RawMessage {
	if len(strings.TrimSpace(string(b))) == 0 {
		return json.RawMessage("null")
	}
	if json.Valid(b) {
		return b
	}
	s, _ := json.Marshal(string(b)) // invalid UTF-8 becomes U+FFFD
	return s
}
