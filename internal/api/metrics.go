package api

import (
	"net/http"

	"github.com/nimbus-serverless/nimbus/internal/auth"
)

// metricsPattern is the route of the node's Prometheus metrics.
const metricsPattern = "GET /metrics"

// metricsRoutes serves GET /metrics when the node has metrics (404
// otherwise, as an unknown operation). It is administration: a request
// signed by an admin key, or (for a scraper that cannot sign) HTTP Basic
// credentials of an admin key, id and secret; open with authentication
// off.
func (s *Server) metricsRoutes() {
	if s.cfg.Metrics == nil {
		return
	}
	s.handle(metricsPattern, func(w http.ResponseWriter, r *http.Request) error {
		s.cfg.Metrics.ServeHTTP(w, r)
		return nil
	})
}

// authenticateScrape is authenticate for GET /metrics, which also takes
// HTTP Basic credentials (auth.Verifier.VerifyBasic). A failure counts
// against the client's address like a bad signature.
func (s *Server) authenticateScrape(r *http.Request) (auth.Principal, error) {
	v := s.cfg.Verifier
	if v == nil || !auth.IsBasic(r) {
		return s.authenticate(r, false)
	}
	if err := s.cfg.Limiter.Check(r); err != nil {
		return auth.Principal{}, err
	}
	p, err := v.VerifyBasic(r)
	if err != nil {
		s.cfg.Limiter.Failed(r)
		return auth.Principal{}, err
	}
	return p, nil
}
