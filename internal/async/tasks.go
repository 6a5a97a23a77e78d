package async

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/nimbus-serverless/nimbus"
)

// Task returns a task record. Errors: nimbus.ErrNotFound, nimbus.ErrInvalid
// (a malformed id).
func (s *Service) Task(fn, id string) (nimbus.Task, error) {
	if !ValidTaskID(id) {
		return nimbus.Task{}, nimbus.Invalidf("Invalid task id %q: use 1 to 128 letters, digits, '-' or '_'", truncate(id, 140))
	}
	t, ok := s.idx.get(fn, id)
	if !ok {
		return nimbus.Task{}, nimbus.Errorf(nimbus.ErrNotFound, "Task %s of function %s not found (records are kept for %s)", id, fn, s.cfg.Retention)
	}
	return t, nil
}

// Tasks lists a function's tasks. Errors: nimbus.ErrValidation.
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
	tasks, next := s.idx.list(fn, o)
	return tasks, next, nil
}

// Stop stops a task: an enqueued or retrying one never runs (again), a
// running one is killed. It returns the task as it now stands (Stopped, or
// Stopping while the node running it stops it). Errors: nimbus.ErrNotFound,
// nimbus.ErrConflict (the task has finished), nimbus.ErrInvalid.
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
	now := s.cfg.Now().UTC()
	t.Updated = now
	if t.Status == nimbus.TaskRunning {
		t.Status = nimbus.TaskStopping // the node running it kills it and records Stopped
	} else {
		t.Status, t.Finished, t.Error = nimbus.TaskStopped, now, errStopped.Error()
	}
	if err := s.store(ctx, &t, nil); err != nil {
		return t, err
	}
	return t, nil
}

// putDeadLetter stores a dead letter.
func (s *Service) putDeadLetter(ctx context.Context, dl *nimbus.DeadLetter) error {
	b, err := json.Marshal(dl)
	if err != nil {
		return fmt.Errorf("encode dead letter: %w", err)
	}
	// Alone: a dead letter is one message, so that re-driving it can
	// delete just it.
	return s.w.writeAll(ctx, []writeReq{{subject: s.names.dlqSub + dl.Function, rec: b, alone: true}})
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
	var out []nimbus.DeadLetter
	err := s.scanDeadLetters(ctx, fn, after, func(dl nimbus.DeadLetter) bool {
		out = append(out, dl)
		return len(out) <= limit
	})
	if err != nil {
		return nil, "", err
	}
	if len(out) > limit {
		out = out[:limit]
		return out, strconv.FormatUint(out[limit-1].Seq, 10), nil
	}
	return out, "", nil
}

// scanDeadLetters calls f for each dead letter of fn after seq, in order,
// while f returns true. Seq is the letter's message sequence in the stream.
func (s *Service) scanDeadLetters(ctx context.Context, fn string, after uint64, f func(nimbus.DeadLetter) bool) error {
	subj := s.names.dlqSub + fn
	info, err := s.dlq.Info(ctx, jetstream.WithSubjectFilter(subj))
	if err != nil {
		return fmt.Errorf("read dead letters: %w", err)
	}
	if info.State.Subjects[subj] == 0 {
		return nil
	}
	cfg := jetstream.OrderedConsumerConfig{FilterSubjects: []string{subj}}
	if after > 0 {
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, after+1
	}
	cons, err := s.cfg.JS.OrderedConsumer(ctx, s.names.dlq, cfg)
	if err != nil {
		return fmt.Errorf("read dead letters: %w", err)
	}
	for {
		m, err := cons.Next(jetstream.FetchMaxWait(2 * time.Second))
		if errors.Is(err, jetstream.ErrNoMessages) || errors.Is(err, context.DeadlineExceeded) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read dead letters: %w", err)
		}
		md, err := m.Metadata()
		if err != nil {
			return fmt.Errorf("read dead letters: %w", err)
		}
		var dls []nimbus.DeadLetter
		if err := json.Unmarshal(m.Data(), &dls); err != nil {
			continue
		}
		for _, dl := range dls {
			dl.Seq = md.Sequence.Stream
			if !f(dl) {
				return nil
			}
		}
		if md.NumPending == 0 {
			return nil
		}
	}
}

// Redrive submits dead letters again (all of the function's when seqs is
// empty), as the same tasks with their attempts reset, and removes them
// from the list. It returns how many were re-driven. Errors:
// nimbus.ErrNotFound (the function is gone).
func (s *Service) Redrive(ctx context.Context, fn *nimbus.Function, seqs []uint64) (int, error) {
	want := map[uint64]bool{}
	for _, q := range seqs {
		want[q] = true
	}
	var picked []nimbus.DeadLetter
	err := s.scanDeadLetters(ctx, fn.Name, 0, func(dl nimbus.DeadLetter) bool {
		if len(want) == 0 || want[dl.Seq] {
			picked = append(picked, dl)
		}
		return true
	})
	if err != nil {
		return 0, err
	}
	for _, dl := range picked {
		now := s.cfg.Now().UTC()
		ev := &event{ID: dl.TaskID, Function: fn.Name, Payload: dl.Payload, Created: now}
		task := &nimbus.Task{ID: dl.TaskID, Function: fn.Name, Status: nimbus.TaskEnqueued, Created: now, Updated: now}
		if err := s.store(ctx, task, ev); err != nil {
			return 0, err
		}
		if err := s.dlq.DeleteMsg(ctx, dl.Seq); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
			return 0, fmt.Errorf("remove a re-driven dead letter: %w", err)
		}
	}
	s.ensureDispatcher(fn.Name)
	return len(picked), nil
}

// Counts returns how many of a function's tasks in the retention window are
// in each status.
func (s *Service) Counts(fn string) map[string]int {
	return s.idx.counts(fn)
}
