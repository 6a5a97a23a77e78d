package api

import (
	"net/http"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/auth"
)

// keysRoutes manage access keys; accessOf makes them admin-only.
func (s *Server) keysRoutes() {
	const base = "/nimbus/v1/keys"
	s.handle("POST "+base, s.keysCreate)
	s.handle("GET "+base, s.keysList)
	s.handle("DELETE "+base+"/{key}", s.keysDelete)
	s.handle("POST "+base+"/{key}/rotate", s.keysRotate)
}

type createKeyRequest struct {
	Name      string `json:"Name"`
	Role      string `json:"Role"`
	Functions string `json:"Functions"`
}

func (s *Server) keyService() (KeyService, error) {
	if s.cfg.Keys == nil {
		return nil, nimbus.Errorf(nimbus.ErrNotFound, "Access keys are not managed on this node: it runs with --auth none")
	}
	return s.cfg.Keys, nil
}

// keysCreate issues a key; its secret is in this answer only.
func (s *Server) keysCreate(w http.ResponseWriter, r *http.Request) error {
	ks, err := s.keyService()
	if err != nil {
		return err
	}
	var req createKeyRequest
	if err := decodeStrictLimit(w, r, maxConfigBody, &req); err != nil {
		return err
	}
	noteResource(r, req.Name)
	role, err := auth.ParseRole(req.Role)
	if err != nil {
		return nimbus.Invalidf("%v", err)
	}
	key, err := ks.Create(r.Context(), req.Name, role, req.Functions)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusCreated, key)
}

func (s *Server) keysList(w http.ResponseWriter, r *http.Request) error {
	ks, err := s.keyService()
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, map[string][]auth.Key{"Keys": ks.List()})
}

func (s *Server) keysDelete(w http.ResponseWriter, r *http.Request) error {
	ks, err := s.keyService()
	if err != nil {
		return err
	}
	if err := ks.Delete(r.Context(), r.PathValue("key")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) keysRotate(w http.ResponseWriter, r *http.Request) error {
	ks, err := s.keyService()
	if err != nil {
		return err
	}
	key, err := ks.Rotate(r.Context(), r.PathValue("key"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, key)
}
