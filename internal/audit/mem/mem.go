// Package mem is an audit.Log in memory, for tests.
package mem

import (
	"context"
	"sync"

	"github.com/nimbus-serverless/nimbus/internal/audit"
)

// Log is an audit.Log in memory: an event's sequence is its position, from 1.
type Log struct {
	mu     sync.Mutex
	events []audit.Event
}

var _ audit.Log = (*Log)(nil)

// New returns an empty Log.
func New() *Log { return &Log{} }

// Record implements audit.Log.
func (l *Log) Record(_ context.Context, e audit.Event) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.events = append(l.events, e)
	return nil
}

// List implements audit.Log.
func (l *Log) List(_ context.Context, f audit.Filter) ([]audit.Event, string, error) {
	if err := f.Check(); err != nil {
		return nil, "", err
	}
	below, err := audit.ParseMarker(f.Marker)
	if err != nil {
		return nil, "", err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	hi := uint64(len(l.events))
	if below > 0 {
		hi = min(hi, below-1)
	}
	var out []audit.Event
	for seq := hi; seq >= 1; seq-- {
		e := l.events[seq-1]
		if !f.Matches(&e) {
			continue
		}
		if len(out) == f.Limit {
			return out, audit.Marker(seq + 1), nil
		}
		out = append(out, e)
	}
	return out, "", nil
}
