package api

import (
	"errors"
	"maps"
	"net/http"
	"strings"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/auth"
	"github.com/nimbus-serverless/nimbus/internal/registry"
)

// Lambda's tag operations, on functions: TagResource, UntagResource and
// ListTags. The resource is a function's ARN in the path ({ARN}, not
// {name}), so each handler authorizes the function itself.

const tagsPath = "/2017-03-31/tags/{ARN}"

func init() {
	maps.Copy(actions, map[string]string{
		"POST " + tagsPath:   "TagResource",
		"DELETE " + tagsPath: "UntagResource",
	})
}

func (s *Server) tagRoutes() {
	s.handle("POST "+tagsPath, s.tagResource)
	s.handle("DELETE "+tagsPath, s.untagResource)
	s.handle("GET "+tagsPath, s.listTags)
}

// taggedFunction parses the {ARN} of a tags route, checks the caller's
// access to its function, and loads it. Nimbus tags functions only; a
// version's or alias's ARN is refused, as Lambda tags the function.
func (s *Server) taggedFunction(r *http.Request, access auth.Access) (*nimbus.Function, error) {
	arn := r.PathValue("ARN")
	rest, ok := strings.CutPrefix(arn, "arn:")
	if !ok || !strings.Contains(rest, ":lambda:") {
		return nil, nimbus.Errorf(nimbus.ErrValidation, "1 validation error detected: Value '%s' at 'resource' failed to satisfy constraint: Member must satisfy regular expression pattern: arn:(aws[a-zA-Z-]*):lambda:[a-z]{2}(-gov)?-[a-z]+-\\d{1}:\\d{12}:function:[a-zA-Z0-9-_]+", arn)
	}
	prefix := "arn:aws:lambda:" + s.cfg.Region + ":" + s.cfg.Account + ":function:"
	name, ok := strings.CutPrefix(arn, prefix)
	if !ok {
		if strings.Contains(arn, ":function:") {
			return nil, nimbus.Errorf(nimbus.ErrNotFound, "Function not found: %s (this node serves region %s, account %s)", arn, s.cfg.Region, s.cfg.Account)
		}
		return nil, nimbus.Invalidf("Nimbus tags functions only: %s is not a function ARN (%s<name>)", arn, prefix)
	}
	if strings.Contains(name, ":") {
		return nil, nimbus.Invalidf("Tags apply to a function, not to a version or alias: use the unqualified ARN %s%s", prefix, auth.FunctionName(name))
	}
	if err := registry.ValidateName(name); err != nil {
		return nil, err
	}
	if err := allow(r, access, name); err != nil {
		return nil, err
	}
	fn, err := s.reg.Get(r.Context(), name)
	if errors.Is(err, nimbus.ErrNotFound) {
		return nil, nimbus.Errorf(nimbus.ErrNotFound, "Function not found: %s", arn)
	}
	return fn, err
}

type tagResourceRequest struct {
	Tags map[string]string
}

// tagResource is TagResource: the tags given are added, replacing the
// values of keys the function has. The RevisionId does not change.
func (s *Server) tagResource(w http.ResponseWriter, r *http.Request) error {
	fn, err := s.taggedFunction(r, auth.Manage)
	if err != nil {
		return err
	}
	var req tagResourceRequest
	if err := decodeStrictLimit(w, r, maxConfigBody, &req); err != nil {
		return err
	}
	if len(req.Tags) == 0 {
		return nimbus.Errorf(nimbus.ErrValidation, "1 validation error detected: Value null at 'tags' failed to satisfy constraint: Member must not be null")
	}
	if err := registry.ValidateTags(req.Tags); err != nil {
		return err
	}
	if _, err := s.reg.Tag(r.Context(), fn.Name, req.Tags, nil); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// untagResource is UntagResource: ?tagKeys=a&tagKeys=b removes those keys
// (keys the function lacks are ignored, as in Lambda).
func (s *Server) untagResource(w http.ResponseWriter, r *http.Request) error {
	fn, err := s.taggedFunction(r, auth.Manage)
	if err != nil {
		return err
	}
	keys := r.URL.Query()["tagKeys"]
	if len(keys) == 0 {
		return nimbus.Errorf(nimbus.ErrValidation, "1 validation error detected: Value null at 'tagKeys' failed to satisfy constraint: Member must not be null")
	}
	if len(keys) > registry.MaxTags {
		return nimbus.Errorf(nimbus.ErrValidation, "1 validation error detected: Value at 'tagKeys' failed to satisfy constraint: Member must have length less than or equal to %d", registry.MaxTags)
	}
	if _, err := s.reg.Tag(r.Context(), fn.Name, nil, keys); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) listTags(w http.ResponseWriter, r *http.Request) error {
	fn, err := s.taggedFunction(r, auth.Read)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, struct{ Tags map[string]string }{tagsOf(fn)})
}

// tagsOf is a function's tags as Lambda shows them: never null.
func tagsOf(fn *nimbus.Function) map[string]string {
	if fn.Tags == nil {
		return map[string]string{}
	}
	return fn.Tags
}
