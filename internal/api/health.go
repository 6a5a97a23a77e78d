package api

import (
	"io"
	"net/http"
	"strings"

	"github.com/nimbus-serverless/nimbus/internal/version"
)

// health is GET /healthz: the node answers, and its version. The body
// starts with the line "ok", which checks look for; the next line is
// "version <version>". A client that accepts only JSON (or asks for
// ?format=json) gets {"status": "ok", "version": "..."}. Every answer
// carries the version in X-Nimbus-Version too.
func (s *Server) health(w http.ResponseWriter, r *http.Request) {
	v := version.String()
	w.Header().Set("X-Nimbus-Version", v)
	if r.URL.Query().Get("format") == "json" || wantsJSON(r.Header.Get("Accept")) {
		_ = writeJSON(w, http.StatusOK, struct {
			Status  string `json:"status"`
			Version string `json:"version"`
		}{"ok", v})
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = io.WriteString(w, "ok\nversion "+v+"\n")
}

// wantsJSON reports whether an Accept header asks for JSON and not text.
func wantsJSON(accept string) bool {
	return strings.Contains(accept, "application/json") && !strings.Contains(accept, "text/")
}

// ReadyCheck is one check of GET /readyz: Check returns nil when the part
// named Name can serve, else why not. It must be cheap and not wait on I/O:
// probes call it often.
type ReadyCheck struct {
	Name  string
	Check func() error
}

// readyAnswer is /readyz's JSON: status "ok" or "unavailable", and each
// check's "ok" or reason.
type readyAnswer struct {
	Status  string            `json:"status"`
	Version string            `json:"version"`
	Checks  map[string]string `json:"checks"`
}

// ready is GET /readyz: whether the node can serve, by each of its checks
// (the store takes writes, the sandbox's pre-started helpers work). The
// text answer is "ready" (200) or "not ready" (503), then "version
// <version>", then one line per check, "<name>: ok" or "<name>: <reason>".
// JSON as for /healthz: {"status": "ok"|"unavailable", "version": ...,
// "checks": {"<name>": "ok"|"<reason>"}}. Like /healthz it needs no key.
func (s *Server) ready(w http.ResponseWriter, r *http.Request) {
	v := version.String()
	w.Header().Set("X-Nimbus-Version", v)
	w.Header().Set("Cache-Control", "no-store")
	ans := readyAnswer{Status: "ok", Version: v, Checks: make(map[string]string, len(s.cfg.Ready))}
	var lines strings.Builder
	for _, c := range s.cfg.Ready {
		res := "ok"
		if err := c.Check(); err != nil {
			res = oneLine(err.Error())
			ans.Status = "unavailable"
		}
		ans.Checks[c.Name] = res
		lines.WriteString(c.Name + ": " + res + "\n")
	}
	code, head := http.StatusOK, "ready"
	if ans.Status != "ok" {
		code, head = http.StatusServiceUnavailable, "not ready"
		s.log.Debug("not ready", "checks", ans.Checks) // each part logs its own failures
	}
	if r.URL.Query().Get("format") == "json" || wantsJSON(r.Header.Get("Accept")) {
		_ = writeJSON(w, code, ans)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(code)
	_, _ = io.WriteString(w, head+"\nversion "+v+"\n"+lines.String())
}

// oneLine joins the lines of s with "; ".
func oneLine(s string) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", "; ")), " ")
}
