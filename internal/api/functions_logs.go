package api

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/engine"
	"github.com/nimbus-serverless/nimbus/internal/fnlog"
)

// LogReader reads functions' durable logs (fnlog/nats.Store).
type LogReader interface {
	// Read returns the q.Limit most recent lines of fn matching q, oldest
	// first, and the position Follow continues after.
	// nimbus.ErrUnavailable: the store did not answer.
	Read(ctx context.Context, fn string, q fnlog.Query) ([]engine.LogRecord, uint64, error)
	// Follow sends fn's lines matching q stored after the position after,
	// until ctx ends; then the channel closes.
	Follow(ctx context.Context, fn string, q fnlog.Query, after uint64) (<-chan engine.LogRecord, error)
}

// functionsLogs serves a function's log lines as JSON lines: the most
// recent limit matching since, until, request_id and filter, oldest first;
// with follow=true it keeps the response open and streams new ones until
// the client goes or the function is deleted. It reads the durable logs
// when the node keeps them (any node's lines), else this node's memory.
func (s *Server) functionsLogs(w http.ResponseWriter, r *http.Request) error {
	fn, err := s.getFunction(r.Context(), r)
	if err != nil {
		return err
	}
	if s.cfg.Logs == nil && s.cfg.DurableLogs == nil {
		return nimbus.Invalidf("this node keeps no logs")
	}
	q, follow, err := parseLogQuery(r.URL.Query(), time.Now())
	if err != nil {
		return err
	}
	var gone <-chan engine.LogRecord // closes when the function is deleted
	if follow && s.cfg.Logs != nil {
		var cancel func()
		gone, cancel = s.cfg.Logs.Follow(fn.Name)
		defer cancel()
	}
	var recs []engine.LogRecord
	var live <-chan engine.LogRecord
	if s.cfg.DurableLogs != nil {
		var pos uint64
		if recs, pos, err = s.cfg.DurableLogs.Read(r.Context(), fn.Name, q); err != nil {
			return err
		}
		if follow {
			ctx, cancel := context.WithCancel(r.Context())
			defer cancel()
			if live, err = s.cfg.DurableLogs.Follow(ctx, fn.Name, q, pos); err != nil {
				return err
			}
		}
	} else {
		recs = readMemory(s.cfg.Logs, fn.Name, &q)
		live, gone = gone, nil
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	enc := json.NewEncoder(w)
	for _, rec := range recs {
		if err := enc.Encode(rec); err != nil {
			return nil
		}
	}
	if follow {
		streamLogs(r.Context(), s.cfg.Closing, w, enc, live, gone, &q, s.cfg.DurableLogs == nil)
	}
	return nil
}

// streamLogs writes the records of live (filtered when filter) until ctx
// ends, the node shuts down (closing), or live or gone closes.
func streamLogs(ctx context.Context, closing <-chan struct{}, w http.ResponseWriter, enc *json.Encoder, live, gone <-chan engine.LogRecord, q *fnlog.Query, filter bool) {
	flusher, _ := w.(http.Flusher)
	for {
		if flusher != nil {
			flusher.Flush()
		}
		select {
		case <-ctx.Done():
			return
		case <-closing: // the node is shutting down
			return
		case _, ok := <-gone:
			if !ok {
				return // the function was deleted
			}
		case rec, ok := <-live:
			if !ok {
				return
			}
			if filter && !q.Matches(rec.Time, rec.RequestID, rec.Line) {
				continue
			}
			if err := enc.Encode(rec); err != nil {
				return
			}
		}
	}
}

// readMemory returns the q.Limit most recent records matching q of what
// this node keeps in memory, oldest first.
func readMemory(logs *engine.LogStore, fn string, q *fnlog.Query) []engine.LogRecord {
	all := logs.Read(fn, -1)
	var out []engine.LogRecord
	for i := len(all) - 1; i >= 0 && len(out) < q.Limit; i-- {
		if r := &all[i]; q.Matches(r.Time, r.RequestID, r.Line) {
			out = append(out, *r)
		}
	}
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out
}

// parseLogQuery reads the parameters of a logs request: since and until
// (RFC 3339, or a duration before now), request_id, filter, limit (0 to
// fnlog.MaxLimit, default fnlog.DefaultLimit) and follow.
func parseLogQuery(v url.Values, now time.Time) (q fnlog.Query, follow bool, err error) {
	for name := range v {
		switch {
		case name == "since", name == "until", name == "request_id", name == "filter", name == "limit", name == "follow":
		case strings.HasPrefix(name, "X-Amz-"): // a presigned request's signature
		default:
			return q, false, nimbus.Invalidf("unknown parameter %q: the parameters are since, until, request_id, filter, limit and follow", name)
		}
	}
	for _, p := range []struct {
		name string
		t    *time.Time
	}{{"since", &q.Since}, {"until", &q.Until}} {
		if s := v.Get(p.name); s != "" {
			if *p.t, err = fnlog.ParseTime(s, now); err != nil {
				return q, false, nimbus.Invalidf("%s: %v", p.name, err)
			}
		}
	}
	if !q.Since.IsZero() && !q.Until.IsZero() && q.Until.Before(q.Since) {
		return q, false, nimbus.Invalidf("until (%s) is before since (%s)", q.Until.Format(time.RFC3339), q.Since.Format(time.RFC3339))
	}
	q.RequestID, q.Filter = v.Get("request_id"), v.Get("filter")
	if len(q.RequestID) > 256 || len(q.Filter) > 1024 {
		return q, false, nimbus.Invalidf("request_id may have at most 256 characters and filter 1024")
	}
	q.Limit = fnlog.DefaultLimit
	if s := v.Get("limit"); s != "" {
		if q.Limit, err = strconv.Atoi(s); err != nil || q.Limit < 0 || q.Limit > fnlog.MaxLimit {
			return q, false, nimbus.Invalidf("limit must be an integer from 0 to %d, not %q", fnlog.MaxLimit, s)
		}
	}
	switch v.Get("follow") {
	case "", "false", "0":
	case "true", "1":
		follow = true
	default:
		return q, false, nimbus.Invalidf("follow must be true or false, not %q", v.Get("follow"))
	}
	if follow && !q.Until.IsZero() {
		return q, false, nimbus.Invalidf("until cannot be used with follow")
	}
	return q, follow, nil
}
