package async

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"time"

	"github.com/google/uuid"

	"github.com/nimbus-serverless/nimbus"
)

// event is one asynchronous invocation as stored in the event stream.
type event struct {
	ID       string          `json:"id"` // the task id, also the request id
	Function string          `json:"fn"`
	Payload  json.RawMessage `json:"p"`
	Created  time.Time       `json:"c"`           // first submitted: the event's age counts from here
	Attempts int             `json:"a,omitempty"` // attempts made so far
	// NotBefore delays a retry.
	NotBefore time.Time `json:"nb,omitzero"`
	TraceID   string    `json:"tr,omitempty"`
}

// SubmitRequest is one asynchronous invocation.
type SubmitRequest struct {
	Payload []byte // JSON
	// TaskID, when set, makes the submission idempotent: the same id within
	// the retention window returns the first task and runs nothing more.
	TaskID  string
	TraceID string
}

var validTaskID = regexp.MustCompile(`^[A-Za-z0-9_-]{1,128}$`)

// ValidTaskID reports whether id is a well-formed task id.
func ValidTaskID(id string) bool { return validTaskID.MatchString(id) }

// Submit stores an event durably and returns its task id once it is stored;
// existing reports that the task id was already known (nothing new stored).
// Errors: nimbus.ErrTooLarge, nimbus.ErrInvalid (a malformed task id), and
// store errors.
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
	if req.TaskID != "" {
		done, dup := s.claimTaskID(ctx, fn.Name, id)
		if dup {
			return id, true, nil
		}
		defer done()
	}
	now := s.cfg.Now().UTC()
	ev := &event{ID: id, Function: fn.Name, Payload: req.Payload, Created: now, TraceID: req.TraceID}
	task := &nimbus.Task{ID: id, Function: fn.Name, Status: nimbus.TaskEnqueued, Created: now, Updated: now}
	if err := s.store(ctx, task, ev); err != nil {
		return "", false, err
	}
	s.ensureDispatcher(fn.Name)
	return id, false, nil
}

// claimTaskID makes concurrent submits of one task id on this node wait for
// the first; it reports dup when the task exists. done must be called when
// dup is false.
func (s *Service) claimTaskID(ctx context.Context, fn, id string) (done func(), dup bool) {
	key := taskKey(fn, id)
	for {
		s.mu.Lock()
		if _, ok := s.idx.get(fn, id); ok {
			s.mu.Unlock()
			return nil, true
		}
		wait, busy := s.submitting[key]
		if !busy {
			ch := make(chan struct{})
			s.submitting[key] = ch
			s.mu.Unlock()
			return func() {
				s.mu.Lock()
				delete(s.submitting, key)
				s.mu.Unlock()
				close(ch)
			}, false
		}
		s.mu.Unlock()
		select {
		case <-wait:
		case <-ctx.Done():
			return func() {}, false
		}
	}
}

// store writes a task record and (when ev is set) an event in one commit
// round, the record first, and applies the record to this node's index.
func (s *Service) store(ctx context.Context, task *nimbus.Task, ev *event) error {
	tb, err := json.Marshal(task)
	if err != nil {
		return fmt.Errorf("encode task: %w", err)
	}
	reqs := []writeReq{{subject: s.names.taskSubj + task.Function, rec: tb}}
	if ev != nil {
		eb, err := json.Marshal(ev)
		if err != nil {
			return fmt.Errorf("encode event: %w", err)
		}
		reqs = append(reqs, writeReq{subject: s.names.evSubj + ev.Function, rec: eb})
	}
	if err := s.w.writeAll(ctx, reqs); err != nil {
		return err
	}
	s.idx.apply(task)
	return nil
}

// record writes a task record without waiting for it to be stored.
func (s *Service) record(task *nimbus.Task) {
	tb, err := json.Marshal(task)
	if err != nil {
		return
	}
	s.idx.apply(task)
	s.w.post(s.names.taskSubj+task.Function, tb)
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
