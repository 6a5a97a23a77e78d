package api

import (
	"encoding/json"
	"errors"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/registry"
)

// fcProvisionRoutes mounts Put/Get/Delete/ListProvisionConfig(s): Nimbus's
// provisioned concurrency (the warm minimum the Lambda dialect's
// PutProvisionedConcurrencyConfig sets), of the function (no qualifier or
// LATEST), a version or an alias.
func (s *Server) fcProvisionRoutes() {
	const fn = fcPrefix + "/functions/{name}"
	s.fcHandle("PUT "+fn+"/provision-config", "PutProvisionConfig", s.fcProvisionPut)
	s.fcHandle("GET "+fn+"/provision-config", "GetProvisionConfig", s.fcProvisionGet)
	s.fcHandle("DELETE "+fn+"/provision-config", "DeleteProvisionConfig", s.fcProvisionDelete)
	s.fcHandle("GET "+fcPrefix+"/provision-configs", "ListProvisionConfigs", s.fcProvisionList)
}

// fcProvisionInput is PutProvisionConfig's body.
type fcProvisionInput struct {
	Target                 *int            `json:"target"`
	DefaultTarget          *int            `json:"defaultTarget"`
	AlwaysAllocateCPU      *bool           `json:"alwaysAllocateCPU"`
	AlwaysAllocateGPU      *bool           `json:"alwaysAllocateGPU"`
	ScheduledActions       json.RawMessage `json:"scheduledActions"`
	TargetTrackingPolicies json.RawMessage `json:"targetTrackingPolicies"`
}

// fcProvisionConfig is Function Compute's ProvisionConfig.
type fcProvisionConfig struct {
	FunctionArn       string `json:"functionArn"`
	Target            int    `json:"target"`
	DefaultTarget     int    `json:"defaultTarget"`
	Current           int    `json:"current"`
	CurrentError      string `json:"currentError,omitempty"`
	AlwaysAllocateCPU bool   `json:"alwaysAllocateCPU"`
	AlwaysAllocateGPU bool   `json:"alwaysAllocateGPU"`
}

// fcProvisionQualifier is the qualifier query as the Lambda dialect's
// provisioned concurrency keys it: $LATEST for none or LATEST, else a
// version or alias of fn (VersionNotFound or AliasNotFound when fn has
// no such one).
func (s *Server) fcProvisionQualifier(r *http.Request, fn *nimbus.Function) (string, error) {
	q := fcQualifier(r)
	if q == "" {
		return nimbus.Latest, nil
	}
	if !registry.HasQualifier(fn, q) {
		return "", fcQualifierNotFound(fn.Name, q)
	}
	return q, nil
}

// fcQualifierNotFound is the error of a qualifier fn lacks: a version
// number's VersionNotFound, else AliasNotFound.
func fcQualifierNotFound(name, q string) error {
	if isVersionNumber(q) {
		return fcErr(http.StatusNotFound, fcVersionNotFound, "version '"+q+"' of function '"+name+"' does not exist")
	}
	return fcErr(http.StatusNotFound, fcAliasNotFound, "alias '"+q+"' of function '"+name+"' does not exist")
}

// isVersionNumber reports whether q is all digits.
func isVersionNumber(q string) bool {
	if q == "" {
		return false
	}
	for _, c := range q {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// fcProvisionView is fn's provision config for q.
func (s *Server) fcProvisionView(r *http.Request, fn *nimbus.Function, q string) fcProvisionConfig {
	p := s.provisioned(r.Context(), fn, q, false)
	arn := s.fcARN(fn.Name)
	if q != nimbus.Latest {
		arn += "/" + q
	}
	return fcProvisionConfig{FunctionArn: arn, Target: p.RequestedProvisionedConcurrentExecutions,
		DefaultTarget: p.RequestedProvisionedConcurrentExecutions, Current: p.AvailableProvisionedConcurrentExecutions}
}

// fcProvisionPut is PutProvisionConfig: target (or defaultTarget) warm
// instances; target 0 removes the config. Scheduled actions and target
// tracking are refused (Nimbus has no scheduled or tracked minimum), and so
// is alwaysAllocateCPU true: Nimbus freezes idle instances.
func (s *Server) fcProvisionPut(w http.ResponseWriter, r *http.Request) error {
	fn, err := s.fcFunction(r)
	if err != nil {
		return err
	}
	var req fcProvisionInput
	if err := fcDecode(w, r, maxConfigBody, &req); err != nil {
		return err
	}
	q, err := s.fcProvisionQualifier(r, fn)
	if err != nil {
		return err
	}
	for _, u := range []struct {
		name string
		v    json.RawMessage
	}{{"scheduledActions", req.ScheduledActions}, {"targetTrackingPolicies", req.TargetTrackingPolicies}} {
		if len(u.v) > 0 && string(u.v) != "null" && string(u.v) != "[]" {
			return fcInvalid("%s is not supported: Nimbus keeps a fixed number of warm instances (target)", u.name)
		}
	}
	if req.AlwaysAllocateCPU != nil && *req.AlwaysAllocateCPU {
		return fcInvalid("alwaysAllocateCPU true is not supported: Nimbus freezes an idle instance (as alwaysAllocateCPU false); set it false or leave it out")
	}
	if req.AlwaysAllocateGPU != nil && *req.AlwaysAllocateGPU {
		return fcInvalid("alwaysAllocateGPU is not supported: Nimbus has no GPU instances")
	}
	n := req.Target
	if n == nil {
		n = req.DefaultTarget
	}
	switch {
	case n == nil:
		return fcInvalid("target is required")
	case *n < 0 || *n > 10000:
		return fcInvalid("target %d is invalid: it must be from 0 to 10000", *n)
	case req.Target != nil && req.DefaultTarget != nil && *req.Target != *req.DefaultTarget:
		return fcInvalid("target %d and defaultTarget %d differ: Nimbus keeps one number of warm instances", *req.Target, *req.DefaultTarget)
	case fn.ReservedConcurrency != nil && *n > *fn.ReservedConcurrency:
		return fcInvalid("target %d is more than the function's reserved concurrency, %d", *n, *fn.ReservedConcurrency)
	}
	if err := s.fcSetProvisioned(r, fn, q, *n); err != nil {
		return err
	}
	if fn, err = s.reg.Get(r.Context(), fn.Name); err != nil {
		return fcNotFound(err, fcFunctionNotFound)
	}
	return fcWriteJSON(w, http.StatusOK, s.fcProvisionView(r, fn, q))
}

// fcSetProvisioned sets fn's provisioned concurrency for q to n.
func (s *Server) fcSetProvisioned(r *http.Request, fn *nimbus.Function, q string, n int) error {
	var err error
	switch {
	case q == nimbus.Latest:
		_, err = s.reg.SetConcurrency(r.Context(), fn.Name, nil, false, n)
	case n == 0 && provisionedOf(fn, q) == 0:
		return nil
	default:
		_, err = s.reg.SetProvisioned(r.Context(), fn.Name, q, n)
	}
	if errors.Is(err, nimbus.ErrNotFound) {
		if _, gerr := s.reg.Get(r.Context(), fn.Name); gerr != nil {
			return fcNotFound(gerr, fcFunctionNotFound)
		}
		return fcQualifierNotFound(fn.Name, q)
	}
	return err
}

// fcProvisioned is the function and qualifier of r, which must have a
// provision config (else ProvisionConfigNotFound).
func (s *Server) fcProvisioned(r *http.Request) (*nimbus.Function, string, error) {
	fn, err := s.fcFunction(r)
	if err != nil {
		return nil, "", err
	}
	q, err := s.fcProvisionQualifier(r, fn)
	if err != nil {
		return nil, "", err
	}
	if provisionedOf(fn, q) == 0 {
		return nil, "", fcErr(http.StatusNotFound, fcProvisionNotFound, "function '"+fn.Name+"' has no provision config for "+fcQualifierName(q))
	}
	return fn, q, nil
}

func (s *Server) fcProvisionGet(w http.ResponseWriter, r *http.Request) error {
	fn, q, err := s.fcProvisioned(r)
	if err != nil {
		return err
	}
	return fcWriteJSON(w, http.StatusOK, s.fcProvisionView(r, fn, q))
}

// fcQualifierName is q as Function Compute names it.
func fcQualifierName(q string) string {
	if q == nimbus.Latest || q == "" {
		return "LATEST"
	}
	return q
}

func (s *Server) fcProvisionDelete(w http.ResponseWriter, r *http.Request) error {
	fn, q, err := s.fcProvisioned(r)
	if err != nil {
		return err
	}
	if err := s.fcSetProvisioned(r, fn, q, 0); err != nil {
		return err
	}
	return fcNoContent(w)
}

// fcProvisionList is ListProvisionConfigs: every function's configs
// (functionName filters), a key seeing only its functions; limit (1 to
// 100) and nextToken (where the previous page stopped: function:qualifier).
func (s *Server) fcProvisionList(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	limit, err := fcLimit(q.Get("limit"))
	if err != nil {
		return err
	}
	fns, err := s.reg.List(r.Context())
	if err != nil {
		return err
	}
	only := q.Get("functionName")
	tokName, tokQ, _ := strings.Cut(q.Get("nextToken"), ":")
	out := struct {
		ProvisionConfigs []fcProvisionConfig `json:"provisionConfigs"`
		NextToken        string              `json:"nextToken,omitempty"`
	}{ProvisionConfigs: []fcProvisionConfig{}}
	for _, fn := range fns { // in name order
		if (only != "" && fn.Name != only) || !sees(r, fn.Name) {
			continue
		}
		var qs []string
		if fn.ProvisionedConcurrency > 0 {
			qs = append(qs, nimbus.Latest)
		}
		qs = append(qs, slices.Sorted(maps.Keys(fn.ProvisionedVersions))...)
		for _, fq := range qs { // $LATEST sorts first, as here
			if fn.Name < tokName || fn.Name == tokName && fq < tokQ {
				continue
			}
			if len(out.ProvisionConfigs) == limit {
				out.NextToken = fn.Name + ":" + fq
				return fcWriteJSON(w, http.StatusOK, out)
			}
			out.ProvisionConfigs = append(out.ProvisionConfigs, s.fcProvisionView(r, fn, fq))
		}
	}
	return fcWriteJSON(w, http.StatusOK, out)
}

// fcLimit parses a list's limit: 1 to 100, 20 when not given.
// fcNamePage is a page of items in name order: those whose name has the
// query's prefix, from its nextToken (the name to start at), at most its
// limit (fcLimit), and the nextToken of the page after ("" at the end).
func fcNamePage[T any](q url.Values, items []T, name func(*T) string) (page []*T, next string, err error) {
	limit, err := fcLimit(q.Get("limit"))
	if err != nil {
		return nil, "", err
	}
	sorted := make([]*T, len(items))
	for i := range items {
		sorted[i] = &items[i]
	}
	slices.SortFunc(sorted, func(a, b *T) int { return strings.Compare(name(a), name(b)) })
	prefix, token := q.Get("prefix"), q.Get("nextToken")
	for _, it := range sorted {
		n := name(it)
		if !strings.HasPrefix(n, prefix) || n < token {
			continue
		}
		if len(page) == limit {
			return page, n, nil
		}
		page = append(page, it)
	}
	return page, "", nil
}

func fcLimit(v string) (int, error) {
	if v == "" {
		return 20, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > 100 {
		return 0, fcInvalid("limit %q is invalid: it must be from 1 to 100", v)
	}
	return n, nil
}
