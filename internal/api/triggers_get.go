package api

import (
	"context"
	"net/http"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/trigger"
)

// triggersList is GET /nimbus/v1/functions/{name}/triggers.
func (s *Server) triggersList(w http.ResponseWriter, r *http.Request) error {
	ts, err := s.triggerService()
	if err != nil {
		return err
	}
	fn, err := s.getFunction(r.Context(), r)
	if err != nil {
		return err
	}
	out := TriggerList{Triggers: make([]TriggerView, 0, len(fn.Triggers))}
	for i := range fn.Triggers {
		out.Triggers = append(out.Triggers, viewTrigger(ts, fn.Name, &fn.Triggers[i]))
	}
	return writeJSON(w, http.StatusOK, out)
}

// triggersListAll is GET /nimbus/v1/triggers?state=: the triggers of every
// function the caller sees, by function then name, with their live status
// on this node; state (Active, Connecting, Error, Disabled) keeps those in
// it.
func (s *Server) triggersListAll(w http.ResponseWriter, r *http.Request) error {
	ts, err := s.triggerService()
	if err != nil {
		return err
	}
	state := r.URL.Query().Get("state")
	switch state {
	case "", trigger.StateActive, trigger.StateConnecting, trigger.StateError, trigger.StateDisabled:
	default:
		return nimbus.Invalidf("state must be %s, %s, %s or %s, not %q",
			trigger.StateActive, trigger.StateConnecting, trigger.StateError, trigger.StateDisabled, state)
	}
	out := TriggerList{Triggers: []TriggerView{}}
	for marker := ""; ; {
		fns, more, err := s.pageSeen(r, marker, maxListItems)
		if err != nil {
			return err
		}
		for _, fn := range fns {
			for i := range fn.Triggers {
				v := viewTrigger(ts, fn.Name, &fn.Triggers[i])
				if state == "" || v.Status.State == state {
					v.Function = fn.Name
					out.Triggers = append(out.Triggers, v)
				}
			}
		}
		if !more || len(fns) == 0 {
			return writeJSON(w, http.StatusOK, out)
		}
		marker = fns[len(fns)-1].Name
	}
}

// triggersGet is GET /nimbus/v1/functions/{name}/triggers/{trigger}.
func (s *Server) triggersGet(w http.ResponseWriter, r *http.Request) error {
	return s.oneTrigger(w, r, func(ctx context.Context, _ TriggerService, function, name string) (*nimbus.Trigger, error) {
		return s.reg.GetTrigger(ctx, function, name)
	})
}
