package api

import (
	"context"
	"net/http"

	"github.com/nimbus-serverless/nimbus"
)

// triggersUpdate is PUT /nimbus/v1/functions/{name}/triggers/{trigger}: the
// fields present change, the others stay.
func (s *Server) triggersUpdate(w http.ResponseWriter, r *http.Request) error {
	var req triggerRequest
	if err := decodeStrict(w, r, &req); err != nil {
		return err
	}
	in, err := req.input()
	if err != nil {
		return err
	}
	return s.oneTrigger(w, r, func(ctx context.Context, ts TriggerService, function, name string) (*nimbus.Trigger, error) {
		types := ts.Types()
		if in.Config != nil {
			old, err := s.reg.GetTrigger(ctx, function, name)
			if err != nil {
				return nil, err
			}
			if types, err = keepSecrets(types, &in, old); err != nil {
				return nil, err
			}
		}
		return s.reg.UpdateTrigger(ctx, function, name, in, types)
	})
}

// triggersEnable is POST /nimbus/v1/functions/{name}/triggers/{trigger}/enable.
func (s *Server) triggersEnable(w http.ResponseWriter, r *http.Request) error {
	return s.triggersSetEnabled(w, r, true)
}

// triggersDisable is POST /nimbus/v1/functions/{name}/triggers/{trigger}/disable.
func (s *Server) triggersDisable(w http.ResponseWriter, r *http.Request) error {
	return s.triggersSetEnabled(w, r, false)
}

func (s *Server) triggersSetEnabled(w http.ResponseWriter, r *http.Request, enabled bool) error {
	return s.oneTrigger(w, r, func(ctx context.Context, _ TriggerService, function, name string) (*nimbus.Trigger, error) {
		return s.reg.SetTriggerEnabled(ctx, function, name, enabled)
	})
}

// triggersRotateKey is POST
// /nimbus/v1/functions/{name}/triggers/{trigger}/rotate-key: a function URL
// whose authType is KEY gets a new generated key, and the old one is refused
// from then on. The answer is the trigger, with its new key.
func (s *Server) triggersRotateKey(w http.ResponseWriter, r *http.Request) error {
	return s.oneTrigger(w, r, func(ctx context.Context, _ TriggerService, function, name string) (*nimbus.Trigger, error) {
		return s.reg.RotateTriggerKey(ctx, function, name)
	})
}

// oneTrigger answers a request about the trigger the path names: op acts on
// it, and the answer is the trigger as op left it (a function or trigger
// that does not exist is a 404 naming which).
func (s *Server) oneTrigger(w http.ResponseWriter, r *http.Request,
	op func(ctx context.Context, ts TriggerService, function, name string) (*nimbus.Trigger, error)) error {
	ts, err := s.triggerService()
	if err != nil {
		return err
	}
	function, name, err := triggerPath(r)
	if err != nil {
		return err
	}
	t, err := op(r.Context(), ts, function, name)
	if err != nil {
		return s.notFoundFunction(function, err)
	}
	return writeJSON(w, http.StatusOK, viewTrigger(ts, function, t))
}
