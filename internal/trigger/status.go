package trigger

import (
	"strings"
	"sync"
	"time"
)

// Trigger states.
const (
	StateActive     = "Active"
	StateConnecting = "Connecting"
	StateError      = "Error"
	StateDisabled   = "Disabled"
)

// Status is a trigger's live state on this node. It is safe for concurrent
// use.
type Status struct {
	mu     sync.Mutex
	state  string
	reason string
	lag    int64
	hasLag bool
	// counts since the last take (the Manager flushes them to the
	// store; without a store they are the totals).
	counts Counts
}

// StatusView is a snapshot of a Status.
type StatusView struct {
	State     string    `json:"state"`
	Reason    string    `json:"reason,omitempty"`
	Lag       *int64    `json:"lag,omitempty"`
	LastEvent time.Time `json:"lastEvent,omitzero"`
	Delivered int64     `json:"delivered"`
	Failed    int64     `json:"failed"`
	// LastError is why the last failed attempt failed, at LastErrorTime.
	LastError     string    `json:"lastError,omitempty"`
	LastErrorTime time.Time `json:"lastErrorTime,omitzero"`
}

// maxErrorLen bounds a LastError (bytes).
const maxErrorLen = 1024

// NewStatus returns a Status in the Connecting state.
func NewStatus() *Status { return &Status{state: StateConnecting} }

// Connected records a working connection.
func (s *Status) Connected() { s.set(StateActive, "") }

// Error records a broken connection or a refused configuration, with the
// reason shown to users (credentials of URLs in it Redacted).
func (s *Status) Error(err error) { s.set(StateError, err.Error()) }

func (s *Status) set(state, reason string) {
	reason = RedactText(reason)
	s.mu.Lock()
	s.state, s.reason = state, reason
	s.mu.Unlock()
}

// SetState sets the state directly (e.g. StateDisabled).
func (s *Status) SetState(state, reason string) { s.set(state, reason) }

// Lag records the backlog the source reports (messages not yet consumed).
func (s *Status) Lag(n int64) {
	s.mu.Lock()
	s.lag, s.hasLag = n, true
	s.mu.Unlock()
}

// Delivered counts messages whose invocation succeeded.
func (s *Status) Delivered(n int, at time.Time) {
	s.mu.Lock()
	s.counts = s.counts.Add(Counts{Delivered: int64(n), LastEvent: at})
	s.mu.Unlock()
}

// Errored records why an attempt failed (it may succeed when retried).
func (s *Status) Errored(reason string, at time.Time) {
	reason = RedactText(reason)
	if len(reason) > maxErrorLen {
		reason = strings.ToValidUTF8(reason[:maxErrorLen], "") + "..."
	}
	s.mu.Lock()
	s.counts = s.counts.Add(Counts{LastError: reason, LastErrorTime: at})
	s.mu.Unlock()
}

// Failed counts messages that failed for good (sent to the failure
// destination).
func (s *Status) Failed(n int) {
	s.mu.Lock()
	s.counts.Failed += int64(n)
	s.mu.Unlock()
}

// take returns the counts since the last take and starts them again.
func (s *Status) take() Counts {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.counts
	s.counts = Counts{}
	return c
}

// Counts returns the counts since the last take.
func (s *Status) Counts() Counts {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.counts
}

// View returns a snapshot.
func (s *Status) View() StatusView {
	s.mu.Lock()
	defer s.mu.Unlock()
	v := StatusView{State: s.state, Reason: s.reason}
	v.setCounts(s.counts)
	if s.hasLag {
		lag := s.lag
		v.Lag = &lag
	}
	return v
}

// setCounts shows c in v.
func (v *StatusView) setCounts(c Counts) {
	v.Delivered, v.Failed, v.LastEvent = c.Delivered, c.Failed, c.LastEvent
	v.LastError, v.LastErrorTime = c.LastError, c.LastErrorTime
}
