package api

import (
	"errors"
	"net/http"
	"slices"
	"strconv"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/registry"
)

// findESM loads the kafka trigger whose ID is the {uuid} path value.
func (s *Server) findESM(r *http.Request) (*nimbus.Function, *nimbus.Trigger, error) {
	id := r.PathValue("uuid")
	fn, t, err := s.reg.FindTrigger(r.Context(), id)
	if err == nil && (t.Type != nimbus.TriggerKafka || !sees(r, fn.Name)) {
		err = nimbus.ErrNotFound
	}
	if errors.Is(err, nimbus.ErrNotFound) {
		return nil, nil, nimbus.Errorf(nimbus.ErrNotFound, "The resource you requested does not exist. (Event source mapping %s)", id)
	}
	return fn, t, err
}

// esmGet is GetEventSourceMapping: GET /2015-03-31/event-source-mappings/{UUID}.
func (s *Server) esmGet(w http.ResponseWriter, r *http.Request) error {
	ts, err := s.triggerService()
	if err != nil {
		return err
	}
	fn, t, err := s.findESM(r)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, s.viewESM(ts, fn.Name, t))
}

// esmDelete is DeleteEventSourceMapping: DELETE /2015-03-31/event-source-mappings/{UUID}.
func (s *Server) esmDelete(w http.ResponseWriter, r *http.Request) error {
	ts, err := s.triggerService()
	if err != nil {
		return err
	}
	fn, t, err := s.findESM(r)
	if err != nil {
		return err
	}
	if err := s.reg.DeleteTrigger(r.Context(), fn.Name, t.Name); err != nil {
		return err
	}
	v := s.viewESM(ts, fn.Name, t)
	v.State = "Deleting"
	return writeJSON(w, http.StatusAccepted, v)
}

// esmListAnswer is ListEventSourceMappings' answer.
type esmListAnswer struct {
	EventSourceMappings []esmView `json:"EventSourceMappings"`
	NextMarker          string    `json:"NextMarker,omitempty"`
}

// esmList is ListEventSourceMappings: GET /2015-03-31/event-source-mappings/,
// every kafka trigger (with FunctionName, those of one function and
// qualifier), in pages of MaxItems (default 100) continued from Marker.
func (s *Server) esmList(w http.ResponseWriter, r *http.Request) error {
	ts, err := s.triggerService()
	if err != nil {
		return err
	}
	q := r.URL.Query()
	limit, err := esmLimit(q.Get("MaxItems"))
	if err != nil {
		return err
	}
	out := esmListAnswer{EventSourceMappings: []esmView{}}
	if q.Get("EventSourceArn") != "" {
		return writeJSON(w, http.StatusOK, out) // Nimbus has no ARN-named sources
	}
	fns, qualifier, err := s.esmFunctions(r)
	if err != nil {
		return err
	}
	var all []esmView
	for _, fn := range fns {
		if !sees(r, fn.Name) {
			continue
		}
		for i := range fn.Triggers {
			if t := &fn.Triggers[i]; t.Type == nimbus.TriggerKafka && (qualifier == nil || t.Qualifier == *qualifier) {
				all = append(all, s.viewESM(ts, fn.Name, &fn.Triggers[i]))
			}
		}
	}
	start := 0
	if m := q.Get("Marker"); m != "" {
		i := slices.IndexFunc(all, func(v esmView) bool { return v.UUID == m })
		if i < 0 {
			return nimbus.Invalidf("Marker %q does not name an event source mapping: pass the NextMarker of the previous page", m)
		}
		start = i + 1
	}
	end := min(start+limit, len(all))
	out.EventSourceMappings = append(out.EventSourceMappings, all[start:end]...)
	if end < len(all) {
		out.NextMarker = all[end-1].UUID
	}
	return writeJSON(w, http.StatusOK, out)
}

// esmFunctions returns the function FunctionName names and the qualifier
// whose mappings are listed, as Lambda lists them: "" ($LATEST) for a
// bare name, the version or alias of a qualified one. Without
// FunctionName, every function and a nil qualifier (all mappings).
func (s *Server) esmFunctions(r *http.Request) ([]*nimbus.Function, *string, error) {
	name := r.URL.Query().Get("FunctionName")
	if name == "" {
		fns, err := s.reg.List(r.Context())
		return fns, nil, err
	}
	bare, q, err := registry.ParseQualifiedName(name)
	if err != nil {
		return nil, nil, err
	}
	fn, err := s.reg.Get(r.Context(), bare)
	if err != nil {
		return nil, nil, s.notFoundFunction(bare, err)
	}
	if q == nimbus.Latest {
		q = ""
	}
	return []*nimbus.Function{fn}, &q, nil
}

func esmLimit(v string) (int, error) {
	if v == "" {
		return 100, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > 10000 {
		return 0, esmValidationf("maxItems", v, "Member must have value between 1 and 10000")
	}
	return n, nil
}
