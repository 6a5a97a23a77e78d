package api

import (
	"net/http"

	"github.com/nimbus-serverless/nimbus"
)

type updateCodeRequest struct {
	ZipFile         []byte
	S3Bucket        string
	S3Key           string
	S3ObjectVersion string
	ImageUri        string
	SourceKMSKeyArn string
	RevisionId      string
	Architectures   []string
	Publish         bool
	PublishTo       string
	DryRun          bool
}

// unsupported refuses what UpdateFunctionCode asks for and Nimbus lacks.
func (req *updateCodeRequest) unsupported() error {
	switch {
	case req.S3Bucket != "" || req.S3Key != "" || req.S3ObjectVersion != "":
		return nimbus.Invalidf("S3Bucket is not supported: upload the package as ZipFile")
	case req.ImageUri != "" && len(req.ZipFile) > 0:
		return nimbus.Invalidf("Give ZipFile or ImageUri, not both")
	case req.SourceKMSKeyArn != "":
		return nimbus.Invalidf("SourceKMSKeyArn is not supported: Nimbus has no AWS KMS")
	case req.DryRun:
		return nimbus.Invalidf("DryRun is not supported yet: Nimbus validates a package when it stores it")
	}
	if err := checkPublish(req.Publish, req.PublishTo); err != nil {
		return err
	}
	return checkArchitectures(req.Architectures)
}

func (s *Server) functionsUpdateCode(w http.ResponseWriter, r *http.Request) error {
	name, err := functionName(r)
	if err != nil {
		return err
	}
	var req updateCodeRequest
	if err := decodeStrictLimit(w, r, s.cfg.MaxCodeBody, &req); err != nil {
		return err
	}
	if err := req.unsupported(); err != nil {
		return err
	}
	var fn *nimbus.Function
	if req.ImageUri != "" {
		fn, err = s.reg.UpdateImage(r.Context(), name, req.ImageUri, req.RevisionId)
	} else {
		fn, err = s.reg.UpdateCode(r.Context(), name, req.ZipFile, req.RevisionId)
	}
	if err == nil && req.Publish {
		fn, err = s.publishSettled(r.Context(), name)
	}
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
	if err := decodeStrictLimit(w, r, maxConfigBody, &req); err != nil {
		return err
	}
	if err := req.unsupportedFields.check(); err != nil {
		return err
	}
	in := req.input(name)
	if err := s.checkDeadLetter(r.Context(), in); err != nil {
		return err
	}
	fn, err := s.reg.UpdateConfig(r.Context(), name, in, req.RevisionId)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, s.configuration(fn))
}

func (s *Server) functionsDelete(w http.ResponseWriter, r *http.Request) error {
	if q := r.URL.Query().Get("Qualifier"); q != "" {
		return s.versionDelete(w, r, q)
	}
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
