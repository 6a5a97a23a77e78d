package api

import (
	"net/http"

	"github.com/google/uuid"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/registry"
	"github.com/nimbus-serverless/nimbus/internal/trigger"
	"github.com/nimbus-serverless/nimbus/internal/trigger/funcurl"
)

// Lambda's function URL auth types, and Nimbus's extension.
const (
	lambdaAuthNone = "NONE"
	lambdaAuthIAM  = "AWS_IAM"
	lambdaAuthKey  = "NIMBUS_KEY"
)

// urlTime is the format of CreationTime and LastModifiedTime (ISO 8601).
const urlTime = "2006-01-02T15:04:05.000000Z07:00"

// lambdaCors is Lambda's Cors shape.
type lambdaCors struct {
	AllowCredentials *bool    `json:"AllowCredentials,omitempty"`
	AllowHeaders     []string `json:"AllowHeaders,omitempty"`
	AllowMethods     []string `json:"AllowMethods,omitempty"`
	AllowOrigins     []string `json:"AllowOrigins,omitempty"`
	ExposeHeaders    []string `json:"ExposeHeaders,omitempty"`
	MaxAge           *int     `json:"MaxAge,omitempty"`
}

// urlConfigRequest is the body of CreateFunctionUrlConfig and
// UpdateFunctionUrlConfig. NimbusKey is Nimbus's extension: the key of a
// NIMBUS_KEY URL (generated when absent).
type urlConfigRequest struct {
	AuthType   *string
	Cors       *lambdaCors
	InvokeMode *string
	NimbusKey  *string
}

// urlConfigResponse is Lambda's FunctionUrlConfig (and the Create, Get and
// Update responses), with the key of a NIMBUS_KEY URL as an extension.
type urlConfigResponse struct {
	FunctionUrl      string      `json:"FunctionUrl"`
	FunctionArn      string      `json:"FunctionArn"`
	AuthType         string      `json:"AuthType"`
	Cors             *lambdaCors `json:"Cors,omitempty"`
	CreationTime     string      `json:"CreationTime"`
	LastModifiedTime string      `json:"LastModifiedTime,omitempty"`
	InvokeMode       string      `json:"InvokeMode"`
	NimbusKey        string      `json:"NimbusKey,omitempty"`
}

func (s *Server) urlConfigCreate(w http.ResponseWriter, r *http.Request) error {
	fn, q, err := s.urlFunction(r)
	if err != nil {
		return err
	}
	var req urlConfigRequest
	if err := decode(w, r, maxConfigBody, &req); err != nil {
		return err
	}
	if req.AuthType == nil {
		return nimbus.Errorf(nimbus.ErrValidation, "1 validation error detected: Value null at 'authType' failed to satisfy constraint: Member must not be null")
	}
	cfg, err := req.apply(funcurl.Config{})
	if err != nil {
		return err
	}
	if err := cfg.ValidateFor(fn); err != nil {
		return err
	}
	if t := funcurl.Find(fn, q); t != nil {
		return s.urlExists(fn.Name, t)
	}
	typ, id := nimbus.TriggerHTTP, uuid.NewString()
	t, err := s.reg.AddTrigger(r.Context(), fn.Name, registry.TriggerInput{
		Name: funcurl.TriggerName(q, id), ID: id, Type: &typ, Config: cfg.Encode(), Qualifier: &q}, s.urlTypes())
	if err != nil {
		return s.notFound(fn.Name, q, err)
	}
	resp := s.urlConfig(r, fn, t)
	resp.LastModifiedTime = "" // not in CreateFunctionUrlConfig's response
	return writeJSON(w, http.StatusCreated, resp)
}

// urlTypes validates triggers: the trigger service's types, or on a node
// without one the http type alone.
func (s *Server) urlTypes() registry.TriggerTypes {
	if s.cfg.Triggers != nil {
		return s.cfg.Triggers.Types()
	}
	return registry.TriggerTypes{Factories: map[string]trigger.Factory{nimbus.TriggerHTTP: funcurl.Factory}}
}

// urlExists is the conflict of a second URL for a function or alias
// (http trigger t).
func (s *Server) urlExists(name string, t *nimbus.Trigger) error {
	return nimbus.Errorf(nimbus.ErrConflict, "Failed to create function url config for [functionArn = %s]. Error message:  FunctionUrlConfig exists for this Lambda function (http trigger %q)", s.arnQualified(name, t.Qualifier), t.Name)
}

func (s *Server) urlConfigGet(w http.ResponseWriter, r *http.Request) error {
	fn, t, err := s.urlTrigger(r)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, s.urlConfig(r, fn, t))
}

func (s *Server) urlConfigUpdate(w http.ResponseWriter, r *http.Request) error {
	fn, t, err := s.urlTrigger(r)
	if err != nil {
		return err
	}
	var req urlConfigRequest
	if err := decode(w, r, maxConfigBody, &req); err != nil {
		return err
	}
	old, err := funcurl.ParseConfig(t.Config)
	if err != nil {
		return err
	}
	cfg, err := req.apply(old)
	if err != nil {
		return err
	}
	if err := cfg.ValidateFor(fn); err != nil {
		return err
	}
	if req.NimbusKey == nil {
		// The registry keeps the stored key (or generates one for a URL
		// new to NIMBUS_KEY): a key rotated since old was read stays.
		cfg.Key = ""
	}
	t, err = s.reg.UpdateTrigger(r.Context(), fn.Name, t.Name, registry.TriggerInput{Config: cfg.Encode()}, s.urlTypes())
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, s.urlConfig(r, fn, t))
}

func (s *Server) urlConfigDelete(w http.ResponseWriter, r *http.Request) error {
	fn, t, err := s.urlTrigger(r)
	if err != nil {
		return err
	}
	if err := s.reg.DeleteTrigger(r.Context(), fn.Name, t.Name); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// urlConfigList is ListFunctionUrlConfigs: the function's own URL and
// its aliases', in pages of MaxItems (default 50) continued from Marker.
func (s *Server) urlConfigList(w http.ResponseWriter, r *http.Request) error {
	from, limit, err := listPage(r)
	if err != nil {
		return err
	}
	fn, err := s.getFunction(r.Context(), r)
	if err != nil {
		return err
	}
	all := []urlConfigResponse{}
	for i := range fn.Triggers {
		if fn.Triggers[i].Type == nimbus.TriggerHTTP {
			all = append(all, s.urlConfig(r, fn, &fn.Triggers[i]))
		}
	}
	var out struct {
		FunctionUrlConfigs []urlConfigResponse
		NextMarker         string `json:",omitempty"`
	}
	out.FunctionUrlConfigs, out.NextMarker = page(all, from, limit)
	return writeJSON(w, http.StatusOK, out)
}

// urlFunction loads the function of a function URL request, with the
// alias its Qualifier (or name:alias) names: "" for the function's own
// URL ($LATEST). A version's number is refused, as Lambda does, and an
// alias that does not exist is not found.
func (s *Server) urlFunction(r *http.Request) (*nimbus.Function, string, error) {
	name, q, err := requestQualifier(r)
	if err != nil {
		return nil, "", err
	}
	if q != "" {
		if err := registry.ValidateURLQualifier(q); err != nil {
			return nil, "", err
		}
	}
	if q == nimbus.Latest {
		q = ""
	}
	fn, err := s.reg.Get(r.Context(), name)
	if err == nil && q != "" {
		_, err = s.reg.Alias(r.Context(), name, q)
	}
	if err != nil {
		return nil, "", s.notFound(name, q, err)
	}
	return fn, q, nil
}

// urlTrigger loads the function and the http trigger of the request's
// qualifier (404 when none).
func (s *Server) urlTrigger(r *http.Request) (*nimbus.Function, *nimbus.Trigger, error) {
	fn, q, err := s.urlFunction(r)
	if err != nil {
		return nil, nil, err
	}
	t := funcurl.Find(fn, q)
	if t == nil {
		return nil, nil, errNoURL()
	}
	return fn, t, nil
}

func errNoURL() error {
	return nimbus.Errorf(nimbus.ErrNotFound, "The resource you requested does not exist. (The function has no function URL: create one with CreateFunctionUrlConfig.)")
}

// apply returns old changed by the request's set fields, validated. A
// NIMBUS_KEY URL without a key gets one when it is stored (the registry
// keeps the key it had, or generates one).
func (req urlConfigRequest) apply(old funcurl.Config) (funcurl.Config, error) {
	cfg := old
	if req.AuthType != nil {
		auth, err := authType(*req.AuthType)
		if err != nil {
			return cfg, err
		}
		cfg.AuthType = auth
	}
	if req.InvokeMode != nil {
		switch m := *req.InvokeMode; m {
		case funcurl.InvokeBuffered, funcurl.InvokeStream:
			cfg.InvokeMode = m
		default:
			return cfg, nimbus.Errorf(nimbus.ErrValidation, "1 validation error detected: Value '%s' at 'invokeMode' failed to satisfy constraint: Member must satisfy enum value set: [BUFFERED, RESPONSE_STREAM]", m)
		}
	}
	if req.Cors != nil {
		cfg.Cors = req.Cors.config()
	}
	if req.NimbusKey != nil {
		if cfg.AuthType != funcurl.AuthKey {
			return cfg, nimbus.Invalidf("NimbusKey applies only to a function URL whose AuthType is NIMBUS_KEY")
		}
		cfg.Key = *req.NimbusKey
	}
	if cfg.AuthType != funcurl.AuthKey {
		cfg.Key = ""
	}
	return cfg, cfg.Validate()
}

// authType maps Lambda's AuthType to the trigger's.
func authType(v string) (string, error) {
	switch v {
	case lambdaAuthNone:
		return funcurl.AuthNone, nil
	case lambdaAuthKey:
		return funcurl.AuthKey, nil
	case lambdaAuthIAM:
		return funcurl.AuthIAM, nil
	}
	return "", nimbus.Errorf(nimbus.ErrValidation, "1 validation error detected: Value '%s' at 'authType' failed to satisfy constraint: Member must satisfy enum value set: [NONE, AWS_IAM] (Nimbus also accepts NIMBUS_KEY)", v)
}

// config converts Lambda's Cors; an empty one removes CORS.
func (c *lambdaCors) config() *funcurl.CORS {
	out := &funcurl.CORS{
		AllowHeaders: c.AllowHeaders, AllowMethods: c.AllowMethods, AllowOrigins: c.AllowOrigins,
		ExposeHeaders: c.ExposeHeaders, AllowCredentials: c.AllowCredentials != nil && *c.AllowCredentials,
	}
	if c.MaxAge != nil {
		out.MaxAge = *c.MaxAge
	}
	if len(out.AllowHeaders)+len(out.AllowMethods)+len(out.AllowOrigins)+len(out.ExposeHeaders) == 0 &&
		out.MaxAge == 0 && !out.AllowCredentials {
		return nil
	}
	return out
}

// urlConfig is the FunctionUrlConfig of fn's http trigger t (its
// FunctionArn qualified by t's alias).
func (s *Server) urlConfig(r *http.Request, fn *nimbus.Function, t *nimbus.Trigger) urlConfigResponse {
	cfg, err := funcurl.ParseConfig(t.Config)
	if err != nil {
		s.log.Warn("stored function URL config", nimbus.LogFunction, fn.Name, nimbus.LogErr, err)
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	out := urlConfigResponse{
		FunctionUrl: scheme + "://" + r.Host + urlPrefix + funcurl.Path(fn.Name, t), FunctionArn: s.arnQualified(fn.Name, t.Qualifier),
		AuthType: lambdaAuthNone, InvokeMode: cfg.Mode(),
		CreationTime: t.Created.UTC().Format(urlTime), LastModifiedTime: t.LastModified.UTC().Format(urlTime),
	}
	switch cfg.AuthType {
	case funcurl.AuthKey:
		out.AuthType, out.NimbusKey = lambdaAuthKey, cfg.Key
	case funcurl.AuthIAM:
		out.AuthType = lambdaAuthIAM
	}
	if c := cfg.Cors; c != nil {
		out.Cors = &lambdaCors{AllowHeaders: c.AllowHeaders, AllowMethods: c.AllowMethods, AllowOrigins: c.AllowOrigins,
			ExposeHeaders: c.ExposeHeaders, AllowCredentials: &c.AllowCredentials, MaxAge: &c.MaxAge}
	}
	return out
}
