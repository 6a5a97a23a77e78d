package api

import (
	"context"
	"net/http"
	"strings"
	"time"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/auth"
	"github.com/nimbus-serverless/nimbus/internal/records"
	"github.com/nimbus-serverless/nimbus/internal/registry"
)

// Records are the invocation records and the usage and statistics
// metered from them (records.Store).
type Records interface {
	List(ctx context.Context, f records.Filter) ([]records.Record, string, error)
	Usage(ctx context.Context, q records.UsageQuery) (*records.UsageReport, error)
	Stats(ctx context.Context, q records.StatsQuery) (*records.StatsReport, error)
}

func (s *Server) recordsRoutes() {
	s.handle("GET /nimbus/v1/functions/{name}/invocations", s.invocationsList)
	s.handle("GET /nimbus/v1/usage", s.usageGet)
	s.statsRoutes()
}

// InvocationList is the answer of GET .../invocations.
type InvocationList struct {
	Invocations []records.Record `json:"Invocations"`
	NextCursor  string           `json:"NextCursor,omitempty"`
}

// invocationsList is GET /nimbus/v1/functions/{name}/invocations
// ?since=&until=&status=&limit=&cursor=: a function's invocation records,
// newest first. status takes a list (success,timeout) or "failed" (every
// status but success).
func (s *Server) invocationsList(w http.ResponseWriter, r *http.Request) error {
	if s.cfg.Records == nil {
		return nimbus.Errorf(nimbus.ErrNotFound, "This node keeps no invocation records")
	}
	fn := r.PathValue("name")
	if !registry.ValidName(fn) {
		return nimbus.Errorf(nimbus.ErrValidation, "function name %q is not valid", fn)
	}
	q := r.URL.Query()
	f := records.Filter{Function: fn, Cursor: q.Get("cursor"), Limit: records.DefaultLimit}
	var err error
	if f.Since, err = timeParam(q.Get("since"), "since"); err != nil {
		return err
	}
	if f.Until, err = timeParam(q.Get("until"), "until"); err != nil {
		return err
	}
	if v := q.Get("limit"); v != "" {
		if f.Limit, err = intParam(v, "limit"); err != nil {
			return err
		}
	}
	if v := q.Get("status"); v != "" {
		for st := range strings.SplitSeq(v, ",") {
			if st == "failed" {
				f.Statuses = append(f.Statuses, records.Statuses[1:]...)
			} else {
				f.Statuses = append(f.Statuses, st)
			}
		}
	}
	recs, next, err := s.cfg.Records.List(r.Context(), f)
	if err != nil {
		return err
	}
	if err := s.listedFunction(r.Context(), fn, len(recs) == 0 && f.Cursor == ""); err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, InvocationList{Invocations: recs, NextCursor: next})
}

// usageGet is GET /nimbus/v1/usage?since=&until=&function=&granularity=:
// usage and costs per function per hour or day (since defaults to 30 days
// ago, until to now, granularity to day). A key limited to some functions
// sees only theirs.
func (s *Server) usageGet(w http.ResponseWriter, r *http.Request) error {
	if s.cfg.Records == nil {
		return nimbus.Errorf(nimbus.ErrNotFound, "This node keeps no usage")
	}
	q := r.URL.Query()
	uq := records.UsageQuery{Function: q.Get("function"), Granularity: q.Get("granularity")}
	var err error
	if uq.Since, err = timeParam(q.Get("since"), "since"); err != nil {
		return err
	}
	if uq.Until, err = timeParam(q.Get("until"), "until"); err != nil {
		return err
	}
	now := time.Now()
	if uq.Since.IsZero() {
		uq.Since = now.Add(-30 * 24 * time.Hour)
	}
	if uq.Until.IsZero() {
		uq.Until = now
	}
	if uq.Granularity == "" {
		uq.Granularity = records.Day
	}
	if uq.Function != "" {
		if !registry.ValidName(uq.Function) {
			return nimbus.Errorf(nimbus.ErrValidation, "function must be a function name, not %q", uq.Function)
		}
		if err := allow(r, auth.Read, uq.Function); err != nil {
			return err
		}
	} else if p, ok := auth.From(r.Context()); ok && p.Role != auth.Admin && p.Functions != "*" {
		uq.Functions = p.Matches // a key limited to some functions sees theirs
	}
	rep, err := s.cfg.Records.Usage(r.Context(), uq)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, rep)
}
