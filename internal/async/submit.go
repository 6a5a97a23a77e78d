package async

import (
	"context"
	"fmt"

	"github.com/google/uuid"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/lazyre"
)

// SubmitRequest is one asynchronous invocation.
type SubmitRequest struct {
	Payload []byte // JSON
	// TaskID, when set, makes the submission idempotent: the same id within
	// the retention window returns the first task and runs nothing more.
	TaskID  string
	TraceID string
	// TraceParent is the submitter's span context (W3C traceparent), if
	// any: the event's invocation links to it.
	TraceParent string
	// Qualifier is the version or alias invoked ("": $LATEST).
	Qualifier string
}

var validTaskID = lazyre.New(`^[A-Za-z0-9_-]{1,128}$`)

// ValidTaskID reports whether id is a well-formed task id.
func ValidTaskID(id string) bool { return validTaskID().MatchString(id) }

// Submit stores an event durably and returns its task id once it is stored;
// existing reports that the task id was already known (nothing new stored).
// Errors: nimbus.ErrTooLarge, nimbus.ErrInvalid (a malformed task id),
// nimbus.ErrUnavailable (the store could not write it).
func (s *Service) Submit(ctx context.Context, fn *nimbus.Function, req SubmitRequest) (id string, existing bool, err error) {
	if len(req.Payload) > s.cfg.MaxPayload {
		return "", false, nimbus.Errorf(nimbus.ErrTooLarge,
			"Request must be smaller than %d bytes for the InvokeFunction operation (asynchronous)", s.cfg.MaxPayload)
	}
	id = req.TaskID
	if id == "" {
		u, err := uuid.NewV7() // time-ordered
		if err != nil {
			return "", false, fmt.Errorf("task id: %w", err)
		}
		id = u.String()
	} else if !ValidTaskID(id) {
		return "", false, nimbus.Invalidf("Invalid task id %q: use 1 to 128 letters, digits, '-' or '_'", truncate(id, 140))
	}
	if req.Qualifier == nimbus.Latest {
		req.Qualifier = ""
	}
	if req.Qualifier != "" && s.cfg.Resolve == nil {
		return "", false, nimbus.Invalidf("this Async Service runs $LATEST only")
	}
	if req.TaskID != "" {
		prev, done, dup := s.claimTaskID(ctx, fn.Name, id)
		if dup {
			return id, true, s.requeue(ctx, fn, req, prev)
		}
		defer done()
	}
	if s.ctx.Err() != nil {
		return "", false, nimbus.Errorf(nimbus.ErrUnavailable, "the Async Service is shutting down")
	}
	now := s.cfg.Clock.Now().UTC()
	ev := &Event{ID: id, Function: fn.Name, Payload: req.Payload, Created: now, TraceID: req.TraceID, TraceParent: req.TraceParent,
		Qualifier: req.Qualifier, Keyed: req.TaskID != ""}
	task := &nimbus.Task{ID: id, Function: fn.Name, Status: nimbus.TaskEnqueued, Created: now, Updated: now}
	if err := s.q.Put(ctx, []*nimbus.Task{task}, []*Event{ev}); err != nil {
		return "", false, err
	}
	s.cfg.Metrics.Submitted(fn.Name)
	s.sch.wake(fn.Name)
	return id, false, nil
}

// requeue stores again the event of a task submitted before whose record
// is still Enqueued. A submit's record and event are separate writes: when
// the store took the record but not the event (a member died, a write timed
// out) the submitter got an error, and its retry, here or on another node,
// finds the record; without the event the task would never run. The event
// is stored as it was created: if the first is in the queue too, whichever
// runs second finds the task final and skips it.
func (s *Service) requeue(ctx context.Context, fn *nimbus.Function, req SubmitRequest, prev nimbus.Task) error {
	if prev.Status != nimbus.TaskEnqueued {
		return nil // it ran, or runs: its event was there
	}
	if s.ctx.Err() != nil {
		return nimbus.Errorf(nimbus.ErrUnavailable, "the Async Service is shutting down")
	}
	ev := &Event{ID: prev.ID, Function: fn.Name, Payload: req.Payload, Created: prev.Created, TraceID: req.TraceID,
		TraceParent: req.TraceParent, Qualifier: req.Qualifier}
	if err := s.q.Put(ctx, nil, []*Event{ev}); err != nil {
		return err
	}
	s.sch.wake(fn.Name)
	return nil
}

// claimTaskID makes concurrent submits of one task id on this node wait for
// the first; it reports dup, and the task's record, when the task exists.
// done must be called when dup is false.
func (s *Service) claimTaskID(ctx context.Context, fn, id string) (prev nimbus.Task, done func(), dup bool) {
	key := TaskKey(fn, id)
	for {
		s.mu.Lock()
		wait, busy := s.submitting[key]
		if !busy {
			ch := make(chan struct{})
			s.submitting[key] = ch
			s.mu.Unlock()
			done = func() {
				s.mu.Lock()
				delete(s.submitting, key)
				s.mu.Unlock()
				close(ch)
			}
			// Looked up while this submit holds the id: one that finished
			// before has its record stored by now.
			if t, ok := s.task(fn, id); ok {
				done()
				return t, nil, true
			}
			return nimbus.Task{}, done, false
		}
		s.mu.Unlock()
		select {
		case <-wait:
		case <-ctx.Done():
			return nimbus.Task{}, func() {}, false
		}
	}
}

// truncate cuts s to at most n bytes (on a rune boundary) with an ellipsis.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && n < len(s) && s[n]&0xC0 == 0x80 {
		n--
	}
	return s[:n] + "…"
}
