package api

import (
	"net/http"

	"github.com/nimbus-serverless/nimbus"
)

// triggersCreate is POST /nimbus/v1/functions/{name}/triggers.
func (s *Server) triggersCreate(w http.ResponseWriter, r *http.Request) error {
	ts, err := s.triggerService()
	if err != nil {
		return err
	}
	function, err := functionName(r)
	if err != nil {
		return err
	}
	var req triggerRequest
	if err := decodeStrict(w, r, &req); err != nil {
		return err
	}
	if req.Name == nil {
		return nimbus.Invalidf("The trigger's name is required")
	}
	in, err := req.input()
	if err != nil {
		return err
	}
	types, err := keepSecrets(ts.Types(), &in, nil)
	if err != nil {
		return err
	}
	t, err := s.reg.AddTrigger(r.Context(), function, in, types)
	if err != nil {
		return s.notFoundFunction(function, err)
	}
	w.Header().Set("Location", r.URL.Path+"/"+t.Name)
	return writeJSON(w, http.StatusCreated, viewTrigger(ts, function, t))
}
