package api

import (
	"net/http"
	"strings"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/auth"
	"github.com/nimbus-serverless/nimbus/internal/records"
	"github.com/nimbus-serverless/nimbus/internal/registry"
)

// statsRoutes are the invocation statistics (records.StatsReport): the
// console's charts.
func (s *Server) statsRoutes() {
	s.handle("GET /nimbus/v1/stats", s.statsGet)
	s.handle("GET /nimbus/v1/functions/{name}/stats", s.functionStatsGet)
}

// statsQuery reads ?window= (default 1h).
func statsQuery(r *http.Request) (records.StatsQuery, error) {
	q := records.StatsQuery{Window: r.URL.Query().Get("window")}
	if q.Window == "" {
		q.Window = "1h"
	}
	for _, w := range records.StatsWindows {
		if q.Window == w {
			return q, nil
		}
	}
	return q, nimbus.Errorf(nimbus.ErrValidation, "window must be one of %s, not %q", strings.Join(records.StatsWindows, ", "), q.Window)
}

// statsGet is GET /nimbus/v1/stats?window=1h|24h|7d[&by=function]: the
// account's series and totals, and with by=function each function's
// totals. A key limited to some functions sees the sum of theirs, and
// only theirs.
func (s *Server) statsGet(w http.ResponseWriter, r *http.Request) error {
	if s.cfg.Records == nil {
		return nimbus.Errorf(nimbus.ErrNotFound, "This node keeps no statistics")
	}
	q, err := statsQuery(r)
	if err != nil {
		return err
	}
	switch by := r.URL.Query().Get("by"); by {
	case "":
	case "function":
		q.ByFunction = true
	default:
		return nimbus.Errorf(nimbus.ErrValidation, "by must be function, not %q", by)
	}
	if p, ok := auth.From(r.Context()); ok && p.Role != auth.Admin && p.Functions != "*" {
		q.Functions = p.Matches
	}
	rep, err := s.cfg.Records.Stats(r.Context(), q)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, rep)
}

// functionStatsGet is GET /nimbus/v1/functions/{name}/stats?window=: one
// function's series and totals (those of a deleted function while they
// are kept; an unknown function with none is a ResourceNotFoundException).
func (s *Server) functionStatsGet(w http.ResponseWriter, r *http.Request) error {
	if s.cfg.Records == nil {
		return nimbus.Errorf(nimbus.ErrNotFound, "This node keeps no statistics")
	}
	fn := r.PathValue("name")
	if !registry.ValidName(fn) {
		return nimbus.Errorf(nimbus.ErrValidation, "function name %q is not valid", fn)
	}
	q, err := statsQuery(r)
	if err != nil {
		return err
	}
	q.Function = fn
	rep, err := s.cfg.Records.Stats(r.Context(), q)
	if err != nil {
		return err
	}
	t := &rep.Total
	if err := s.listedFunction(r.Context(), fn, t.Invocations+t.Throttles+t.PlatformErrors == 0); err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, rep)
}
