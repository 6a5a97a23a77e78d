package api

import (
	"net/http"

	"github.com/nimbus-serverless/nimbus"
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

type provisionedResponse struct {
	RequestedProvisionedConcurrentExecutions int
	AvailableProvisionedConcurrentExecutions int
	AllocatedProvisionedConcurrentExecutions int
	Status                                   string
	LastModified                             string
}

// provisionedPut keeps a minimum of warm instances (Lambda's
// PutProvisionedConcurrencyConfig; Nimbus accepts any qualifier and applies
// it to $LATEST, the only version it has).
func (s *Server) provisionedPut(w http.ResponseWriter, r *http.Request) error {
	name, err := functionName(r)
	if err != nil {
		return err
	}
	var req provisionedRequest
	if err := decode(w, r, maxConfigBody, &req); err != nil {
		return err
	}
	n := req.ProvisionedConcurrentExecutions
	if n == nil || *n < 1 {
		return nimbus.Errorf(nimbus.ErrValidation, "1 validation error detected: Value at 'provisionedConcurrentExecutions' failed to satisfy constraint: Member must have value greater than or equal to 1")
	}
	fn, err := s.reg.SetConcurrency(r.Context(), name, nil, false, *n)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusAccepted, s.provisioned(fn))
}

func (s *Server) provisioned(fn *nimbus.Function) provisionedResponse {
	avail := 0
	if s.cfg.Invoker != nil {
		avail = min(s.cfg.Invoker.Warm(fn.Name), fn.ProvisionedConcurrency)
	}
	status := "IN_PROGRESS"
	if avail >= fn.ProvisionedConcurrency {
		status = "READY"
	}
	return provisionedResponse{
		RequestedProvisionedConcurrentExecutions: fn.ProvisionedConcurrency,
		AvailableProvisionedConcurrentExecutions: avail,
		AllocatedProvisionedConcurrentExecutions: avail,
		Status:                                   status,
		LastModified:                             fn.LastModified.UTC().Format(lambdaTime),
	}
}

func (s *Server) provisionedGet(w http.ResponseWriter, r *http.Request) error {
	fn, err := s.getFunction(r.Context(), r)
	if err != nil {
		return err
	}
	if fn.ProvisionedConcurrency == 0 {
		return nimbus.Errorf(nimbus.ErrNotFound, "No Provisioned Concurrency Config found for this function")
	}
	return writeJSON(w, http.StatusOK, s.provisioned(fn))
}

func (s *Server) provisionedDelete(w http.ResponseWriter, r *http.Request) error {
	name, err := functionName(r)
	if err != nil {
		return err
	}
	if _, err := s.reg.SetConcurrency(r.Context(), name, nil, false, 0); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
