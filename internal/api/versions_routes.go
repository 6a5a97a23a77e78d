package api

import (
	"cmp"
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/registry"
)

func (s *Server) versionRoutes() {
	const fns = "/2015-03-31/functions/{name}"
	s.handle("POST "+fns+"/versions", s.versionsPublish)
	s.handle("GET "+fns+"/versions", s.versionsList)
	s.handle("POST "+fns+"/aliases", s.aliasesCreate)
	s.handle("GET "+fns+"/aliases", s.aliasesList)
	s.handle("GET "+fns+"/aliases/{alias}", s.aliasesGet)
	s.handle("PUT "+fns+"/aliases/{alias}", s.aliasesUpdate)
	s.handle("DELETE "+fns+"/aliases/{alias}", s.aliasesDelete)
}

type publishRequest struct {
	CodeSha256  string
	Description string
	RevisionId  string
}

// versionsPublish is PublishVersion.
func (s *Server) versionsPublish(w http.ResponseWriter, r *http.Request) error {
	name, err := functionName(r)
	if err != nil {
		return err
	}
	var req publishRequest
	if r.ContentLength != 0 {
		if err := decodeStrictLimit(w, r, maxConfigBody, &req); err != nil {
			return err
		}
	}
	in := registry.PublishInput{RevisionID: req.RevisionId, Description: req.Description}
	if req.CodeSha256 != "" {
		if in.CodeSHA256, err = hexSHA(req.CodeSha256); err != nil {
			return err
		}
	}
	v, err := s.reg.Publish(r.Context(), name, in)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusCreated, s.configuration(v))
}

// publishSettled publishes fn once its code is ready (Publish: true on
// CreateFunction and UpdateFunctionCode), waiting for the preparation that
// the create or update began.
func (s *Server) publishSettled(ctx context.Context, name string) (*nimbus.Function, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	for {
		fn, err := s.reg.Get(ctx, name)
		if err != nil {
			return nil, err
		}
		switch {
		case fn.State == nimbus.StateFailed || fn.LastUpdateStatus == nimbus.UpdateFailed:
			return nil, nimbus.Errorf(nimbus.ErrConflict, "The function's code could not be prepared, so no version was published: %s", fn.StateReason)
		case fn.State == nimbus.StateActive && fn.LastUpdateStatus != nimbus.UpdateInProgress:
			return s.reg.Publish(ctx, name, registry.PublishInput{CodeSHA256: fn.CodeSHA256})
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

type versionList struct {
	Versions   []functionConfiguration
	NextMarker *string `json:",omitempty"`
}

// versionsList is ListVersionsByFunction: $LATEST, then the versions
// oldest first, paged by Marker (a version number) and MaxItems.
func (s *Server) versionsList(w http.ResponseWriter, r *http.Request) error {
	fn, err := s.getFunction(r.Context(), r)
	if err != nil {
		return err
	}
	maxItems, err := listMax(r, 50)
	if err != nil {
		return err
	}
	marker := r.URL.Query().Get("Marker")
	all := []string{nimbus.Latest}
	for _, v := range fn.Versions {
		all = append(all, strconv.Itoa(v.Number))
	}
	start := 0
	if marker != "" {
		start = -1
		for i, q := range all {
			if q == marker {
				start = i + 1
			}
		}
		if start < 0 {
			return nimbus.Invalidf("Marker %q is not a marker returned by ListVersionsByFunction", marker)
		}
	}
	out := versionList{Versions: []functionConfiguration{}}
	for i := start; i < len(all) && len(out.Versions) < maxItems; i++ {
		v := fn
		if all[i] != nimbus.Latest {
			n, _ := strconv.Atoi(all[i])
			if v, err = s.reg.Version(r.Context(), fn.Name, n); err != nil {
				return err
			}
		}
		out.Versions = append(out.Versions, s.configuration(v))
		if len(out.Versions) == maxItems && i < len(all)-1 {
			next := all[i]
			out.NextMarker = &next
		}
	}
	return writeJSON(w, http.StatusOK, out)
}

// listMax reads MaxItems (1 to 10000; def when absent).
func listMax(r *http.Request, def int) (int, error) {
	v := r.URL.Query().Get("MaxItems")
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > maxListItems {
		return 0, nimbus.Errorf(nimbus.ErrValidation,
			"1 validation error detected: Value '%s' at 'maxItems' failed to satisfy constraint: Member must have value between 1 and %d", v, maxListItems)
	}
	return n, nil
}

// aliasConfiguration is Lambda's AliasConfiguration.
type aliasConfiguration struct {
	AliasArn        string
	Name            string
	FunctionVersion string
	Description     string
	RoutingConfig   *routingConfig `json:",omitempty"`
	RevisionId      string
}

type routingConfig struct {
	AdditionalVersionWeights map[string]float64
}

func (s *Server) aliasView(fn string, a *nimbus.Alias) aliasConfiguration {
	c := aliasConfiguration{AliasArn: s.arn(fn) + ":" + a.Name, Name: a.Name, FunctionVersion: a.FunctionVersion,
		Description: a.Description, RevisionId: a.RevisionID}
	if len(a.Weights) > 0 {
		c.RoutingConfig = &routingConfig{AdditionalVersionWeights: a.Weights}
	}
	return c
}

type aliasRequest struct {
	Name            *string
	FunctionVersion *string
	Description     *string
	RoutingConfig   *routingConfig
	RevisionId      string
}

func (req *aliasRequest) input() registry.AliasInput {
	in := registry.AliasInput{FunctionVersion: req.FunctionVersion, Description: req.Description, RevisionID: req.RevisionId}
	if req.RoutingConfig != nil {
		in.Weights = req.RoutingConfig.AdditionalVersionWeights
		if in.Weights == nil {
			in.Weights = map[string]float64{}
		}
	}
	return in
}

// aliasesCreate is CreateAlias.
func (s *Server) aliasesCreate(w http.ResponseWriter, r *http.Request) error {
	name, err := functionName(r)
	if err != nil {
		return err
	}
	var req aliasRequest
	if err := decodeStrictLimit(w, r, maxConfigBody, &req); err != nil {
		return err
	}
	if req.Name == nil {
		return nimbus.Errorf(nimbus.ErrValidation, "1 validation error detected: Value null at 'name' failed to satisfy constraint: Member must not be null")
	}
	a, err := s.reg.CreateAlias(r.Context(), name, *req.Name, req.input())
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusCreated, s.aliasView(name, a))
}

// aliasesUpdate is UpdateAlias.
func (s *Server) aliasesUpdate(w http.ResponseWriter, r *http.Request) error {
	name, err := functionName(r)
	if err != nil {
		return err
	}
	var req aliasRequest
	if err := decodeStrictLimit(w, r, maxConfigBody, &req); err != nil {
		return err
	}
	a, err := s.reg.UpdateAlias(r.Context(), name, r.PathValue("alias"), req.input())
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, s.aliasView(name, a))
}

// aliasesGet is GetAlias.
func (s *Server) aliasesGet(w http.ResponseWriter, r *http.Request) error {
	name, err := functionName(r)
	if err != nil {
		return err
	}
	a, err := s.reg.Alias(r.Context(), name, r.PathValue("alias"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, s.aliasView(name, a))
}

// aliasesDelete is DeleteAlias.
func (s *Server) aliasesDelete(w http.ResponseWriter, r *http.Request) error {
	name, err := functionName(r)
	if err != nil {
		return err
	}
	if err := s.reg.DeleteAlias(r.Context(), name, r.PathValue("alias")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

type aliasList struct {
	Aliases    []aliasConfiguration
	NextMarker *string `json:",omitempty"`
}

// aliasesList is ListAliases (FunctionVersion keeps the aliases of one
// version; Marker and MaxItems page them).
func (s *Server) aliasesList(w http.ResponseWriter, r *http.Request) error {
	fn, err := s.getFunction(r.Context(), r)
	if err != nil {
		return err
	}
	maxItems, err := listMax(r, 50)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	version, marker := q.Get("FunctionVersion"), q.Get("Marker")
	out := aliasList{Aliases: []aliasConfiguration{}}
	started := marker == ""
	for i := range fn.Aliases {
		a := &fn.Aliases[i]
		if !started {
			started = a.Name == marker
			continue
		}
		if version != "" && a.FunctionVersion != version {
			continue
		}
		if len(out.Aliases) == maxItems {
			next := out.Aliases[len(out.Aliases)-1].Name
			out.NextMarker = &next
			break
		}
		out.Aliases = append(out.Aliases, s.aliasView(fn.Name, a))
	}
	return writeJSON(w, http.StatusOK, out)
}

// qualified loads function name's version that the request's Qualifier
// names: $LATEST (none), a version, or the version an alias points at
// (route: as an invocation would be routed, by the alias's weights).
func (s *Server) qualified(ctx context.Context, r *http.Request, route bool) (*nimbus.Function, error) {
	name, q, err := requestQualifier(r)
	if err != nil {
		return nil, err
	}
	if !route && q != "" && q != nimbus.Latest {
		if _, err := strconv.Atoi(q); err != nil { // an alias: its main version
			a, err := s.reg.Alias(ctx, name, q)
			if err != nil {
				return nil, s.notFound(name, q, err)
			}
			q = a.FunctionVersion
		}
	}
	fn, err := s.reg.Resolve(ctx, name, q)
	return fn, s.notFound(name, q, err)
}

// qualifierTarget parses the function and the qualifier a request names
// ($LATEST when none) and loads the function, for the operations on a
// qualifier's own settings (event invoke config, policy). A function,
// version or alias that does not exist is not found, as Lambda words it.
func (s *Server) qualifierTarget(r *http.Request) (*nimbus.Function, string, error) {
	name, q, err := requestQualifier(r)
	if err != nil {
		return nil, "", err
	}
	q = cmp.Or(q, nimbus.Latest)
	fn, err := s.reg.Get(r.Context(), name)
	if err == nil && !registry.HasQualifier(fn, q) {
		err = nimbus.ErrNotFound
	}
	if err != nil {
		return nil, "", s.notFound(name, q, err)
	}
	return fn, q, nil
}

// requestQualifier parses the request's function name and the qualifier
// it names: its Qualifier, or the one of name:qualifier (both: they must
// agree), "" for none.
func requestQualifier(r *http.Request) (name, q string, err error) {
	name, derived, err := registry.ParseQualifiedName(r.PathValue("name"))
	if err != nil {
		return "", "", err
	}
	q = r.URL.Query().Get("Qualifier")
	switch {
	case derived != "" && q != "" && derived != q:
		return "", "", nimbus.Invalidf("The derived qualifier from the function name does not match the specified qualifier.")
	case derived != "":
		q = derived // name:qualifier, as Lambda takes it
	}
	if q != "" && !validQualifier(q) {
		return "", "", nimbus.Errorf(nimbus.ErrValidation,
			"1 validation error detected: Value '%s' at 'qualifier' failed to satisfy constraint: Member must satisfy regular expression pattern: (|[a-zA-Z0-9$_-]{1,128})", q)
	}
	return name, q, nil
}

// notFound gives a missing function or version Lambda's message.
func (s *Server) notFound(name, q string, err error) error {
	if !errors.Is(err, nimbus.ErrNotFound) {
		return err
	}
	if q == "" || q == nimbus.Latest {
		return nimbus.Errorf(nimbus.ErrNotFound, "Function not found: %s", s.arn(name))
	}
	return nimbus.Errorf(nimbus.ErrNotFound, "Function not found: %s:%s", s.arn(name), q)
}

// hexSHA reads a CodeSha256 as Lambda shows it (base64) into hex.
func hexSHA(b64 string) (string, error) {
	b, err := base64.StdEncoding.DecodeString(b64)
	if err != nil || len(b) != 32 {
		return "", nimbus.Errorf(nimbus.ErrValidation, "1 validation error detected: Value '%s' at 'codeSha256' failed to satisfy constraint: Member must be the base64 SHA-256 of the code, as CodeSha256 shows it", b64)
	}
	return hex.EncodeToString(b), nil
}

// versionDelete is DeleteFunction with a Qualifier: one published
// version, never $LATEST nor an alias.
func (s *Server) versionDelete(w http.ResponseWriter, r *http.Request, q string) error {
	name, err := functionName(r)
	if err != nil {
		return err
	}
	if q == nimbus.Latest {
		return nimbus.Invalidf("$LATEST version cannot be deleted without deleting the function.")
	}
	n, err := strconv.Atoi(q)
	if err != nil || n < 1 {
		if !validQualifier(q) {
			return nimbus.Errorf(nimbus.ErrValidation,
				"1 validation error detected: Value '%s' at 'qualifier' failed to satisfy constraint: Member must satisfy regular expression pattern: (|[a-zA-Z0-9$_-]{1,128})", q)
		}
		return nimbus.Invalidf("Deletion of aliases is not supported through DeleteFunction: Qualifier %s is not a version; use DeleteAlias", q)
	}
	if err := s.reg.DeleteVersion(r.Context(), name, n); err != nil {
		return s.notFound(name, q, err)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// unqualified is the error of a Qualifier on an operation that takes
// none yet: not found (as Lambda says it) for a version or alias that
// does not exist, else what Nimbus lacks.
func (s *Server) unqualified(ctx context.Context, name, q string) error {
	if _, err := s.reg.Resolve(ctx, name, q); err != nil {
		return nimbus.Errorf(nimbus.ErrNotFound, "Function not found: %s:%s", s.arn(name), q)
	}
	return nimbus.Invalidf("Qualifier %s: this operation takes only $LATEST on Nimbus: the setting is the function's, for all its versions and aliases", q)
}

// invokedQualifier is the qualifier an invoke names: its Qualifier, or the
// one of name:qualifier ("" for none).
func invokedQualifier(r *http.Request) string {
	if q := r.URL.Query().Get("Qualifier"); q != "" {
		return q
	}
	_, q, _ := registry.ParseQualifiedName(r.PathValue("name"))
	return q
}
