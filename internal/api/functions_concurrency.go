package api

import (
	"context"
	"maps"
	"math"
	"net/http"
	"slices"
	"strconv"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/registry"
)

type putConcurrencyRequest struct {
	ReservedConcurrentExecutions *int
}

func (s *Server) concurrencyPut(w http.ResponseWriter, r *http.Request) error {
	name, err := functionName(r)
	if err != nil {
		return err
	}
	var req putConcurrencyRequest
	if err := decode(w, r, maxConfigBody, &req); err != nil {
		return err
	}
	if req.ReservedConcurrentExecutions == nil {
		return nimbus.Errorf(nimbus.ErrValidation, "1 validation error detected: Value null at 'reservedConcurrentExecutions' failed to satisfy constraint: Member must not be null")
	}
	if _, err := s.reg.SetConcurrency(r.Context(), name, req.ReservedConcurrentExecutions, true, -1); err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, concurrency{ReservedConcurrentExecutions: req.ReservedConcurrentExecutions})
}

func (s *Server) concurrencyGet(w http.ResponseWriter, r *http.Request) error {
	fn, err := s.getFunction(r.Context(), r)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, concurrency{ReservedConcurrentExecutions: fn.ReservedConcurrency})
}

func (s *Server) concurrencyDelete(w http.ResponseWriter, r *http.Request) error {
	name, err := functionName(r)
	if err != nil {
		return err
	}
	if _, err := s.reg.SetConcurrency(r.Context(), name, nil, true, -1); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

type provisionedRequest struct {
	ProvisionedConcurrentExecutions *int
}

// provisionedResponse is Lambda's provisioned concurrency config, as Put
// and Get answer it; List adds the FunctionArn.
type provisionedResponse struct {
	FunctionArn                              string `json:"FunctionArn,omitempty"`
	RequestedProvisionedConcurrentExecutions int
	AvailableProvisionedConcurrentExecutions int
	AllocatedProvisionedConcurrentExecutions int
	Status                                   string
	StatusReason                             string `json:"StatusReason,omitempty"`
	LastModified                             string
}

// errNoProvisioned is Lambda's error type for a Get of a function without
// a provisioned concurrency config.
const errNoProvisioned = "ProvisionedConcurrencyConfigNotFoundException"

// provisionedQualifier checks the Qualifier of Put, Get and Delete: Lambda
// requires one, and $LATEST is the only version Nimbus has (any other is
// not found, as in every other operation).
func (s *Server) provisionedQualifier(r *http.Request, name string) error {
	q, set := r.URL.Query()["Qualifier"]
	if !set || len(q) == 0 || q[0] == "" {
		return nimbus.Errorf(nimbus.ErrValidation, "1 validation error detected: Value null at 'qualifier' failed to satisfy constraint: Member must not be null")
	}
	if !validQualifier(q[0]) {
		return nimbus.Errorf(nimbus.ErrValidation, "1 validation error detected: Value '%s' at 'qualifier' failed to satisfy constraint: Member must satisfy regular expression pattern: (|[a-zA-Z0-9$_-]{1,128})", q[0])
	}
	return nil
}

// validQualifier: 1 to 128 of a-z A-Z 0-9 $ _ -, Lambda's pattern.
func validQualifier(q string) bool {
	if len(q) < 1 || len(q) > 128 {
		return false
	}
	for _, c := range q {
		if !(c == '$' || c == '_' || c == '-' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
			return false
		}
	}
	return true
}

// provisionedFunction parses the name and qualifier ($LATEST, a version or
// an alias) and loads the function; q is the qualifier.
func (s *Server) provisionedFunction(r *http.Request) (fn *nimbus.Function, q string, err error) {
	name, err := functionName(r)
	if err != nil {
		return nil, "", err
	}
	if err := s.provisionedQualifier(r, name); err != nil {
		return nil, "", err
	}
	q = r.URL.Query().Get("Qualifier")
	if fn, err = s.reg.Get(r.Context(), name); err != nil {
		return nil, "", s.notFound(name, "", err)
	}
	if q != nimbus.Latest {
		if _, err := s.reg.Resolve(r.Context(), name, q); err != nil {
			return nil, "", s.notFound(name, q, err)
		}
	}
	return fn, q, nil
}

// provisionedOf is the provisioned concurrency fn has for qualifier q.
func provisionedOf(fn *nimbus.Function, q string) int {
	if q == nimbus.Latest {
		return fn.ProvisionedConcurrency
	}
	return fn.ProvisionedVersions[q]
}

// provisionedPut keeps a minimum of warm instances of $LATEST (Lambda's
// PutProvisionedConcurrencyConfig). It may not be more than the function's
// reserved concurrency, as in Lambda.
func (s *Server) provisionedPut(w http.ResponseWriter, r *http.Request) error {
	fn, q, err := s.provisionedFunction(r)
	if err != nil {
		return err
	}
	var req provisionedRequest
	if err := decodeStrictLimit(w, r, maxConfigBody, &req); err != nil {
		return err
	}
	n := req.ProvisionedConcurrentExecutions
	switch {
	case n == nil:
		return nimbus.Errorf(nimbus.ErrValidation, "1 validation error detected: Value null at 'provisionedConcurrentExecutions' failed to satisfy constraint: Member must not be null")
	case *n < 1:
		return nimbus.Errorf(nimbus.ErrValidation, "1 validation error detected: Value '%d' at 'provisionedConcurrentExecutions' failed to satisfy constraint: Member must have value greater than or equal to 1", *n)
	case *n > math.MaxInt32:
		return nimbus.Errorf(nimbus.ErrValidation, "1 validation error detected: Value '%d' at 'provisionedConcurrentExecutions' failed to satisfy constraint: Member must have value less than or equal to %d", *n, math.MaxInt32)
	case fn.ReservedConcurrency != nil && *n > *fn.ReservedConcurrency:
		return nimbus.Invalidf("Requested Provisioned Concurrency should not be greater than the reservedConcurrentExecution for function (%d > %d)", *n, *fn.ReservedConcurrency)
	}
	if q == nimbus.Latest {
		fn, err = s.reg.SetConcurrency(r.Context(), fn.Name, nil, false, *n)
	} else {
		fn, err = s.reg.SetProvisioned(r.Context(), fn.Name, q, *n)
	}
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusAccepted, s.provisioned(r.Context(), fn, q, false))
}

// provisioned is fn's config for qualifier q; withARN adds the qualified
// FunctionArn (List).
func (s *Server) provisioned(ctx context.Context, fn *nimbus.Function, q string, withARN bool) provisionedResponse {
	want, pool := provisionedOf(fn, q), fn.Name
	if q != nimbus.Latest {
		if v, err := s.reg.Resolve(ctx, fn.Name, registry.AliasVersion(fn, q)); err == nil {
			pool = fn.Name + ":" + v.Version // the version's pool (engine.poolID)
		}
	}
	avail := 0
	if s.cfg.Invoker != nil {
		avail = min(s.cfg.Invoker.Warm(pool), want)
	}
	status := "IN_PROGRESS"
	if avail >= want {
		status = "READY"
	}
	out := provisionedResponse{
		RequestedProvisionedConcurrentExecutions: want,
		AvailableProvisionedConcurrentExecutions: avail,
		AllocatedProvisionedConcurrentExecutions: avail,
		Status:                                   status,
		LastModified:                             fn.LastModified.UTC().Format(lambdaTime),
	}
	if withARN {
		out.FunctionArn = s.arn(fn.Name) + ":" + q
	}
	return out
}

// provisionedGet is GetProvisionedConcurrencyConfig, or with ?List=ALL
// ListProvisionedConcurrencyConfigs (Lambda's two operations share the
// path).
func (s *Server) provisionedGet(w http.ResponseWriter, r *http.Request) error {
	if _, list := r.URL.Query()["List"]; list {
		return s.provisionedList(w, r)
	}
	fn, q, err := s.provisionedFunction(r)
	if err != nil {
		return err
	}
	if provisionedOf(fn, q) == 0 {
		return newError(http.StatusNotFound, errNoProvisioned, "No Provisioned Concurrency Config found for this function")
	}
	return writeJSON(w, http.StatusOK, s.provisioned(r.Context(), fn, q, false))
}

// maxProvisionedListItems is Lambda's MaxItems cap of
// ListProvisionedConcurrencyConfigs.
const maxProvisionedListItems = 50

// provisionedList lists the function's configs: Nimbus has one version per
// function, so there is at most one, and never a next page.
func (s *Server) provisionedList(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	if v := q.Get("List"); v != "ALL" {
		return nimbus.Errorf(nimbus.ErrValidation, "1 validation error detected: Value '%s' at 'list' failed to satisfy constraint: Member must satisfy enum value set: [ALL]", v)
	}
	if v := q.Get("MaxItems"); v != "" {
		if n, err := strconv.Atoi(v); err != nil || n < 1 || n > maxProvisionedListItems {
			return nimbus.Errorf(nimbus.ErrValidation, "1 validation error detected: Value '%s' at 'maxItems' failed to satisfy constraint: Member must have value between 1 and %d", v, maxProvisionedListItems)
		}
	}
	if m := q.Get("Marker"); m != "" {
		return nimbus.Invalidf("The Marker %q is not valid: pass the NextMarker of a previous answer", m)
	}
	fn, err := s.getFunction(r.Context(), r)
	if err != nil {
		return err
	}
	out := struct {
		ProvisionedConcurrencyConfigs []provisionedResponse
	}{ProvisionedConcurrencyConfigs: []provisionedResponse{}}
	if fn.ProvisionedConcurrency > 0 {
		out.ProvisionedConcurrencyConfigs = append(out.ProvisionedConcurrencyConfigs, s.provisioned(r.Context(), fn, nimbus.Latest, true))
	}
	qs := slices.Sorted(maps.Keys(fn.ProvisionedVersions))
	for _, q := range qs {
		out.ProvisionedConcurrencyConfigs = append(out.ProvisionedConcurrencyConfigs, s.provisioned(r.Context(), fn, q, true))
	}
	return writeJSON(w, http.StatusOK, out)
}

func (s *Server) provisionedDelete(w http.ResponseWriter, r *http.Request) error {
	fn, q, err := s.provisionedFunction(r)
	if err != nil {
		return err
	}
	if provisionedOf(fn, q) == 0 {
		return nimbus.Errorf(nimbus.ErrNotFound, "No Provisioned Concurrency Config found for this function")
	}
	if q == nimbus.Latest {
		_, err = s.reg.SetConcurrency(r.Context(), fn.Name, nil, false, 0)
	} else {
		_, err = s.reg.SetProvisioned(r.Context(), fn.Name, q, 0)
	}
	if err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
