// Package audit is the audit trail: a record of every change made through
// the API (functions, keys, triggers, concurrency, invoke configs, function
// URLs, event source mappings, task stops, re-drives), and of every refused
// attempt, with who made it, when, from where and how it ended.
//
// Storage is a Log: audit/nats on JetStream (what a node runs), audit/mem
// in memory (tests); audit/audittest is the suite both pass. The API
// (internal/api/audit.go) records the events and serves GET /nimbus/v1/audit.
package audit

import (
	"context"
	"strconv"
	"time"

	"github.com/nimbus-serverless/nimbus"
)

// Event is one recorded request.
type Event struct {
	// Time is when the request arrived.
	Time time.Time `json:"Time"`
	// Key is the name of the access key that signed the request ("" when
	// authentication failed; "anonymous" with authentication off).
	Key string `json:"Key,omitempty"`
	// AccessKeyID is the key's id; for a failed authentication, the id the
	// request claimed, if any.
	AccessKeyID string `json:"AccessKeyId,omitempty"`
	// Role is the key's role ("" when authentication failed).
	Role string `json:"Role,omitempty"`
	// Source is the client's address (the connection's, without its port).
	Source string `json:"Source"`
	// Action names the operation, e.g. CreateFunction, DeleteKey.
	Action string `json:"Action"`
	// Route is the method and route pattern the request matched.
	Route string `json:"Route"`
	// Function is the function the request names, if any.
	Function string `json:"Function,omitempty"`
	// Resource is the other thing the request names, if any: a key, a
	// trigger, a task, an event source mapping.
	Resource string `json:"Resource,omitempty"`
	// Status is the HTTP status of the answer.
	Status int `json:"Status"`
	// ErrorType is Lambda's error type of a failed request.
	ErrorType string `json:"ErrorType,omitempty"`
}

// Filter selects events for List. Zero fields select everything.
type Filter struct {
	Since, Until time.Time // Time within [Since, Until]
	Key          string    // Key equal to this
	Function     string    // Function equal to this
	Action       string    // Action equal to this
	// Limit is the most events to return, 1 to MaxLimit.
	Limit int
	// Marker continues a listing: the NextMarker of the previous page.
	Marker string
}

// Limits of Filter.Limit.
const (
	DefaultLimit = 100
	MaxLimit     = 1000
)

// DefaultRetention is how long a node keeps audit events by default.
const DefaultRetention = 365 * 24 * time.Hour

// Matches reports whether e passes f's field filters (not the marker).
func (f *Filter) Matches(e *Event) bool {
	switch {
	case !f.Since.IsZero() && e.Time.Before(f.Since),
		!f.Until.IsZero() && e.Time.After(f.Until),
		f.Key != "" && e.Key != f.Key,
		f.Function != "" && e.Function != f.Function,
		f.Action != "" && e.Action != f.Action:
		return false
	}
	return true
}

// Check validates f's limit. Errors: nimbus.ErrInvalid.
func (f *Filter) Check() error {
	if f.Limit < 1 || f.Limit > MaxLimit {
		return nimbus.Invalidf("limit must be 1 to %d, not %d", MaxLimit, f.Limit)
	}
	if !f.Since.IsZero() && !f.Until.IsZero() && f.Until.Before(f.Since) {
		return nimbus.Invalidf("until (%s) is before since (%s)", f.Until.Format(time.RFC3339), f.Since.Format(time.RFC3339))
	}
	return nil
}

// Log stores audit events.
type Log interface {
	// Record stores e durably: when it returns nil, e survives a crash.
	// Errors: nimbus.ErrUnavailable when the storage cannot write.
	Record(ctx context.Context, e Event) error
	// List returns the events f selects, newest (last recorded) first, at
	// most f.Limit of them, and the marker of the next page ("" when there
	// is none). Errors: nimbus.ErrInvalid for a bad limit or marker,
	// nimbus.ErrUnavailable.
	List(ctx context.Context, f Filter) ([]Event, string, error)
}

// Marker is the marker that continues a listing below sequence seq (the
// position of the last event of a page in a Log's order).
func Marker(seq uint64) string { return "s" + strconv.FormatUint(seq, 10) }

// ParseMarker returns the sequence of a Marker ("" is 0: from the newest).
// Errors: nimbus.ErrInvalid.
func ParseMarker(m string) (uint64, error) {
	if m == "" {
		return 0, nil
	}
	if len(m) > 1 && m[0] == 's' {
		if seq, err := strconv.ParseUint(m[1:], 10, 64); err == nil && seq > 0 {
			return seq, nil
		}
	}
	return 0, nimbus.Invalidf("marker %q is not one this API gave: pass the NextMarker of the previous page", m)
}
