package api

import (
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/auth"
	"github.com/nimbus-serverless/nimbus/internal/engine"
	"github.com/nimbus-serverless/nimbus/internal/registry"
)

// InstanceLister lists a function's running instances on this node (the
// engine).
type InstanceLister interface {
	Instances(function string) []engine.InstanceInfo
}

func (s *Server) fcInstanceAndTagRoutes() {
	s.fcHandle("GET "+fcPrefix+"/functions/{name}/instances", "ListInstances", s.fcInstancesList)
	s.fcHandle("POST "+fcPrefix+"/tags-v2", "TagResources", s.fcTagResources)
	s.fcHandle("DELETE "+fcPrefix+"/tags-v2", "UntagResources", s.fcUntagResources)
	s.fcHandle("GET "+fcPrefix+"/tags-v2", "ListTagResources", s.fcListTagResources)
}

// fcInstance is Function Compute's InstanceInfo.
type fcInstance struct {
	InstanceID string `json:"instanceId"`
	VersionID  string `json:"versionId"`
	Qualifier  string `json:"qualifier,omitempty"`
	Status     string `json:"status"`
}

// fcJSONList reads a query parameter that the SDK sends as a JSON array
// of strings; "" is none.
func fcJSONList(r *http.Request, name string) ([]string, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return nil, nil
	}
	var out []string
	if err := json.Unmarshal([]byte(v), &out); err != nil {
		return nil, fcInvalid("%s %q is invalid: it must be a JSON array of strings", name, v)
	}
	return out, nil
}

// fcInstancesList is ListInstances: the function's running instances on
// the node that answers (instanceId, versionId, status Running), those of
// the version qualifier names (an alias: the version it points at;
// LATEST: the function itself) when given, instanceIds and
// instanceStatus filtering, in instance id order from startKey, limit
// (1 to 100, default 20). Nimbus keeps no history of stopped instances:
// startTimeMs and endTimeMs are refused.
func (s *Server) fcInstancesList(w http.ResponseWriter, r *http.Request) error {
	fn, err := s.fcFunction(r)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	for _, k := range []string{"startTimeMs", "endTimeMs"} {
		if q.Get(k) != "" {
			return fcInvalid("%s is not supported: Nimbus lists the instances running now, and keeps no history of stopped ones", k)
		}
	}
	limit, err := fcLimit(q.Get("limit"))
	if err != nil {
		return err
	}
	ids, err := fcJSONList(r, "instanceIds")
	if err != nil {
		return err
	}
	statuses, err := fcJSONList(r, "instanceStatus")
	if err != nil {
		return err
	}
	version, qualifier := "", q.Get("qualifier")
	switch {
	case qualifier == "LATEST" || qualifier == nimbus.Latest:
		version = nimbus.Latest
	case qualifier != "":
		if !registry.HasQualifier(fn, qualifier) {
			return fcQualifierNotFound(fn.Name, qualifier)
		}
		version = registry.AliasVersion(fn, qualifier)
	}
	if s.cfg.Instances == nil {
		return newError(http.StatusInternalServerError, errService, "this node runs no engine")
	}
	all := s.cfg.Instances.Instances(fn.Name)
	slices.SortFunc(all, func(a, b engine.InstanceInfo) int { return strings.Compare(a.ID, b.ID) })
	out := struct {
		Instances []fcInstance `json:"instances"`
		RequestID string       `json:"requestId"`
	}{Instances: []fcInstance{}, RequestID: w.Header().Get("X-Fc-Request-Id")}
	for _, in := range all {
		v := fcInstance{InstanceID: in.ID, VersionID: in.Version, Qualifier: qualifier, Status: "Running"}
		if v.VersionID == "" {
			v.VersionID = "LATEST"
		}
		switch {
		case qualifier != "" && in.Version != version && !(version == nimbus.Latest && in.Version == ""):
		case len(ids) > 0 && !slices.Contains(ids, in.ID):
		case len(statuses) > 0 && !slices.Contains(statuses, v.Status):
		case in.ID < q.Get("startKey"):
		case len(out.Instances) < limit:
			out.Instances = append(out.Instances, v)
		}
	}
	return fcWriteJSON(w, http.StatusOK, out)
}

// fcTagKV is a tag of TagResources' body and of ListTagResources' filter.
type fcTagKV = fcTag

// fcResourceFunction is the function a tags-v2 resource names: resource
// type FUNCTION (also written function, ALIYUN::FC:FUNCTION or
// ALIYUN::FC::FUNCTION), id a function's name or ARN.
func (s *Server) fcResourceFunction(typ, id string) (string, error) {
	switch strings.ToUpper(typ) {
	case "FUNCTION", "ALIYUN::FC:FUNCTION", "ALIYUN::FC::FUNCTION":
	case "":
		return "", fcInvalid("ResourceType is required: FUNCTION")
	default:
		return "", fcInvalid("ResourceType %q is not supported: Nimbus tags functions only (FUNCTION)", typ)
	}
	name := id
	if rest, ok := strings.CutPrefix(id, "acs:fc:"); ok {
		_, fnPart, _ := strings.Cut(rest, ":functions/")
		name = fnPart
		if strings.Contains(name, "/") {
			return "", fcInvalid("ResourceId %q is invalid: tags apply to a function, not to a version or alias", id)
		}
	}
	if !registry.ValidName(name) {
		return "", fcInvalid("ResourceId %q is not a function name or ARN", id)
	}
	return name, nil
}

// fcTaggedFunctions resolves the resources of a tags-v2 request, checking
// the caller may act on each (access) and that each exists.
func (s *Server) fcTaggedFunctions(r *http.Request, typ string, ids []string, access auth.Access) ([]string, error) {
	var names []string
	for _, id := range ids {
		name, err := s.fcResourceFunction(typ, id)
		if err != nil {
			return nil, err
		}
		if err := allow(r, access, name); err != nil {
			return nil, err
		}
		if _, err := s.reg.Get(r.Context(), name); err != nil {
			return nil, fcNotFound(err, fcFunctionNotFound)
		}
		names = append(names, name)
	}
	return names, nil
}

// fcTagResources is TagResources: tags on functions (ResourceType
// FUNCTION, ResourceId their names or ARNs), Nimbus's function tags (the
// Lambda dialect's, at most 50 per function).
func (s *Server) fcTagResources(w http.ResponseWriter, r *http.Request) error {
	var req struct {
		ResourceType string    `json:"ResourceType"`
		ResourceID   []string  `json:"ResourceId"`
		Tag          []fcTagKV `json:"Tag"`
	}
	if err := fcDecode(w, r, maxConfigBody, &req); err != nil {
		return err
	}
	if len(req.ResourceID) == 0 {
		return fcInvalid("ResourceId is required")
	}
	if len(req.Tag) == 0 {
		return fcInvalid("Tag is required")
	}
	tags := map[string]string{}
	for _, t := range req.Tag {
		if t.Key == "" {
			return fcInvalid("a Tag's Key is required")
		}
		tags[t.Key] = t.Value
	}
	if err := registry.ValidateTags(tags); err != nil {
		return fcInvalid("%s", kind(err).msg)
	}
	names, err := s.fcTaggedFunctions(r, req.ResourceType, req.ResourceID, auth.Manage)
	if err != nil {
		return err
	}
	for _, name := range names {
		if _, err := s.reg.Tag(r.Context(), name, tags, nil); err != nil {
			return s.fcTagError(err)
		}
	}
	w.WriteHeader(http.StatusOK)
	return nil
}

// fcTagError maps the registry's tag errors.
func (s *Server) fcTagError(err error) error {
	if k := kind(err); k.status == http.StatusBadRequest {
		return fcInvalid("%s", k.msg)
	}
	return fcNotFound(err, fcFunctionNotFound)
}

// fcUntagResources is UntagResources: TagKey (a JSON array) or All=true
// removes tags from the functions ResourceId names.
func (s *Server) fcUntagResources(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	ids, err := fcJSONList(r, "ResourceId")
	if err != nil {
		return err
	}
	keys, err := fcJSONList(r, "TagKey")
	if err != nil {
		return err
	}
	all := false
	if v := q.Get("All"); v != "" {
		if all, err = strconv.ParseBool(v); err != nil {
			return fcInvalid("All %q is invalid: true or false", v)
		}
	}
	switch {
	case len(ids) == 0:
		return fcInvalid("ResourceId is required")
	case len(keys) == 0 && !all:
		return fcInvalid("TagKey is required unless All is true")
	}
	names, err := s.fcTaggedFunctions(r, q.Get("ResourceType"), ids, auth.Manage)
	if err != nil {
		return err
	}
	for _, name := range names {
		untag := keys
		if all {
			fn, err := s.reg.Get(r.Context(), name)
			if err != nil {
				return fcNotFound(err, fcFunctionNotFound)
			}
			untag = nil
			for k := range fn.Tags {
				untag = append(untag, k)
			}
		}
		if _, err := s.reg.Tag(r.Context(), name, nil, untag); err != nil {
			return s.fcTagError(err)
		}
	}
	w.WriteHeader(http.StatusOK)
	return nil
}

// fcTagResource is Function Compute's TagResource (one tag of one
// resource).
type fcTagResource struct {
	ResourceID   string `json:"ResourceId"`
	ResourceType string `json:"ResourceType"`
	TagKey       string `json:"TagKey"`
	TagValue     string `json:"TagValue"`
}

// fcListTagResources is ListTagResources: the tags of the functions
// ResourceId names, or of every function the caller sees, filtered by
// Tag (a JSON array of {Key, Value}: a function must have each, a Value
// of "" matching any value); one item per tag, in function and key order,
// Limit (1 to 100, default 20) from NextToken.
func (s *Server) fcListTagResources(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	ids, err := fcJSONList(r, "ResourceId")
	if err != nil {
		return err
	}
	var filter []fcTagKV
	if v := q.Get("Tag"); v != "" {
		if err := json.Unmarshal([]byte(v), &filter); err != nil {
			return fcInvalid("Tag %q is invalid: it must be a JSON array of {\"Key\", \"Value\"}", v)
		}
	}
	limit, err := fcLimit(q.Get("Limit"))
	if err != nil {
		return err
	}
	typ := q.Get("ResourceType")
	var fns []*nimbus.Function
	if len(ids) > 0 {
		names, err := s.fcTaggedFunctions(r, typ, ids, auth.Read)
		if err != nil {
			return err
		}
		for _, name := range names {
			fn, err := s.reg.Get(r.Context(), name)
			if err != nil {
				return fcNotFound(err, fcFunctionNotFound)
			}
			fns = append(fns, fn)
		}
		slices.SortFunc(fns, func(a, b *nimbus.Function) int { return strings.Compare(a.Name, b.Name) })
	} else {
		if _, err := s.fcResourceFunction(typ, "x"); err != nil {
			return err
		}
		if fns, err = s.reg.List(r.Context()); err != nil {
			return err
		}
	}
	out := struct {
		TagResources []fcTagResource `json:"TagResources"`
		NextToken    string          `json:"NextToken,omitempty"`
		RequestID    string          `json:"RequestId"`
	}{TagResources: []fcTagResource{}, RequestID: w.Header().Get("X-Fc-Request-Id")}
	tokName, tokKey, _ := strings.Cut(q.Get("NextToken"), "/")
	for _, fn := range fns {
		if !sees(r, fn.Name) || !fcTagsMatch(fn.Tags, filter) {
			continue
		}
		keys := slices.Sorted(func(yield func(string) bool) {
			for k := range fn.Tags {
				if !yield(k) {
					return
				}
			}
		})
		for _, k := range keys {
			if fn.Name < tokName || fn.Name == tokName && k < tokKey {
				continue
			}
			if len(out.TagResources) == limit {
				out.NextToken = fn.Name + "/" + k
				return fcWriteJSON(w, http.StatusOK, out)
			}
			out.TagResources = append(out.TagResources, fcTagResource{ResourceID: s.fcARN(fn.Name), ResourceType: "FUNCTION", TagKey: k, TagValue: fn.Tags[k]})
		}
	}
	return fcWriteJSON(w, http.StatusOK, out)
}

// fcTagsMatch reports whether tags has every tag of filter (an empty
// Value matching any).
func fcTagsMatch(tags map[string]string, filter []fcTagKV) bool {
	for _, f := range filter {
		v, ok := tags[f.Key]
		if !ok || (f.Value != "" && v != f.Value) {
			return false
		}
	}
	return true
}
