package api

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/audit"
	"github.com/nimbus-serverless/nimbus/internal/auth"
)

// The audit trail: every change (a route that neither reads nor invokes)
// is recorded with its outcome, and so is every failed authentication and
// every access denied on any route. Reads and invokes that pass are not.

func (s *Server) auditRoutes() {
	s.handle("GET /nimbus/v1/audit", s.auditList)
}

// actions names the changes, by route pattern, as Lambda names its
// operations (Nimbus's own after them); a route missing here is named by
// its pattern.
var actions = map[string]string{
	"POST /2015-03-31/functions":                                     "CreateFunction",
	"POST /2015-03-31/functions/{$}":                                 "CreateFunction",
	"PUT /2015-03-31/functions/{name}/code":                          "UpdateFunctionCode",
	"PUT /2015-03-31/functions/{name}/configuration":                 "UpdateFunctionConfiguration",
	"DELETE /2015-03-31/functions/{name}":                            "DeleteFunction",
	"PUT /2017-10-31/functions/{name}/concurrency":                   "PutFunctionConcurrency",
	"DELETE /2017-10-31/functions/{name}/concurrency":                "DeleteFunctionConcurrency",
	"PUT /2019-09-30/functions/{name}/provisioned-concurrency":       "PutProvisionedConcurrencyConfig",
	"DELETE /2019-09-30/functions/{name}/provisioned-concurrency":    "DeleteProvisionedConcurrencyConfig",
	"PUT /2019-09-25/functions/{name}/event-invoke-config":           "PutFunctionEventInvokeConfig",
	"POST /2019-09-25/functions/{name}/event-invoke-config":          "UpdateFunctionEventInvokeConfig",
	"DELETE /2019-09-25/functions/{name}/event-invoke-config":        "DeleteFunctionEventInvokeConfig",
	"POST /2021-10-31/functions/{name}/url":                          "CreateFunctionUrlConfig",
	"PUT /2021-10-31/functions/{name}/url":                           "UpdateFunctionUrlConfig",
	"DELETE /2021-10-31/functions/{name}/url":                        "DeleteFunctionUrlConfig",
	"POST /2015-03-31/event-source-mappings":                         "CreateEventSourceMapping",
	"POST /2015-03-31/event-source-mappings/{$}":                     "CreateEventSourceMapping",
	"PUT /2015-03-31/event-source-mappings/{uuid}":                   "UpdateEventSourceMapping",
	"DELETE /2015-03-31/event-source-mappings/{uuid}":                "DeleteEventSourceMapping",
	"POST /nimbus/v1/functions/{name}/triggers":                      "CreateTrigger",
	"PUT /nimbus/v1/functions/{name}/triggers/{trigger}":             "UpdateTrigger",
	"DELETE /nimbus/v1/functions/{name}/triggers/{trigger}":          "DeleteTrigger",
	"POST /nimbus/v1/functions/{name}/triggers/{trigger}/enable":     "EnableTrigger",
	"POST /nimbus/v1/functions/{name}/triggers/{trigger}/disable":    "DisableTrigger",
	"POST /nimbus/v1/functions/{name}/triggers/{trigger}/rotate-key": "RotateTriggerKey",
	"POST /nimbus/v1/functions/{name}/tasks/{id}/stop":               "StopTask",
	"POST /nimbus/v1/functions/{name}/dead-letters/redrive":          "RedriveDeadLetters",
	"POST /nimbus/v1/keys":                                           "CreateKey",
	"DELETE /nimbus/v1/keys/{key}":                                   "DeleteKey",
	"POST /nimbus/v1/keys/{key}/rotate":                              "RotateKey",
}

// trail is what the audit trail records of one route; nil records
// nothing (the node keeps no trail).
type trail struct {
	s       *Server
	pattern string
	action  string
	change  bool
}

func (s *Server) trail(pattern string, access auth.Access) *trail {
	if s.cfg.Audit == nil {
		return nil
	}
	method, _, _ := strings.Cut(pattern, " ")
	action := actions[pattern]
	if action == "" {
		action = strings.ReplaceAll(pattern, "{$}", "")
	}
	change := access != auth.Invoke && method != http.MethodGet && method != http.MethodHead
	return &trail{s: s, pattern: pattern, action: action, change: change}
}

// auditNote is what a handler learns of a change from its body: the
// function or resource it names.
type auditNote struct{ function, resource string }

type auditNoteKey struct{}

// noteFunction notes, for the audit trail, the function a request names
// elsewhere than in its path.
func noteFunction(r *http.Request, fn string) {
	if n, ok := r.Context().Value(auditNoteKey{}).(*auditNote); ok {
		n.function = auth.FunctionName(fn)
	}
}

// noteResource notes the resource a request names in its body.
func noteResource(r *http.Request, res string) {
	if n, ok := r.Context().Value(auditNoteKey{}).(*auditNote); ok {
		n.resource = res
	}
}

// begin prepares a change's request: a writer that keeps the status, and
// a note for the handler.
func (t *trail) begin(w http.ResponseWriter, r *http.Request) (http.ResponseWriter, *http.Request) {
	if t == nil || !t.change {
		return w, r
	}
	ctx := context.WithValue(r.Context(), auditNoteKey{}, &auditNote{})
	return &statusWriter{ResponseWriter: w}, r.WithContext(ctx)
}

// end records the request that began at start and ended with err (nil:
// answered), once answered and before the answer leaves the handler: a
// recorded change is durable before its caller is told. A failure to
// record is logged; the change itself has happened.
func (t *trail) end(w http.ResponseWriter, r *http.Request, start time.Time, err error) {
	if t == nil || !t.records(err) {
		return
	}
	e := t.event(w, r, start, err)
	if rerr := t.s.cfg.Audit.Record(context.WithoutCancel(r.Context()), e); rerr != nil {
		t.s.log.Error("audit: could not record a request", nimbus.LogErr, rerr, "action", e.Action,
			"key", e.Key, "function", e.Function, "resource", e.Resource, "status", e.Status)
	}
}

// records reports whether a request ending with err is recorded: every
// change, and refused authentications and accesses on any route, but not
// the refusals of the failed-authentication limit (recording those would
// let anyone fill the disk; the failures that reached the limit are
// recorded).
func (t *trail) records(err error) bool {
	var ae *auth.Error
	if errors.As(err, &ae) {
		return ae.Status == http.StatusForbidden
	}
	return t.change
}

func (t *trail) event(w http.ResponseWriter, r *http.Request, start time.Time, err error) audit.Event {
	e := audit.Event{
		Time: start.UTC(), Source: clientHost(r), Action: t.action, Route: t.pattern,
		Function: auth.FunctionName(r.PathValue("name")), Resource: pathResource(r),
	}
	if p, ok := auth.From(r.Context()); ok {
		e.Key, e.AccessKeyID, e.Role = p.Name, p.AccessKeyID, string(p.Role)
	} else {
		e.AccessKeyID = claimedKeyID(r)
	}
	if n, ok := r.Context().Value(auditNoteKey{}).(*auditNote); ok {
		e.Function, e.Resource = cmpOr(e.Function, n.function), cmpOr(e.Resource, n.resource)
	}
	if sw, ok := w.(*statusWriter); ok {
		e.Status = sw.status
		if e.Status >= 400 {
			e.ErrorType = w.Header().Get("X-Amzn-ErrorType")
		}
	}
	if err != nil && (e.Status == 0 || e.ErrorType == "") {
		p := kind(err)
		e.Status, e.ErrorType = cmpOr(e.Status, p.status), p.typ
	}
	if e.Status == 0 {
		e.Status = http.StatusOK
	}
	return e
}

func cmpOr[T comparable](a, b T) T {
	var zero T
	if a != zero {
		return a
	}
	return b
}

// pathResource is the resource other than the function a route's path
// names.
func pathResource(r *http.Request) string {
	for _, k := range []string{"key", "trigger", "id", "uuid"} {
		if v := r.PathValue(k); v != "" {
			return v
		}
	}
	return ""
}

// clientHost is the address of the connection (X-Forwarded-For is not
// trusted: any client can set it).
func clientHost(r *http.Request) string {
	if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		return host
	}
	return r.RemoteAddr
}

// claimedKeyID is the access key id a request's signature names, letters
// and digits only, at most 128 of them ("" for none).
func claimedKeyID(r *http.Request) string {
	c := r.URL.Query().Get("X-Amz-Credential")
	if h := r.Header.Get("Authorization"); h != "" {
		_, c, _ = strings.Cut(h, "Credential=")
	}
	id, _, _ := strings.Cut(c, "/")
	if user, _, ok := r.BasicAuth(); ok { // GET /metrics: never the password
		id = user
	}
	var b strings.Builder
	for _, ch := range id {
		if b.Len() == 128 {
			break
		}
		if ch < 128 && (ch >= '0' && ch <= '9' || ch >= 'A' && ch <= 'Z' || ch >= 'a' && ch <= 'z') {
			b.WriteRune(ch)
		}
	}
	return b.String()
}

// statusWriter keeps the status of an answer.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(status int) {
	if w.status == 0 {
		w.status = status
	}
	w.ResponseWriter.WriteHeader(status)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Flush implements http.Flusher.
func (w *statusWriter) Flush() {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	http.NewResponseController(w.ResponseWriter).Flush() //nolint:errcheck // as http.Flusher: no error
}

// Unwrap lets http.ResponseController reach the connection's writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// auditPage is the answer of GET /nimbus/v1/audit.
type auditPage struct {
	Events     []audit.Event `json:"Events"`
	NextMarker string        `json:"NextMarker,omitempty"`
}

// auditList is GET /nimbus/v1/audit?since=&until=&key=&function=&action=&limit=&marker=
// (admin only: accessOf): the trail, newest first.
func (s *Server) auditList(w http.ResponseWriter, r *http.Request) error {
	if s.cfg.Audit == nil {
		return nimbus.Errorf(nimbus.ErrNotFound, "This node keeps no audit trail")
	}
	f, err := auditFilter(r)
	if err != nil {
		return err
	}
	evs, next, err := s.cfg.Audit.List(r.Context(), f)
	if err != nil {
		return err
	}
	if evs == nil {
		evs = []audit.Event{}
	}
	return writeJSON(w, http.StatusOK, auditPage{Events: evs, NextMarker: next})
}

func auditFilter(r *http.Request) (audit.Filter, error) {
	q := r.URL.Query()
	f := audit.Filter{Key: q.Get("key"), Function: q.Get("function"), Action: q.Get("action"),
		Marker: q.Get("marker"), Limit: audit.DefaultLimit}
	for _, t := range []struct {
		name string
		to   *time.Time
	}{{"since", &f.Since}, {"until", &f.Until}} {
		if v := q.Get(t.name); v != "" {
			tm, err := time.Parse(time.RFC3339, v)
			if err != nil {
				return f, nimbus.Invalidf("%s must be a time in RFC 3339 form such as 2026-03-01T12:00:00Z, not %q", t.name, v)
			}
			*t.to = tm
		}
	}
	if f.Function != "" {
		f.Function = auth.FunctionName(f.Function)
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			return f, nimbus.Invalidf("limit must be a whole number from 1 to %d, not %q", audit.MaxLimit, v)
		}
		f.Limit = n
	}
	return f, f.Check()
}
