package api

import (
	"net/http"
)

// triggersDelete is DELETE /nimbus/v1/functions/{name}/triggers/{trigger}.
func (s *Server) triggersDelete(w http.ResponseWriter, r *http.Request) error {
	function, name, err := triggerPath(r)
	if err != nil {
		return err
	}
	if err := s.reg.DeleteTrigger(r.Context(), function, name); err != nil {
		return s.notFoundFunction(function, err)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
