package console

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/nimbus-serverless/nimbus/internal/engine"
)

type logsView struct {
	Name, RequestID string
	Since           time.Time
	Lines           []engine.LogRecord
}

// functionLogs is GET /console/functions/{name}/logs?request_id=&since=:
// the log of one invocation (the link of each recent invocation), or the
// function's recent lines.
func (c *Console) functionLogs(w http.ResponseWriter, r *http.Request, v *visit) error {
	name := r.PathValue("name")
	q := r.URL.Query()
	view := logsView{Name: name, RequestID: q.Get("request_id")}
	since := c.cfg.Now().Add(-time.Hour)
	if s := q.Get("since"); s != "" {
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return &apiError{Status: http.StatusBadRequest, Type: "InvalidParameterValueException", Message: "since must be a time such as 2026-12-06T09:00:00Z, not " + fmt.Sprintf("%q", s)}
		}
		since = t
	}
	view.Since = since
	api := url.Values{"since": {since.UTC().Format(time.RFC3339Nano)}, "limit": {"1000"}}
	if view.RequestID != "" {
		api.Set("request_id", view.RequestID)
	}
	body, err := v.call(http.MethodGet, fnPath("/nimbus/v1/functions/", name)+"/logs?"+api.Encode(), nil, nil)
	if err != nil {
		return err
	}
	sc := bufio.NewScanner(bytes.NewReader(body.Body))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		var rec engine.LogRecord
		if json.Unmarshal(sc.Bytes(), &rec) == nil {
			view.Lines = append(view.Lines, rec)
		}
	}
	c.render(w, r, http.StatusOK, "logs", page{Title: "Logs of " + name, Nav: "functions", Visit: v, Data: view})
	return nil
}

// tailLines is how many earlier lines a live tail starts with.
const tailLines = 100

// functionLogStream is GET /console/functions/{name}/logs/stream: the
// function's log as Server-Sent Events, the last lines of the past 15
// minutes then every new line as it is written (from every node). Each
// event's id is its line's time, so that a browser reconnecting after the
// node restarted resumes where it was (Last-Event-ID).
func (c *Console) functionLogStream(w http.ResponseWriter, r *http.Request, v *visit) error {
	name := r.PathValue("name")
	since := c.cfg.Now().Add(-15 * time.Minute)
	if id := r.Header.Get("Last-Event-ID"); id != "" {
		if t, err := time.Parse(time.RFC3339Nano, id); err == nil {
			since = t
		}
	}
	q := url.Values{"since": {since.UTC().Format(time.RFC3339Nano)}, "limit": {fmt.Sprint(tailLines)}, "follow": {"true"}}
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	body, err := v.stream(ctx, fnPath("/nimbus/v1/functions/", name)+"/logs?"+q.Encode())
	if err != nil {
		return err
	}
	defer body.Close()
	fl, _ := w.(http.Flusher)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	fmt.Fprint(w, "retry: 2000\n\n")
	lines := make(chan []byte)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(body)
		sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
		for sc.Scan() {
			select {
			case lines <- append([]byte(nil), sc.Bytes()...):
			case <-ctx.Done():
				return
			}
		}
	}()
	ping := time.NewTicker(15 * time.Second)
	defer ping.Stop()
	for {
		if fl != nil {
			fl.Flush()
		}
		select {
		case <-ctx.Done():
			return nil
		case <-ping.C:
			if _, err := fmt.Fprint(w, ": ping\n\n"); err != nil {
				return nil
			}
		case line, ok := <-lines:
			if !ok {
				return nil // the function was deleted, or the node is closing
			}
			var rec engine.LogRecord
			if json.Unmarshal(line, &rec) != nil {
				continue
			}
			if _, err := fmt.Fprintf(w, "id: %s\ndata: %s\n\n", rec.Time.UTC().Format(time.RFC3339Nano), line); err != nil {
				return nil
			}
		}
	}
}
