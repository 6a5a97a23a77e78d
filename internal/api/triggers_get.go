package api

import (
	"context"
	"net/http"

	"github.com/nimbus-serverless/nimbus"
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

// triggersGet is GET /nimbus/v1/functions/{name}/triggers/{trigger}.
func (s *Server) triggersGet(w http.ResponseWriter, r *http.Request) error {
	return s.oneTrigger(w, r, func(ctx context.Context, _ TriggerService, function, name string) (*nimbus.Trigger, error) {
		return s.reg.GetTrigger(ctx, function, name)
	})
}
