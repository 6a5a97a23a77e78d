package api

import (
	"net/http"

	"github.com/nimbus-serverless/nimbus"
)

// GetAccountSettings: the node's limits (NodeLimits) and its usage.

// AccountLimits are the node's limits, as GetAccountSettings reports them.
type AccountLimits struct {
	// TotalCodeSize is the most code the node's store can hold, in bytes
	// (0: no limit the node knows of).
	TotalCodeSize int64
	// CodeSizeZipped and CodeSizeUnzipped are the limits of one package.
	CodeSizeZipped   int64
	CodeSizeUnzipped int64
	// ConcurrentExecutions is the most instances the node runs at once.
	ConcurrentExecutions int
}

// NodeLimits reports the node's limits (implemented by internal/node).
type NodeLimits interface {
	AccountLimits() AccountLimits
}

func (s *Server) accountRoutes() {
	s.handle("GET /2016-08-19/account-settings", s.accountSettings)
	s.handle("GET /2016-08-19/account-settings/{$}", s.accountSettings)
}

type accountLimit struct {
	TotalCodeSize                  int64
	CodeSizeUnzipped               int64
	CodeSizeZipped                 int64
	ConcurrentExecutions           int
	UnreservedConcurrentExecutions int
}

type accountUsage struct {
	TotalCodeSize int64
	FunctionCount int64
}

// accountSettings answers the node's limits and usage. The usage counts
// the functions the caller may see (every function for an admin key); the
// unreserved concurrency is the node's, less every function's reserved
// concurrency, as Lambda computes it.
func (s *Server) accountSettings(w http.ResponseWriter, r *http.Request) error {
	var lim AccountLimits
	if s.cfg.Limits != nil {
		lim = s.cfg.Limits.AccountLimits()
	}
	var use accountUsage
	reserved := 0
	err := s.reg.Walk(r.Context(), func(fn *nimbus.Function) bool {
		if fn.ReservedConcurrency != nil {
			reserved += *fn.ReservedConcurrency
		}
		if sees(r, fn.Name) {
			use.FunctionCount++
			use.TotalCodeSize += fn.CodeSize
		}
		return true
	})
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, struct {
		AccountLimit accountLimit
		AccountUsage accountUsage
	}{accountLimit{
		TotalCodeSize: lim.TotalCodeSize, CodeSizeUnzipped: lim.CodeSizeUnzipped, CodeSizeZipped: lim.CodeSizeZipped,
		ConcurrentExecutions: lim.ConcurrentExecutions, UnreservedConcurrentExecutions: max(lim.ConcurrentExecutions-reserved, 0),
	}, use})
}
