package api

import (
	"errors"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/registry"
)

// Function Compute's versions and aliases over Nimbus's published versions
// and weighted aliases (registry.Publish, CreateAlias, ...), the same the
// Lambda dialect's PublishVersion and aliases make.

func (s *Server) fcVersionRoutes() {
	const fn = fcPrefix + "/functions/{name}"
	s.fcHandle("POST "+fn+"/versions", "PublishFunctionVersion", s.fcVersionsPublish)
	s.fcHandle("GET "+fn+"/versions", "ListFunctionVersions", s.fcVersionsList)
	s.fcHandle("DELETE "+fn+"/versions/{id}", "DeleteFunctionVersion", s.fcVersionsDelete)
	s.fcHandle("POST "+fn+"/aliases", "CreateAlias", s.fcAliasesCreate)
	s.fcHandle("GET "+fn+"/aliases", "ListAliases", s.fcAliasesList)
	s.fcHandle("GET "+fn+"/aliases/{alias}", "GetAlias", s.fcAliasesGet)
	s.fcHandle("PUT "+fn+"/aliases/{alias}", "UpdateAlias", s.fcAliasesUpdate)
	s.fcHandle("DELETE "+fn+"/aliases/{alias}", "DeleteAlias", s.fcAliasesDelete)
}

const fcAliasAlreadyExists = "AliasAlreadyExists"

// fcVersion is Function Compute's Version.
type fcVersion struct {
	VersionID        string `json:"versionId"`
	Description      string `json:"description"`
	CreatedTime      string `json:"createdTime"`
	LastModifiedTime string `json:"lastModifiedTime"`
}

func fcVersionView(v *nimbus.Function) fcVersion {
	return fcVersion{VersionID: v.Version, Description: v.Description,
		CreatedTime: fcTime(v.LastModified), LastModifiedTime: fcTime(v.LastModified)}
}

// fcVersionsPublish is PublishFunctionVersion: the function's code and
// configuration as a new version, or the latest version when nothing
// changed since it (as Nimbus's Publish does).
func (s *Server) fcVersionsPublish(w http.ResponseWriter, r *http.Request) error {
	fn, err := s.fcFunction(r)
	if err != nil {
		return err
	}
	var req struct {
		Description *string `json:"description"`
	}
	if r.ContentLength != 0 {
		if err := fcDecode(w, r, maxConfigBody, &req); err != nil {
			return err
		}
	}
	in := registry.PublishInput{}
	if req.Description != nil {
		if len(*req.Description) > 256 {
			return fcInvalid("description is longer than 256 characters")
		}
		in.Description = *req.Description
	}
	v, err := s.reg.Publish(r.Context(), fn.Name, in)
	if err != nil {
		return fcNotFound(err, fcFunctionNotFound)
	}
	return fcWriteJSON(w, http.StatusOK, fcVersionView(v))
}

// fcVersionsList is ListFunctionVersions: the published versions, newest
// first (direction BACKWARD, the default) or oldest first (FORWARD), in
// pages of limit (1 to 100, default 20) from nextToken (a version number).
func (s *Server) fcVersionsList(w http.ResponseWriter, r *http.Request) error {
	fn, err := s.fcFunction(r)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	limit, err := fcLimit(q.Get("limit"))
	if err != nil {
		return err
	}
	dir := q.Get("direction")
	switch dir {
	case "":
		dir = "BACKWARD"
	case "BACKWARD", "FORWARD":
	default:
		return fcInvalid("direction %q is invalid: it must be FORWARD or BACKWARD", dir)
	}
	nums := make([]int, 0, len(fn.Versions))
	for _, v := range fn.Versions {
		nums = append(nums, v.Number)
	}
	slices.Sort(nums)
	if dir == "BACKWARD" {
		slices.Reverse(nums)
	}
	from := -1
	if t := q.Get("nextToken"); t != "" {
		if from, err = strconv.Atoi(t); err != nil {
			return fcInvalid("nextToken %q is invalid: pass the nextToken of a previous answer", t)
		}
	}
	out := struct {
		Versions  []fcVersion `json:"versions"`
		Direction string      `json:"direction"`
		NextToken string      `json:"nextToken,omitempty"`
	}{Versions: []fcVersion{}, Direction: dir}
	for _, n := range nums {
		if from >= 0 && (dir == "BACKWARD" && n > from || dir == "FORWARD" && n < from) {
			continue
		}
		if len(out.Versions) == limit {
			out.NextToken = strconv.Itoa(n)
			break
		}
		v, err := s.reg.Version(r.Context(), fn.Name, n)
		if errors.Is(err, nimbus.ErrNotFound) {
			continue // deleted meanwhile
		}
		if err != nil {
			return err
		}
		out.Versions = append(out.Versions, fcVersionView(v))
	}
	return fcWriteJSON(w, http.StatusOK, out)
}

// fcVersionsDelete is DeleteFunctionVersion: not one an alias routes to
// (ResourceConflict).
func (s *Server) fcVersionsDelete(w http.ResponseWriter, r *http.Request) error {
	fn, err := s.fcFunction(r)
	if err != nil {
		return err
	}
	id := r.PathValue("id")
	n, err := strconv.Atoi(id)
	if err != nil || !isVersionNumber(id) {
		return fcErr(http.StatusNotFound, fcVersionNotFound, "version '"+id+"' of function '"+fn.Name+"' does not exist")
	}
	if err := s.reg.DeleteVersion(r.Context(), fn.Name, n); err != nil {
		if errors.Is(err, nimbus.ErrNotFound) {
			return fcQualifierNotFound(fn.Name, id)
		}
		return err
	}
	return fcNoContent(w)
}

// fcAliasInput is CreateAlias's and UpdateAlias's body.
type fcAliasInput struct {
	AliasName               *string             `json:"aliasName"`
	VersionID               *string             `json:"versionId"`
	Description             *string             `json:"description"`
	AdditionalVersionWeight *map[string]float64 `json:"additionalVersionWeight"`
}

// registryInput is the alias input of req; LATEST is $LATEST.
func (req *fcAliasInput) registryInput() registry.AliasInput {
	in := registry.AliasInput{Description: req.Description}
	if req.VersionID != nil {
		v := *req.VersionID
		if v == "LATEST" {
			v = nimbus.Latest
		}
		in.FunctionVersion = &v
	}
	if req.AdditionalVersionWeight != nil {
		in.Weights = map[string]float64{}
		for k, w := range *req.AdditionalVersionWeight {
			in.Weights[k] = w
		}
	}
	return in
}

// fcAlias is Function Compute's Alias.
type fcAlias struct {
	AliasName               string             `json:"aliasName"`
	VersionID               string             `json:"versionId"`
	Description             string             `json:"description"`
	AdditionalVersionWeight map[string]float64 `json:"additionalVersionWeight"`
	CreatedTime             string             `json:"createdTime"`
	LastModifiedTime        string             `json:"lastModifiedTime"`
}

func fcAliasView(a *nimbus.Alias) fcAlias {
	v := fcAlias{AliasName: a.Name, VersionID: a.FunctionVersion, Description: a.Description,
		AdditionalVersionWeight: a.Weights, CreatedTime: fcTime(a.Created), LastModifiedTime: fcTime(a.LastModified)}
	if v.VersionID == nimbus.Latest {
		v.VersionID = "LATEST"
	}
	if v.AdditionalVersionWeight == nil {
		v.AdditionalVersionWeight = map[string]float64{}
	}
	return v
}

// fcAliasError maps the registry's alias errors: a version the alias
// names that does not exist is VersionNotFound, a bad value
// InvalidArgument.
func (s *Server) fcAliasError(r *http.Request, name, alias string, err error) error {
	switch {
	case errors.Is(err, nimbus.ErrNotFound) && strings.HasPrefix(kind(err).msg, "Alias not found"):
		return fcErr(http.StatusNotFound, fcAliasNotFound, "alias '"+alias+"' of function '"+name+"' does not exist")
	case errors.Is(err, nimbus.ErrNotFound):
		if _, gerr := s.reg.Get(r.Context(), name); gerr != nil {
			return fcNotFound(gerr, fcFunctionNotFound)
		}
		msg := kind(err).msg
		return fcErr(http.StatusNotFound, fcVersionNotFound, "version '"+msg[strings.LastIndex(msg, ":")+1:]+"' of function '"+name+"' does not exist")
	case errors.Is(err, nimbus.ErrConflict):
		return fcErr(http.StatusConflict, fcAliasAlreadyExists, "alias '"+alias+"' of function '"+name+"' already exists")
	case errors.Is(err, nimbus.ErrInvalid), errors.Is(err, nimbus.ErrValidation):
		return fcInvalid("%s", kind(err).msg)
	}
	return err
}

func (s *Server) fcAliasesCreate(w http.ResponseWriter, r *http.Request) error {
	fn, err := s.fcFunction(r)
	if err != nil {
		return err
	}
	var req fcAliasInput
	if err := fcDecode(w, r, maxConfigBody, &req); err != nil {
		return err
	}
	switch {
	case req.AliasName == nil || *req.AliasName == "":
		return fcInvalid("aliasName is required")
	case req.VersionID == nil || *req.VersionID == "":
		return fcInvalid("versionId is required")
	case *req.AliasName == "LATEST" || isVersionNumber(*req.AliasName):
		return fcInvalid("aliasName %q is invalid: it may not be LATEST or a number", *req.AliasName)
	}
	a, err := s.reg.CreateAlias(r.Context(), fn.Name, *req.AliasName, req.registryInput())
	if err != nil {
		return s.fcAliasError(r, fn.Name, *req.AliasName, err)
	}
	return fcWriteJSON(w, http.StatusOK, fcAliasView(a))
}

func (s *Server) fcAliasesGet(w http.ResponseWriter, r *http.Request) error {
	fn, err := s.fcFunction(r)
	if err != nil {
		return err
	}
	a, err := s.reg.Alias(r.Context(), fn.Name, r.PathValue("alias"))
	if err != nil {
		return s.fcAliasError(r, fn.Name, r.PathValue("alias"), err)
	}
	return fcWriteJSON(w, http.StatusOK, fcAliasView(a))
}

func (s *Server) fcAliasesUpdate(w http.ResponseWriter, r *http.Request) error {
	fn, err := s.fcFunction(r)
	if err != nil {
		return err
	}
	var req fcAliasInput
	if err := fcDecode(w, r, maxConfigBody, &req); err != nil {
		return err
	}
	alias := r.PathValue("alias")
	if req.AliasName != nil && *req.AliasName != alias {
		return fcInvalid("aliasName cannot be changed")
	}
	a, err := s.reg.UpdateAlias(r.Context(), fn.Name, alias, req.registryInput())
	if err != nil {
		return s.fcAliasError(r, fn.Name, alias, err)
	}
	return fcWriteJSON(w, http.StatusOK, fcAliasView(a))
}

func (s *Server) fcAliasesDelete(w http.ResponseWriter, r *http.Request) error {
	fn, err := s.fcFunction(r)
	if err != nil {
		return err
	}
	alias := r.PathValue("alias")
	if err := s.reg.DeleteAlias(r.Context(), fn.Name, alias); err != nil {
		return s.fcAliasError(r, fn.Name, alias, err)
	}
	return fcNoContent(w)
}

// fcAliasesList is ListAliases: prefix, limit (1 to 100, default 20),
// nextToken (the name to start at), in name order.
func (s *Server) fcAliasesList(w http.ResponseWriter, r *http.Request) error {
	fn, err := s.fcFunction(r)
	if err != nil {
		return err
	}
	page, next, err := fcNamePage(r.URL.Query(), fn.Aliases, func(a *nimbus.Alias) string { return a.Name })
	if err != nil {
		return err
	}
	out := struct {
		Aliases   []fcAlias `json:"aliases"`
		NextToken string    `json:"nextToken,omitempty"`
	}{Aliases: []fcAlias{}, NextToken: next}
	for _, a := range page {
		out.Aliases = append(out.Aliases, fcAliasView(a))
	}
	return fcWriteJSON(w, http.StatusOK, out)
}
