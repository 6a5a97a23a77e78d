package api

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"slices"
	"strings"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/registry"
	"github.com/nimbus-serverless/nimbus/internal/trigger/funcurl"
	"github.com/nimbus-serverless/nimbus/internal/trigger/timer"
)

// Function Compute's triggers over Nimbus's: an http trigger is a function
// URL (/fn/<name>/...), a timer a Nimbus timer delivering Function
// Compute's timer event; Nimbus's own message and s3 triggers are taken
// with Nimbus's configs; Function Compute's other types name Alibaba Cloud
// services Nimbus does not have and are refused (docs/fc-api.md).

func (s *Server) fcTriggerRoutes() {
	const base = fcPrefix + "/functions/{name}/triggers"
	s.fcHandle("POST "+base, "CreateTrigger", s.fcTriggersCreate)
	s.fcHandle("GET "+base, "ListTriggers", s.fcTriggersList)
	s.fcHandle("GET "+base+"/{trigger}", "GetTrigger", s.fcTriggersGet)
	s.fcHandle("PUT "+base+"/{trigger}", "UpdateTrigger", s.fcTriggersUpdate)
	s.fcHandle("DELETE "+base+"/{trigger}", "DeleteTrigger", s.fcTriggersDelete)
}

// fcNimbusTriggerTypes are Nimbus's trigger types that the dialect takes
// with Nimbus's own config (no Function Compute type maps to them).
var fcNimbusTriggerTypes = []string{nimbus.TriggerKafka, nimbus.TriggerRabbitMQ, nimbus.TriggerMQTT,
	nimbus.TriggerNATS, nimbus.TriggerRedis, nimbus.TriggerS3}

// fcRefusedTriggerTypes are Function Compute's trigger types whose source
// is an Alibaba Cloud service Nimbus does not have.
var fcRefusedTriggerTypes = map[string]string{
	"oss":         "OSS buckets (Nimbus's s3 trigger takes S3-compatible buckets' notifications: triggerType s3 with Nimbus's config)",
	"log":         "Simple Log Service",
	"mns_topic":   "MNS topics",
	"cdn_events":  "CDN events",
	"tablestore":  "Tablestore",
	"eventbridge": "EventBridge (its Kafka, RabbitMQ and RocketMQ sources name Alibaba Cloud instances; Nimbus's kafka, rabbitmq, mqtt, nats and redis triggers take broker addresses: triggerType kafka, ... with Nimbus's config)",
}

// fcTriggerInput is CreateTrigger's and UpdateTrigger's body.
type fcTriggerInput struct {
	TriggerName    *string `json:"triggerName"`
	TriggerType    *string `json:"triggerType"`
	TriggerConfig  *string `json:"triggerConfig"`
	Qualifier      *string `json:"qualifier"`
	Description    *string `json:"description"`
	InvocationRole *string `json:"invocationRole"`
	SourceArn      *string `json:"sourceArn"`
}

// fcHTTPTrigger is an http trigger's URLs.
type fcHTTPTrigger struct {
	URLInternet string `json:"urlInternet"`
	URLIntranet string `json:"urlIntranet"`
}

// fcTrigger is Function Compute's Trigger.
type fcTrigger struct {
	TriggerName      string         `json:"triggerName"`
	TriggerType      string         `json:"triggerType"`
	TriggerConfig    string         `json:"triggerConfig"`
	TriggerID        string         `json:"triggerId"`
	Qualifier        string         `json:"qualifier"`
	Description      string         `json:"description"`
	InvocationRole   string         `json:"invocationRole,omitempty"`
	SourceArn        string         `json:"sourceArn,omitempty"`
	TargetArn        string         `json:"targetArn"`
	Status           string         `json:"status"`
	CreatedTime      string         `json:"createdTime"`
	LastModifiedTime string         `json:"lastModifiedTime"`
	HTTPTrigger      *fcHTTPTrigger `json:"httpTrigger,omitempty"`
}

// fcHTTPConfig is an http trigger's triggerConfig.
type fcHTTPConfig struct {
	AuthType           string        `json:"authType"`
	Methods            []string      `json:"methods"`
	AuthConfig         string        `json:"authConfig,omitempty"`
	CorsConfig         *funcurl.CORS `json:"corsConfig,omitempty"`
	DisableURLInternet *bool         `json:"disableURLInternet,omitempty"`
}

// fcTimerConfig is a timer trigger's triggerConfig.
type fcTimerConfig struct {
	CronExpression string `json:"cronExpression"`
	Enable         *bool  `json:"enable,omitempty"`
	Payload        string `json:"payload"`
}

// fcDecodeConfig decodes triggerConfig (a JSON string in Function
// Compute) strictly into v.
func fcDecodeConfig(raw string, v any) error {
	dec := json.NewDecoder(strings.NewReader(raw))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil {
		if _, terr := dec.Token(); !errors.Is(terr, io.EOF) {
			err = errors.New("unexpected data after the JSON object")
		}
	}
	if err != nil {
		return fcInvalid("triggerConfig is not valid: %s", strings.TrimPrefix(err.Error(), "json: "))
	}
	return nil
}

// fcHTTPToNimbus converts an http triggerConfig into a function URL's.
func fcHTTPToNimbus(raw string) (json.RawMessage, error) {
	var c fcHTTPConfig
	if err := fcDecodeConfig(raw, &c); err != nil {
		return nil, err
	}
	var cfg funcurl.Config
	switch c.AuthType {
	case "anonymous":
		cfg.AuthType = funcurl.AuthNone
	case "function":
		cfg.AuthType = funcurl.AuthIAM
	case "":
		return nil, fcInvalid("triggerConfig.authType is required: anonymous or function")
	default:
		return nil, fcInvalid("triggerConfig.authType %q is not supported: Nimbus's URLs take anonymous (public) or function (requests signed by an access key allowed to invoke the function)", c.AuthType)
	}
	if c.AuthConfig != "" {
		return nil, fcInvalid("triggerConfig.authConfig is not supported: it configures jwt authentication, which Nimbus's URLs do not have")
	}
	if c.DisableURLInternet != nil && *c.DisableURLInternet {
		return nil, fcInvalid("triggerConfig.disableURLInternet true is not supported: a Nimbus URL is served on the node's address, the same for every caller")
	}
	for _, m := range c.Methods {
		cfg.Methods = append(cfg.Methods, strings.ToUpper(m))
	}
	if len(cfg.Methods) == 0 {
		return nil, fcInvalid("triggerConfig.methods is required: the HTTP methods the URL answers (GET, POST, PUT, DELETE, HEAD, PATCH, OPTIONS)")
	}
	cfg.Cors = c.CorsConfig
	if err := cfg.Validate(); err != nil {
		return nil, fcInvalid("triggerConfig: %s", kind(err).msg)
	}
	return cfg.Encode(), nil
}

// fcTimerToNimbus converts a timer triggerConfig into a Nimbus timer's,
// delivering Function Compute's timer event, with no catch-up (Function
// Compute does not fire missed ticks); enabled is its enable.
func fcTimerToNimbus(raw string) (cfg json.RawMessage, enabled bool, err error) {
	var c fcTimerConfig
	if err := fcDecodeConfig(raw, &c); err != nil {
		return nil, false, err
	}
	expr := strings.TrimSpace(c.CronExpression)
	tc := timer.Config{CatchUpWindow: "0s", Format: timer.FormatFC}
	if rest, ok := strings.CutPrefix(expr, "CRON_TZ="); ok {
		tz, sched, _ := strings.Cut(rest, " ")
		tc.Timezone, expr = tz, strings.TrimSpace(sched)
	}
	switch {
	case c.CronExpression == "":
		return nil, false, fcInvalid("triggerConfig.cronExpression is required: @every <duration> (e.g. @every 5m) or six fields, seconds first (e.g. 0 0 4 * * *)")
	case strings.HasPrefix(expr, "@every"):
	case strings.HasPrefix(expr, "@"):
		return nil, false, fcInvalid("triggerConfig.cronExpression %q is not supported: use @every <duration> or six cron fields", c.CronExpression)
	case len(strings.Fields(expr)) != 6:
		return nil, false, fcInvalid("triggerConfig.cronExpression %q must have six fields (second minute hour day-of-month month day-of-week), or be @every <duration>", c.CronExpression)
	}
	tc.Schedule = expr
	if c.Payload != "" {
		tc.Payload, _ = json.Marshal(c.Payload)
	}
	out, _ := json.Marshal(tc)
	if _, err := timer.ParseConfig(out); err != nil {
		msg := strings.TrimPrefix(kind(err).msg, "timer config: ")
		return nil, false, fcInvalid("triggerConfig.cronExpression %q cannot be converted: %s", c.CronExpression, msg)
	}
	return out, c.Enable == nil || *c.Enable, nil
}

// fcTriggerConfig converts a request's type and config into Nimbus's
// type, config and (timers) enabled state.
func fcTriggerConfig(typ, raw string) (ntype string, cfg json.RawMessage, enabled *bool, err error) {
	switch {
	case typ == nimbus.TriggerHTTP:
		cfg, err = fcHTTPToNimbus(raw)
		return typ, cfg, nil, err
	case typ == nimbus.TriggerTimer:
		cfg, on, err := fcTimerToNimbus(raw)
		return typ, cfg, &on, err
	case slices.Contains(fcNimbusTriggerTypes, typ):
		if !json.Valid([]byte(raw)) {
			return "", nil, nil, fcInvalid("triggerConfig of a %s trigger must be its Nimbus config as JSON (docs/triggers.md)", typ)
		}
		return typ, json.RawMessage(raw), nil, nil
	}
	if why, ok := fcRefusedTriggerTypes[typ]; ok {
		return "", nil, nil, fcInvalid("triggerType %q is not supported by Nimbus, which has no %s", typ, why)
	}
	return "", nil, nil, fcInvalid("triggerType %q is not supported: Nimbus takes http and timer (Function Compute's configs) and %s (Nimbus's configs)",
		typ, strings.Join(fcNimbusTriggerTypes, ", "))
}

// fcRefuseTriggerFields refuses the fields Nimbus has no use for.
func (in *fcTriggerInput) fcRefuseTriggerFields() error {
	if in.InvocationRole != nil && *in.InvocationRole != "" {
		return fcInvalid("invocationRole is not supported: Nimbus's triggers invoke with no role")
	}
	if in.SourceArn != nil && *in.SourceArn != "" {
		return fcInvalid("sourceArn is not supported: a Nimbus trigger's source is in its triggerConfig")
	}
	return nil
}

func (s *Server) fcTriggersCreate(w http.ResponseWriter, r *http.Request) error {
	fn, err := s.fcFunction(r)
	if err != nil {
		return err
	}
	var req fcTriggerInput
	if err := fcDecode(w, r, maxConfigBody, &req); err != nil {
		return err
	}
	switch {
	case req.TriggerName == nil || *req.TriggerName == "":
		return fcInvalid("triggerName is required")
	case !registry.ValidName(*req.TriggerName):
		return fcInvalid("triggerName %q is invalid: 1 to 64 letters, digits, - and _", *req.TriggerName)
	case req.TriggerType == nil || *req.TriggerType == "":
		return fcInvalid("triggerType is required")
	case req.TriggerConfig == nil || *req.TriggerConfig == "":
		return fcInvalid("triggerConfig is required")
	}
	if err := req.fcRefuseTriggerFields(); err != nil {
		return err
	}
	typ, cfg, enabled, err := fcTriggerConfig(*req.TriggerType, *req.TriggerConfig)
	if err != nil {
		return err
	}
	in := registry.TriggerInput{Name: *req.TriggerName, Type: &typ, Config: cfg, Enabled: enabled,
		Qualifier: fcTriggerQualifier(req.Qualifier), Description: req.Description}
	if err := s.fcCheckTriggerQualifier(fn, typ, in.Qualifier); err != nil {
		return err
	}
	types := s.urlTypes()
	if typ != nimbus.TriggerHTTP {
		ts, err := s.triggerService()
		if err != nil {
			return err
		}
		if types, err = keepSecrets(ts.Types(), &in, nil); err != nil {
			return err
		}
	}
	if funcurl.Find(fn, fcQualifierValue(in.Qualifier)) != nil && typ == nimbus.TriggerHTTP {
		return fcErr(http.StatusConflict, fcTriggerAlreadyExists, "function '"+fn.Name+"' has an http trigger for "+fcQualifierName(fcQualifierValue(in.Qualifier))+" already: a function has one URL per qualifier")
	}
	t, err := s.reg.AddTrigger(r.Context(), fn.Name, in, types)
	if err != nil {
		return s.fcTriggerError(r, fn.Name, *req.TriggerName, err)
	}
	return fcWriteJSON(w, http.StatusOK, s.fcTriggerView(r, fn.Name, t))
}

// fcTriggerQualifier is a request's qualifier as the registry takes it
// (LATEST is the function's $LATEST).
func fcTriggerQualifier(q *string) *string {
	if q == nil {
		return nil
	}
	v := *q
	if v == "LATEST" {
		v = ""
	}
	return &v
}

func fcQualifierValue(q *string) string {
	if q == nil {
		return ""
	}
	return *q
}

// fcCheckTriggerQualifier checks the qualifier a trigger would invoke: an
// alias or version fn has (an http trigger: an alias only, as a URL).
func (s *Server) fcCheckTriggerQualifier(fn *nimbus.Function, typ string, q *string) error {
	v := fcQualifierValue(q)
	if v == "" {
		return nil
	}
	if typ == nimbus.TriggerHTTP && isVersionNumber(v) {
		return fcInvalid("qualifier %q is invalid for an http trigger: it takes an alias (or LATEST), as a function URL", v)
	}
	if !registry.HasQualifier(fn, v) {
		return fcQualifierNotFound(fn.Name, v)
	}
	return nil
}

// fcTriggerError maps the registry's errors of a trigger operation.
func (s *Server) fcTriggerError(r *http.Request, function, name string, err error) error {
	switch {
	case errors.Is(err, nimbus.ErrConflict) && strings.Contains(err.Error(), "already"):
		return fcErr(http.StatusConflict, fcTriggerAlreadyExists, "trigger '"+name+"' of function '"+function+"' already exists")
	case errors.Is(err, nimbus.ErrNotFound):
		if _, gerr := s.reg.Get(r.Context(), function); gerr != nil {
			return fcNotFound(gerr, fcFunctionNotFound)
		}
		return fcErr(http.StatusNotFound, fcTriggerNotFound, "trigger '"+name+"' of function '"+function+"' does not exist")
	case errors.Is(err, nimbus.ErrInvalid), errors.Is(err, nimbus.ErrValidation):
		return fcInvalid("%s", kind(err).msg)
	}
	return err
}

// fcTrigger loads the function and its trigger {trigger} names.
func (s *Server) fcTrigger(r *http.Request) (*nimbus.Function, *nimbus.Trigger, error) {
	fn, err := s.fcFunction(r)
	if err != nil {
		return nil, nil, err
	}
	name := r.PathValue("trigger")
	for i := range fn.Triggers {
		if fn.Triggers[i].Name == name {
			return fn, &fn.Triggers[i], nil
		}
	}
	return nil, nil, fcErr(http.StatusNotFound, fcTriggerNotFound, "trigger '"+name+"' of function '"+fn.Name+"' does not exist")
}

func (s *Server) fcTriggersGet(w http.ResponseWriter, r *http.Request) error {
	fn, t, err := s.fcTrigger(r)
	if err != nil {
		return err
	}
	return fcWriteJSON(w, http.StatusOK, s.fcTriggerView(r, fn.Name, t))
}

// fcTriggersUpdate is UpdateTrigger: triggerConfig, qualifier and
// description; the type cannot change (as in Function Compute).
func (s *Server) fcTriggersUpdate(w http.ResponseWriter, r *http.Request) error {
	fn, t, err := s.fcTrigger(r)
	if err != nil {
		return err
	}
	var req fcTriggerInput
	if err := fcDecode(w, r, maxConfigBody, &req); err != nil {
		return err
	}
	if req.TriggerName != nil && *req.TriggerName != t.Name {
		return fcInvalid("triggerName cannot be changed")
	}
	if req.TriggerType != nil && *req.TriggerType != t.Type {
		return fcInvalid("triggerType cannot be changed from %s to %s: delete the trigger and create it again", t.Type, *req.TriggerType)
	}
	if err := req.fcRefuseTriggerFields(); err != nil {
		return err
	}
	in := registry.TriggerInput{Qualifier: fcTriggerQualifier(req.Qualifier), Description: req.Description}
	if req.TriggerConfig != nil {
		if _, in.Config, in.Enabled, err = fcTriggerConfig(t.Type, *req.TriggerConfig); err != nil {
			return err
		}
	}
	if err := s.fcCheckTriggerQualifier(fn, t.Type, in.Qualifier); err != nil {
		return err
	}
	types := s.urlTypes()
	if t.Type != nimbus.TriggerHTTP {
		ts, err := s.triggerService()
		if err != nil {
			return err
		}
		if types, err = keepSecrets(ts.Types(), &in, t); err != nil {
			return err
		}
	}
	nt, err := s.reg.UpdateTrigger(r.Context(), fn.Name, t.Name, in, types)
	if err != nil {
		return s.fcTriggerError(r, fn.Name, t.Name, err)
	}
	return fcWriteJSON(w, http.StatusOK, s.fcTriggerView(r, fn.Name, nt))
}

func (s *Server) fcTriggersDelete(w http.ResponseWriter, r *http.Request) error {
	fn, t, err := s.fcTrigger(r)
	if err != nil {
		return err
	}
	if err := s.reg.DeleteTrigger(r.Context(), fn.Name, t.Name); err != nil {
		return s.fcTriggerError(r, fn.Name, t.Name, err)
	}
	return fcNoContent(w)
}

// fcTriggersList is ListTriggers: prefix, limit (1 to 100, default 20),
// nextToken (the name to start at), in name order.
func (s *Server) fcTriggersList(w http.ResponseWriter, r *http.Request) error {
	fn, err := s.fcFunction(r)
	if err != nil {
		return err
	}
	page, next, err := fcNamePage(r.URL.Query(), fn.Triggers, func(t *nimbus.Trigger) string { return t.Name })
	if err != nil {
		return err
	}
	out := struct {
		Triggers  []fcTrigger `json:"triggers"`
		NextToken string      `json:"nextToken,omitempty"`
	}{Triggers: []fcTrigger{}, NextToken: next}
	for _, t := range page {
		out.Triggers = append(out.Triggers, s.fcTriggerView(r, fn.Name, t))
	}
	return fcWriteJSON(w, http.StatusOK, out)
}

// fcTriggerView is t in Function Compute's shape: http and timer triggers
// made in this dialect with Function Compute's triggerConfig, the others
// with Nimbus's config (secrets redacted).
func (s *Server) fcTriggerView(r *http.Request, function string, t *nimbus.Trigger) fcTrigger {
	v := fcTrigger{TriggerName: t.Name, TriggerType: t.Type, TriggerID: t.ID, Qualifier: t.Qualifier,
		Description: t.Description, TargetArn: s.fcARN(function), Status: "Disabled",
		CreatedTime: fcTime(t.Created), LastModifiedTime: fcTime(t.LastModified)}
	if t.Enabled {
		v.Status = "Enabled"
	}
	if t.Qualifier != "" {
		v.TargetArn += "/" + t.Qualifier
	}
	if v.Qualifier == "" {
		v.Qualifier = "LATEST"
	}
	cfg := ""
	switch t.Type {
	case nimbus.TriggerHTTP:
		cfg = fcHTTPView(t)
		scheme := "http"
		if r.TLS != nil {
			scheme = "https"
		}
		u := scheme + "://" + r.Host + urlPrefix + funcurl.Path(function, t)
		v.HTTPTrigger = &fcHTTPTrigger{URLInternet: u, URLIntranet: u}
	case nimbus.TriggerTimer:
		cfg = fcTimerView(t)
	}
	if cfg == "" {
		if ts, err := s.triggerService(); err == nil {
			cfg = string(shownConfig(ts, t))
		} else {
			cfg = string(t.Config)
		}
	}
	v.TriggerConfig = cfg
	return v
}

// fcHTTPView is a function URL's config as Function Compute's http
// triggerConfig, or "" for a URL it cannot express (authType KEY, an
// invoke mode).
func fcHTTPView(t *nimbus.Trigger) string {
	c, err := funcurl.ParseConfig(t.Config)
	if err != nil || c.InvokeMode == funcurl.InvokeStream {
		return ""
	}
	out := fcHTTPConfig{Methods: c.Methods, CorsConfig: c.Cors}
	switch c.AuthType {
	case funcurl.AuthNone:
		out.AuthType = "anonymous"
	case funcurl.AuthIAM:
		out.AuthType = "function"
	default:
		return ""
	}
	if len(out.Methods) == 0 {
		out.Methods = []string{"GET", "POST", "PUT", "DELETE", "HEAD", "PATCH", "OPTIONS"}
	}
	b, _ := json.Marshal(out)
	return string(b)
}

// fcTimerView is a timer's config as Function Compute's timer
// triggerConfig, or "" for one made outside this dialect (its schedule
// may be a form Function Compute has not, and its event is a CloudEvent).
func fcTimerView(t *nimbus.Trigger) string {
	var c timer.Config
	if err := json.Unmarshal(t.Config, &c); err != nil || c.Format != timer.FormatFC {
		return ""
	}
	out := fcTimerConfig{CronExpression: c.Schedule, Enable: &t.Enabled}
	if c.Timezone != "" {
		out.CronExpression = "CRON_TZ=" + c.Timezone + " " + c.Schedule
	}
	if len(c.Payload) > 0 && json.Unmarshal(c.Payload, &out.Payload) != nil {
		out.Payload = string(c.Payload)
	}
	b, _ := json.Marshal(out)
	return string(b)
}
