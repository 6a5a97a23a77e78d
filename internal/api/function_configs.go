package api

import (
	"maps"
	"net/http"

	"github.com/nimbus-serverless/nimbus"
)

// A function's small settings: its recursion config, its runtime
// management config, and code signing, which Nimbus does not do: there is
// no code signing config, and making one is refused.

const (
	recursionPath      = "/2024-08-31/functions/{name}/recursion-config"
	runtimeMgmtPath    = "/2021-07-20/functions/{name}/runtime-management-config"
	fnCodeSigningPath  = "/2020-06-30/functions/{name}/code-signing-config"
	codeSigningConfigs = "/2020-04-22/code-signing-configs"
)

func init() {
	maps.Copy(actions, map[string]string{
		"PUT " + recursionPath:                    "PutFunctionRecursionConfig",
		"PUT " + runtimeMgmtPath:                  "PutRuntimeManagementConfig",
		"PUT " + fnCodeSigningPath:                "PutFunctionCodeSigningConfig",
		"DELETE " + fnCodeSigningPath:             "DeleteFunctionCodeSigningConfig",
		"POST " + codeSigningConfigs:              "CreateCodeSigningConfig",
		"POST " + codeSigningConfigs + "/{$}":     "CreateCodeSigningConfig",
		"PUT " + codeSigningConfigs + "/{csc}":    "UpdateCodeSigningConfig",
		"DELETE " + codeSigningConfigs + "/{csc}": "DeleteCodeSigningConfig",
	})
}

func (s *Server) functionConfigRoutes() {
	s.handle("GET "+recursionPath, s.recursionGet)
	s.handle("PUT "+recursionPath, s.recursionPut)
	s.handle("GET "+runtimeMgmtPath, s.runtimeMgmtGet)
	s.handle("PUT "+runtimeMgmtPath, s.runtimeMgmtPut)
	s.handle("GET "+fnCodeSigningPath, s.fnCodeSigningGet)
	s.handle("PUT "+fnCodeSigningPath, s.fnCodeSigningPut)
	s.handle("DELETE "+fnCodeSigningPath, s.fnCodeSigningDelete)
	s.handle("GET "+codeSigningConfigs, s.codeSigningList)
	s.handle("GET "+codeSigningConfigs+"/{$}", s.codeSigningList)
	s.handle("POST "+codeSigningConfigs, s.codeSigningCreate)
	s.handle("POST "+codeSigningConfigs+"/{$}", s.codeSigningCreate)
	s.handle("GET "+codeSigningConfigs+"/{csc}", s.codeSigningNotFound)
	s.handle("PUT "+codeSigningConfigs+"/{csc}", s.codeSigningNotFound)
	s.handle("DELETE "+codeSigningConfigs+"/{csc}", s.codeSigningNotFound)
	s.handle("GET "+codeSigningConfigs+"/{csc}/functions", s.codeSigningNotFound)
}

type recursionConfig struct {
	RecursiveLoop string
}

// recursionGet is GetFunctionRecursionConfig: Terminate unless set to
// Allow. Nimbus stores the setting; it does not detect recursive loops
// (docs/functions.md).
func (s *Server) recursionGet(w http.ResponseWriter, r *http.Request) error {
	fn, err := s.getFunction(r.Context(), r)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, recursionConfig{RecursiveLoop: recursiveLoop(fn)})
}

func recursiveLoop(fn *nimbus.Function) string {
	if fn.RecursiveLoop == "" {
		return nimbus.RecursiveLoopTerminate
	}
	return fn.RecursiveLoop
}

func (s *Server) recursionPut(w http.ResponseWriter, r *http.Request) error {
	name, err := functionName(r)
	if err != nil {
		return err
	}
	var req recursionConfig
	if err := decodeStrictLimit(w, r, maxConfigBody, &req); err != nil {
		return err
	}
	fn, err := s.reg.SetRecursiveLoop(r.Context(), name, req.RecursiveLoop)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, recursionConfig{RecursiveLoop: recursiveLoop(fn)})
}

type runtimeMgmtRequest struct {
	UpdateRuntimeOn   string
	RuntimeVersionArn *string
}

type runtimeMgmtResponse struct {
	UpdateRuntimeOn string
	FunctionArn     string
	// RuntimeVersionArn is always null: Nimbus has one version of each
	// runtime, the one the node runs, and no ARN for it.
	RuntimeVersionArn *string
}

func (s *Server) runtimeMgmt(fn *nimbus.Function) runtimeMgmtResponse {
	on := fn.UpdateRuntimeOn
	if on == "" {
		on = nimbus.UpdateRuntimeAuto
	}
	return runtimeMgmtResponse{UpdateRuntimeOn: on, FunctionArn: s.arn(fn.Name)}
}

func (s *Server) runtimeMgmtGet(w http.ResponseWriter, r *http.Request) error {
	fn, err := s.getFunction(r.Context(), r)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, s.runtimeMgmt(fn))
}

// runtimeMgmtPut is PutRuntimeManagementConfig: Auto and FunctionUpdate
// are stored (a node runs one version of each runtime: both mean the
// node's); Manual, which pins a runtime version, is refused.
func (s *Server) runtimeMgmtPut(w http.ResponseWriter, r *http.Request) error {
	fn, err := s.getFunction(r.Context(), r)
	if err != nil {
		return err
	}
	var req runtimeMgmtRequest
	if err := decodeStrictLimit(w, r, maxConfigBody, &req); err != nil {
		return err
	}
	switch req.UpdateRuntimeOn {
	case "":
		return nimbus.Errorf(nimbus.ErrValidation, "1 validation error detected: Value null at 'updateRuntimeOn' failed to satisfy constraint: Member must not be null")
	case nimbus.UpdateRuntimeManual:
		return nimbus.Invalidf("UpdateRuntimeOn Manual is not supported: Nimbus has one version of each runtime, the one the node runs, and cannot pin another. Use Auto or FunctionUpdate")
	case nimbus.UpdateRuntimeAuto, nimbus.UpdateRuntimeOnFunctionUpdate:
		if req.RuntimeVersionArn != nil && *req.RuntimeVersionArn != "" {
			return nimbus.Invalidf("RuntimeVersionArn can be given only with UpdateRuntimeOn Manual")
		}
	}
	fn, err = s.reg.SetUpdateRuntimeOn(r.Context(), fn.Name, req.UpdateRuntimeOn)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, s.runtimeMgmt(fn))
}

// errNoCodeSigning is the message of the code signing operations that
// would make or set a code signing config.
const errNoCodeSigning = "Nimbus does not verify code signatures: it has no code signing configs (AWS Signer is not available). Deploy without CodeSigningConfigArn"

// fnCodeSigningGet is GetFunctionCodeSigningConfig: a function never has
// one, which Lambda answers with an empty ARN.
func (s *Server) fnCodeSigningGet(w http.ResponseWriter, r *http.Request) error {
	fn, err := s.getFunction(r.Context(), r)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, struct{ CodeSigningConfigArn, FunctionName string }{"", fn.Name})
}

func (s *Server) fnCodeSigningPut(w http.ResponseWriter, r *http.Request) error {
	return nimbus.Invalidf("%s", errNoCodeSigning) // for any function: none can have one
}

// fnCodeSigningDelete is DeleteFunctionCodeSigningConfig: there is
// nothing to remove, so it succeeds, as it does in Lambda for a function
// without one.
func (s *Server) fnCodeSigningDelete(w http.ResponseWriter, r *http.Request) error {
	if _, err := s.getFunction(r.Context(), r); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// codeSigningList is ListCodeSigningConfigs: always empty.
func (s *Server) codeSigningList(w http.ResponseWriter, r *http.Request) error {
	return writeJSON(w, http.StatusOK, struct{ CodeSigningConfigs []struct{} }{[]struct{}{}})
}

func (s *Server) codeSigningCreate(w http.ResponseWriter, r *http.Request) error {
	return nimbus.Invalidf("%s", errNoCodeSigning)
}

// codeSigningNotFound answers the operations on one code signing config:
// none exists.
func (s *Server) codeSigningNotFound(w http.ResponseWriter, r *http.Request) error {
	return nimbus.Errorf(nimbus.ErrNotFound, "Code signing config %s not found: Nimbus has no code signing configs", r.PathValue("csc"))
}
