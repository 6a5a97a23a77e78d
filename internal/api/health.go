package api

import (
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/nimbus-serverless/nimbus"
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

// ready is GET /readyz: 200 "ready" when the node can serve (its store
// takes writes), else 503 with the reason. Like /healthz it needs no key.
func (s *Server) ready(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Nimbus-Version", version.String())
	if s.cfg.Ready != nil {
		if err := s.cfg.Ready(); err != nil {
			writeError(w, r, s.log, fmt.Errorf("%w: not ready: %v", nimbus.ErrUnavailable, err))
			return
		}
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = io.WriteString(w, "ready\n")
}
