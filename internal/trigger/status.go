package trigger

import (
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
	mu        sync.Mutex
	state     string
	reason    string
	lag       int64
	hasLag    bool
	lastEvent time.Time
	delivered int64
	failed    int64
}

// StatusView is a snapshot of a Status.
type StatusView struct {
	State     string    `json:"state"`
	Reason    string    `json:"reason,omitempty"`
	Lag       *int64    `json:"lag,omitempty"`
	LastEvent time.Time `json:"lastEvent,omitzero"`
	Delivered int64     `json:"delivered"`
	Failed    int64     `json:"failed"`
}

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
	s.delivered += int64(n)
	if at.After(s.lastEvent) {
		s.lastEvent = at
	}
	s.mu.Unlock()
}

// Failed counts messages that failed for good (sent to the failure
// destination).
func (s *Status) Failed(n int) {
	s.mu.Lock()
	s.failed += int64(n)
	s.mu.Unlock()
}

// View returns a snapshot.
func (s *Status) View() StatusView {
	s.mu.Lock()
	defer s.mu.Unlock()
	v := StatusView{State: s.state, Reason: s.reason, LastEvent: s.lastEvent, Delivered: s.delivered, Failed: s.failed}
	if s.hasLag {
		lag := s.lag
		v.Lag = &lag
	}
	return v
}
