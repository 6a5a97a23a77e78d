package async

import (
	"context"
	"strconv"

	"github.com/nimbus-serverless/nimbus"
)

// Task returns a task record. Errors: nimbus.ErrNotFound, nimbus.ErrInvalid
// (a malformed id).
func (s *Service) Task(fn, id string) (nimbus.Task, error) {
	if !ValidTaskID(id) {
		return nimbus.Task{}, nimbus.Invalidf("Invalid task id %q: use 1 to 128 letters, digits, '-' or '_'", truncate(id, 140))
	}
	return s.q.Task(s.runCtx, fn, id)
}

// Tasks lists a function's tasks, oldest first. Errors: nimbus.ErrValidation.
func (s *Service) Tasks(fn string, o ListOptions) ([]nimbus.Task, string, error) {
	if o.Limit == 0 {
		o.Limit = 100
	}
	if o.Limit < 1 || o.Limit > 1000 {
		return nil, "", nimbus.Errorf(nimbus.ErrValidation, "limit must be 1 to 1000, not %d", o.Limit)
	}
	switch o.Status {
	case "", nimbus.TaskEnqueued, nimbus.TaskRunning, nimbus.TaskRetrying, nimbus.TaskSucceeded,
		nimbus.TaskFailed, nimbus.TaskExpired, nimbus.TaskStopping, nimbus.TaskStopped:
	default:
		return nil, "", nimbus.Errorf(nimbus.ErrValidation,
			"status must be one of Enqueued, Running, Retrying, Succeeded, Failed, Expired, Stopping, Stopped, not %q", o.Status)
	}
	return s.q.Tasks(s.runCtx, fn, o)
}

// Counts returns how many of a function's tasks in the retention window are
// in each status.
func (s *Service) Counts(ctx context.Context, fn string) (map[string]int, error) {
	return s.q.Counts(ctx, fn)
}

// Stop stops a task: an enqueued or retrying one never runs (again), a
// running one is killed. It returns the task as it now stands (Stopped, or
// Stopping while the node running it stops it). Errors: nimbus.ErrNotFound,
// nimbus.ErrConflict (the task has finished), nimbus.ErrInvalid,
// nimbus.ErrUnavailable.
func (s *Service) Stop(ctx context.Context, fn, id string) (nimbus.Task, error) {
	t, err := s.Task(fn, id)
	if err != nil {
		return t, err
	}
	if nimbus.TaskFinal(t.Status) {
		return t, nimbus.Errorf(nimbus.ErrConflict, "Task %s has already finished: it is %s", id, t.Status)
	}
	if t.Status == nimbus.TaskStopping {
		return t, nil
	}
	now := s.cfg.Clock.Now().UTC()
	t.Updated = now
	if t.Status == nimbus.TaskRunning {
		t.Status = nimbus.TaskStopping // the node running it kills it and records Stopped
	} else {
		t.Status, t.Finished, t.Error = nimbus.TaskStopped, now, errStopped.Error()
	}
	if err := s.q.Record(ctx, []*nimbus.Task{&t}); err != nil {
		return t, err
	}
	return t, nil
}

// DeadLetters lists a function's dead letters, oldest first, after the
// marker (a Seq); the next marker is "" at the end. Errors:
// nimbus.ErrValidation.
func (s *Service) DeadLetters(ctx context.Context, fn string, limit int, marker string) ([]nimbus.DeadLetter, string, error) {
	if limit == 0 {
		limit = 100
	}
	if limit < 1 || limit > 1000 {
		return nil, "", nimbus.Errorf(nimbus.ErrValidation, "limit must be 1 to 1000, not %d", limit)
	}
	var after uint64
	if marker != "" {
		n, err := strconv.ParseUint(marker, 10, 64)
		if err != nil {
			return nil, "", nimbus.Errorf(nimbus.ErrValidation, "marker %q is not one this API returned", marker)
		}
		after = n
	}
	out, err := s.q.Letters(ctx, fn, after, limit+1)
	if err != nil {
		return nil, "", err
	}
	if len(out) > limit {
		out = out[:limit]
		return out, strconv.FormatUint(out[limit-1].Seq, 10), nil
	}
	return out, "", nil
}

// Redrive submits dead letters again (all of the function's when seqs is
// empty), as the same tasks with their attempts reset, and removes them
// from the list. It returns how many were re-driven. Errors:
// nimbus.ErrUnavailable.
func (s *Service) Redrive(ctx context.Context, fn *nimbus.Function, seqs []uint64) (int, error) {
	want := map[uint64]bool{}
	for _, q := range seqs {
		want[q] = true
	}
	n := 0
	var after uint64
	for {
		page, err := s.q.Letters(ctx, fn.Name, after, 1000)
		if err != nil {
			return n, err
		}
		if len(page) == 0 {
			break
		}
		for _, dl := range page {
			after = dl.Seq
			if len(want) > 0 && !want[dl.Seq] {
				continue
			}
			if err := s.redrive(ctx, fn, dl); err != nil {
				return n, err
			}
			n++
		}
	}
	s.sch.wake(fn.Name)
	return n, nil
}

// redrive puts one dead letter back in the queue as a new life of its task
// and removes it.
func (s *Service) redrive(ctx context.Context, fn *nimbus.Function, dl nimbus.DeadLetter) error {
	now := s.cfg.Clock.Now().UTC()
	ev := &Event{ID: dl.TaskID, Function: fn.Name, Payload: dl.Payload, Created: now}
	task := &nimbus.Task{ID: dl.TaskID, Function: fn.Name, Status: nimbus.TaskEnqueued, Created: now, Updated: now}
	if err := s.q.Put(ctx, []*nimbus.Task{task}, []*Event{ev}); err != nil {
		return err
	}
	return s.q.Remove(ctx, dl.Seq)
}
