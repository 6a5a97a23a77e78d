package api

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/async"
	"github.com/nimbus-serverless/nimbus/internal/registry"
)

// AsyncService is the Async Service as the API uses it (internal/async).
type AsyncService interface {
	Submit(ctx context.Context, fn *nimbus.Function, req async.SubmitRequest) (id string, existing bool, err error)
	Task(fn, id string) (nimbus.Task, error)
	Tasks(fn string, o async.ListOptions) ([]nimbus.Task, string, error)
	Stop(ctx context.Context, fn, id string) (nimbus.Task, error)
	DeadLetters(ctx context.Context, fn string, limit int, marker string) ([]nimbus.DeadLetter, string, error)
	Redrive(ctx context.Context, fn *nimbus.Function, seqs []uint64) (int, error)
}

func (s *Server) asyncRoutes() {
	const fns = "/nimbus/v1/functions/{name}"
	s.handle("GET "+fns+"/tasks", s.tasksList)
	s.handle("GET "+fns+"/tasks/{id}", s.tasksGet)
	s.handle("POST "+fns+"/tasks/{id}/stop", s.tasksStop)
	s.handle("GET "+fns+"/dead-letters", s.deadLettersList)
	s.handle("POST "+fns+"/dead-letters/redrive", s.deadLettersRedrive)
	// Lambda's deprecated InvokeAsync operation, which some old clients use.
	s.handle("POST /2014-11-13/functions/{name}/invoke-async/{$}", s.functionsInvokeAsyncLegacy)
	s.handle("POST /2014-11-13/functions/{name}/invoke-async", s.functionsInvokeAsyncLegacy)
}

// functionsInvokeAsyncLegacy is InvokeAsync: like Invoke with the Event type,
// answered with {"Status": 202}.
func (s *Server) functionsInvokeAsyncLegacy(w http.ResponseWriter, r *http.Request) error {
	fn, err := s.getFunction(r.Context(), r)
	if err != nil {
		return err
	}
	payload, err := readPayload(w, r)
	if err != nil {
		return err
	}
	as, err := s.asyncService()
	if err != nil {
		return err
	}
	id, _, err := as.Submit(r.Context(), fn, async.SubmitRequest{Payload: payload, TraceID: traceID(r), TraceParent: traceParent(r)})
	if err != nil {
		return err
	}
	w.Header().Set("X-Amzn-RequestId", id)
	return writeJSON(w, http.StatusAccepted, map[string]int{"Status": http.StatusAccepted})
}

// asyncService returns the service or the error for a node without one.
func (s *Server) asyncService() (AsyncService, error) {
	if s.cfg.Async == nil {
		return nil, newError(http.StatusInternalServerError, errService, "this node runs no Async Service")
	}
	return s.cfg.Async, nil
}

// asyncFunction returns the service and the parsed {name} of a task or
// dead-letter request: those outlive their function, so it need not exist.
func (s *Server) asyncFunction(r *http.Request) (AsyncService, string, error) {
	as, err := s.asyncService()
	if err != nil {
		return nil, "", err
	}
	fn, err := registry.ParseName(r.PathValue("name"))
	return as, fn, err
}

// listedFunction checks the function of a task or dead-letter list whose
// first page is empty: records outlive their function (a deleted
// function's are still listed), but an empty list of a function that does
// not exist is a ResourceNotFoundException, not "no tasks".
func (s *Server) listedFunction(ctx context.Context, fn string, emptyFirstPage bool) error {
	if !emptyFirstPage {
		return nil
	}
	_, err := s.reg.Get(ctx, fn)
	if errors.Is(err, nimbus.ErrNotFound) {
		return nimbus.Errorf(nimbus.ErrNotFound, "Function not found: %s", s.arn(fn))
	}
	return err
}

func (s *Server) tasksGet(w http.ResponseWriter, r *http.Request) error {
	as, fn, err := s.asyncFunction(r)
	if err != nil {
		return err
	}
	t, err := as.Task(fn, r.PathValue("id"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, t)
}

// TaskList is the answer of GET .../tasks.
type TaskList struct {
	Tasks      []nimbus.Task `json:"tasks"`
	NextMarker string        `json:"nextMarker,omitempty"`
}

func (s *Server) tasksList(w http.ResponseWriter, r *http.Request) error {
	as, fn, err := s.asyncFunction(r)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	o := async.ListOptions{Status: q.Get("status"), Marker: q.Get("marker")}
	if o.Limit, err = intParam(q.Get("limit"), "limit"); err != nil {
		return err
	}
	if o.Since, err = timeParam(q.Get("since"), "since"); err != nil {
		return err
	}
	if o.Until, err = timeParam(q.Get("until"), "until"); err != nil {
		return err
	}
	tasks, next, err := as.Tasks(fn, o)
	if err != nil {
		return err
	}
	if err := s.listedFunction(r.Context(), fn, len(tasks) == 0 && o.Marker == ""); err != nil {
		return err
	}
	if tasks == nil {
		tasks = []nimbus.Task{}
	}
	return writeJSON(w, http.StatusOK, TaskList{Tasks: tasks, NextMarker: next})
}

func (s *Server) tasksStop(w http.ResponseWriter, r *http.Request) error {
	as, fn, err := s.asyncFunction(r)
	if err != nil {
		return err
	}
	t, err := as.Stop(r.Context(), fn, r.PathValue("id"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, t)
}

// DeadLetterList is the answer of GET .../dead-letters.
type DeadLetterList struct {
	DeadLetters []nimbus.DeadLetter `json:"deadLetters"`
	NextMarker  string              `json:"nextMarker,omitempty"`
}

func (s *Server) deadLettersList(w http.ResponseWriter, r *http.Request) error {
	as, fn, err := s.asyncFunction(r)
	if err != nil {
		return err
	}
	limit, err := intParam(r.URL.Query().Get("limit"), "limit")
	if err != nil {
		return err
	}
	marker := r.URL.Query().Get("marker")
	dls, next, err := as.DeadLetters(r.Context(), fn, limit, marker)
	if err != nil {
		return err
	}
	if err := s.listedFunction(r.Context(), fn, len(dls) == 0 && marker == ""); err != nil {
		return err
	}
	if dls == nil {
		dls = []nimbus.DeadLetter{}
	}
	return writeJSON(w, http.StatusOK, DeadLetterList{DeadLetters: dls, NextMarker: next})
}

// RedriveRequest names the dead letters to re-drive; none means all.
type RedriveRequest struct {
	Seqs []uint64 `json:"seqs,omitempty"`
}

// RedriveResult is the answer of POST .../dead-letters/redrive.
type RedriveResult struct {
	Redriven int `json:"redriven"`
}

func (s *Server) deadLettersRedrive(w http.ResponseWriter, r *http.Request) error {
	as, err := s.asyncService()
	if err != nil {
		return err
	}
	fn, err := s.getFunction(r.Context(), r)
	if err != nil {
		return err
	}
	var req RedriveRequest
	if r.ContentLength != 0 {
		if err := decode(w, r, maxConfigBody, &req); err != nil {
			return err
		}
	}
	n, err := as.Redrive(r.Context(), fn, req.Seqs)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, RedriveResult{Redriven: n})
}

func intParam(v, name string) (int, error) {
	if v == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return 0, nimbus.Errorf(nimbus.ErrValidation, "%s must be an integer, not %q", name, v)
	}
	return n, nil
}

func timeParam(v, name string) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339, v)
	if err != nil {
		// Or a duration ago: 1h, 30m, 7d.
		d, derr := parseAgo(v)
		if derr != nil {
			return time.Time{}, nimbus.Errorf(nimbus.ErrValidation, "%s must be an RFC 3339 time such as 2026-11-24T10:00:00Z or a duration ago such as 1h or 7d, not %q", name, v)
		}
		return time.Now().Add(-d), nil
	}
	return t, nil
}

// parseAgo reads a positive duration, with d for days (7d, 1d12h).
func parseAgo(v string) (time.Duration, error) {
	var days time.Duration
	if i := strings.IndexByte(v, 'd'); i > 0 {
		n, err := strconv.Atoi(v[:i])
		if err != nil || n < 0 || n > 100000 {
			return 0, errors.New("bad days")
		}
		days, v = time.Duration(n)*24*time.Hour, v[i+1:]
	}
	var d time.Duration
	if v != "" {
		var err error
		if d, err = time.ParseDuration(v); err != nil {
			return 0, err
		}
	}
	if d+days <= 0 {
		return 0, errors.New("not positive")
	}
	return d + days, nil
}
