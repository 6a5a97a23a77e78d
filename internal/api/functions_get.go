package api

import (
	"io"
	"net/http"
	"strconv"

	"github.com/nimbus-serverless/nimbus"
)

type getFunctionResponse struct {
	Configuration functionConfiguration
	Code          struct {
		RepositoryType   string
		Location         string `json:",omitempty"`
		ImageUri         string `json:",omitempty"`
		ResolvedImageUri string `json:",omitempty"`
	}
	Concurrency *concurrency `json:",omitempty"`
	Tags        map[string]string
}

type concurrency struct {
	ReservedConcurrentExecutions *int `json:"ReservedConcurrentExecutions,omitempty"`
}

func (s *Server) functionsGet(w http.ResponseWriter, r *http.Request) error {
	fn, err := s.qualified(r.Context(), r, false)
	if err != nil {
		return err
	}
	resp := getFunctionResponse{Configuration: s.configuration(fn), Tags: tagsOf(fn)}
	if fn.IsImage() && fn.Image != nil {
		// As Lambda answers for an image (its registry is any, not ECR).
		resp.Code.RepositoryType = "ECR"
		resp.Code.ImageUri, resp.Code.ResolvedImageUri = fn.Image.URI, fn.Image.Resolved
	} else {
		resp.Code.RepositoryType = "S3"
		resp.Code.Location = s.codeURL(r, fn)
	}
	if fn.ReservedConcurrency != nil {
		resp.Concurrency = &concurrency{ReservedConcurrentExecutions: fn.ReservedConcurrency}
	}
	return writeJSON(w, http.StatusOK, resp)
}

func (s *Server) functionsGetConfiguration(w http.ResponseWriter, r *http.Request) error {
	fn, err := s.qualified(r.Context(), r, false)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, s.configuration(fn))
}

// codeDownload serves a function's zip package (GetFunction's Code.Location).
func (s *Server) codeDownload(w http.ResponseWriter, r *http.Request) error {
	fn, err := s.qualified(r.Context(), r, false)
	if err != nil {
		return err
	}
	if fn.IsImage() {
		return nimbus.Errorf(nimbus.ErrNotFound, "Function %s runs an image: it has no code package to download", fn.Name)
	}
	rc, err := s.reg.Code(r.Context(), fn.CodeSHA256)
	if err != nil {
		return err
	}
	defer rc.Close()
	w.Header().Set("Content-Type", "application/zip")
	w.Header().Set("Content-Length", strconv.FormatInt(fn.CodeSize, 10))
	_, err = io.Copy(w, rc)
	if err != nil {
		s.log.Warn("send code", nimbus.LogFunction, fn.Name, nimbus.LogErr, err)
	}
	return nil
}

type listFunctionsResponse struct {
	Functions  []functionConfiguration
	NextMarker *string `json:",omitempty"`
}

// maxListItems is Lambda's page size cap for ListFunctions.
const maxListItems = 10000

func (s *Server) functionsList(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	maxItems := 50
	if v := q.Get("MaxItems"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxListItems {
			return nimbus.Errorf(nimbus.ErrValidation,
				"1 validation error detected: Value '%s' at 'maxItems' failed to satisfy constraint: Member must have value between 1 and %d", v, maxListItems)
		}
		maxItems = n
	}
	marker := q.Get("Marker")
	if !validMarker(marker) {
		return nimbus.Invalidf("Marker %q is not a marker returned by ListFunctions", marker)
	}
	fns, more, err := s.pageSeen(r, marker, maxItems)
	if err != nil {
		return err
	}
	resp := listFunctionsResponse{Functions: make([]functionConfiguration, 0, len(fns))}
	for _, fn := range fns {
		resp.Functions = append(resp.Functions, s.configuration(fn))
	}
	if more && len(fns) > 0 {
		next := fns[len(fns)-1].Name
		resp.NextMarker = &next
	}
	return writeJSON(w, http.StatusOK, resp)
}

// pageSeen is registry.Page keeping the functions the caller may see: a
// key restricted to some functions reads pages of those only.
func (s *Server) pageSeen(r *http.Request, marker string, limit int) ([]*nimbus.Function, bool, error) {
	var out []*nimbus.Function
	for {
		fns, more, err := s.reg.Page(r.Context(), marker, limit)
		if err != nil {
			return nil, false, err
		}
		for i, fn := range fns {
			if !sees(r, fn.Name) {
				continue
			}
			out = append(out, fn)
			if len(out) == limit {
				return out, more || i < len(fns)-1, nil
			}
		}
		if !more || len(fns) == 0 {
			return out, false, nil
		}
		marker = fns[len(fns)-1].Name
	}
}

// validMarker: markers are function names (the last one of the page).
func validMarker(m string) bool {
	for _, c := range m {
		if !(c == '-' || c == '_' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
			return false
		}
	}
	return len(m) <= 64
}

func (s *Server) runtimesList(w http.ResponseWriter, r *http.Request) error {
	return writeJSON(w, http.StatusOK, map[string][]string{"Runtimes": s.reg.Runtimes()})
}
