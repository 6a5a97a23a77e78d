package api

import (
	"net/http"
)

// triggersUpdate is PUT /nimbus/v1/functions/{name}/triggers/{trigger}: the
// fields present change, the others stay.
func (s *Server) triggersUpdate(w http.ResponseWriter, r *http.Request) error {
	ts, err := s.triggerService()
	if err != nil {
		return err
	}
	function, name, err := triggerPath(r)
	if err != nil {
		return err
	}
	var req triggerRequest
	if err := decodeStrict(w, r, &req); err != nil {
		return err
	}
	in, err := req.input()
	if err != nil {
		return err
	}
	types := ts.Types()
	if in.Config != nil {
		old, err := s.reg.GetTrigger(r.Context(), function, name)
		if err != nil {
			return s.notFoundFunction(function, err)
		}
		if types, err = keepSecrets(types, &in, old); err != nil {
			return err
		}
	}
	t, err := s.reg.UpdateTrigger(r.Context(), function, name, in, types)
	if err != nil {
		return s.notFoundFunction(function, err)
	}
	return writeJSON(w, http.StatusOK, viewTrigger(ts, function, t))
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
	ts, err := s.triggerService()
	if err != nil {
		return err
	}
	function, name, err := triggerPath(r)
	if err != nil {
		return err
	}
	t, err := s.reg.SetTriggerEnabled(r.Context(), function, name, enabled)
	if err != nil {
		return s.notFoundFunction(function, err)
	}
	return writeJSON(w, http.StatusOK, viewTrigger(ts, function, t))
}

// triggersRotateKey is POST
// /nimbus/v1/functions/{name}/triggers/{trigger}/rotate-key: a function URL
// whose authType is KEY gets a new generated key, and the old one is refused
// from then on. The answer is the trigger, with its new key.
func (s *Server) triggersRotateKey(w http.ResponseWriter, r *http.Request) error {
	ts, err := s.triggerService()
	if err != nil {
		return err
	}
	function, name, err := triggerPath(r)
	if err != nil {
		return err
	}
	t, err := s.reg.RotateTriggerKey(r.Context(), function, name)
	if err != nil {
		return s.notFoundFunction(function, err)
	}
	return writeJSON(w, http.StatusOK, viewTrigger(ts, function, t))
}
