package api

import (
	"encoding/json"
	"net/http"
	"strconv"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/engine"
)

// functionsLogs serves a function's recent log lines as JSON lines, and with
// follow=true keeps the response open and streams new ones.
func (s *Server) functionsLogs(w http.ResponseWriter, r *http.Request) error {
	fn, err := s.getFunction(r.Context(), r)
	if err != nil {
		return err
	}
	if s.cfg.Logs == nil {
		return nimbus.Invalidf("this node keeps no logs")
	}
	q := r.URL.Query()
	limit := 1000
	if v := q.Get("limit"); v != "" {
		if limit, err = strconv.Atoi(v); err != nil || limit < 0 {
			return nimbus.Errorf(nimbus.ErrValidation, "limit must be a non-negative integer, not %q", v)
		}
	}
	follow := q.Get("follow") == "true" || q.Get("follow") == "1"
	var ch <-chan engine.LogRecord
	if follow {
		var cancel func()
		ch, cancel = s.cfg.Logs.Follow(fn.Name)
		defer cancel()
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	enc := json.NewEncoder(w)
	for _, rec := range s.cfg.Logs.Read(fn.Name, limit) {
		if err := enc.Encode(rec); err != nil {
			return nil
		}
	}
	if !follow {
		return nil
	}
	flusher, _ := w.(http.Flusher)
	for {
		if flusher != nil {
			flusher.Flush()
		}
		select {
		case <-r.Context().Done():
			return nil
		case rec, ok := <-ch:
			if !ok {
				return nil // the function was deleted
			}
			if err := enc.Encode(rec); err != nil {
				return nil
			}
		}
	}
}
