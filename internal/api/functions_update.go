package api

import (
	"net/http"
)

type updateCodeRequest struct {
	ZipFile       []byte
	S3Bucket      string
	ImageUri      string
	RevisionId    string
	Architectures []string
	Publish       bool
	DryRun        bool
}

func (s *Server) functionsUpdateCode(w http.ResponseWriter, r *http.Request) error {
	name, err := functionName(r)
	if err != nil {
		return err
	}
	var req updateCodeRequest
	if err := decode(w, r, s.cfg.MaxCodeBody, &req); err != nil {
		return err
	}
	if err := checkUnsupported("", req.S3Bucket, req.ImageUri, nil, req.Architectures); err != nil {
		return err
	}
	fn, err := s.reg.UpdateCode(r.Context(), name, req.ZipFile, req.RevisionId)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, s.configuration(fn))
}

type updateConfigurationRequest struct {
	configurationFields
	RevisionId string
}

func (s *Server) functionsUpdateConfiguration(w http.ResponseWriter, r *http.Request) error {
	name, err := functionName(r)
	if err != nil {
		return err
	}
	var req updateConfigurationRequest
	if err := decode(w, r, maxConfigBody, &req); err != nil {
		return err
	}
	if err := checkUnsupported("", "", "", req.Layers, nil); err != nil {
		return err
	}
	fn, err := s.reg.UpdateConfig(r.Context(), name, req.input(name), req.RevisionId)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, s.configuration(fn))
}

func (s *Server) functionsDelete(w http.ResponseWriter, r *http.Request) error {
	fn, err := s.getFunction(r.Context(), r)
	if err != nil {
		return err
	}
	if err := s.reg.Delete(r.Context(), fn.Name); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
