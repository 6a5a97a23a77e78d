package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/registry"
	"github.com/nimbus-serverless/nimbus/internal/trigger"
)

// TriggerService is the node's trigger manager as the API uses it: what
// validates triggers, and their live status. The triggers themselves are
// stored on their function through the registry.
type TriggerService interface {
	// Types validates trigger types, configs and failure destinations.
	Types() registry.TriggerTypes
	// Status is a trigger's live status on this node.
	Status(function string, t *nimbus.Trigger) trigger.StatusView
	// Count adds a function URL call to its http trigger's counts:
	// delivered when the function answered, failed when it or Nimbus
	// failed or it was throttled.
	Count(function, trigger string, delivered bool)
}

func (s *Server) triggerRoutes() {
	const base = "/nimbus/v1/functions/{name}/triggers"
	s.handle("POST "+base, s.triggersCreate)
	s.handle("GET "+base, s.triggersList)
	s.handle("GET "+base+"/{trigger}", s.triggersGet)
	s.handle("PUT "+base+"/{trigger}", s.triggersUpdate)
	s.handle("DELETE "+base+"/{trigger}", s.triggersDelete)
	s.handle("POST "+base+"/{trigger}/enable", s.triggersEnable)
	s.handle("POST "+base+"/{trigger}/disable", s.triggersDisable)
	s.handle("POST "+base+"/{trigger}/rotate-key", s.triggersRotateKey)
	s.handle("GET /nimbus/v1/triggers", s.triggersListAll)
	s.esmRoutes()
}

// triggerService returns the service or the error for a node without one.
func (s *Server) triggerService() (TriggerService, error) {
	if s.cfg.Triggers == nil {
		return nil, newError(http.StatusInternalServerError, errService, "this node runs no trigger manager")
	}
	return s.cfg.Triggers, nil
}

// TriggerView is a trigger as the Nimbus API shows it: the stored trigger,
// with its batching window as a duration string ("500ms"), and its live
// status on the node that answered.
type TriggerView struct {
	// Function is the trigger's function (shown by GET /nimbus/v1/triggers,
	// which lists every function's).
	Function           string             `json:"function,omitempty"`
	ID                 string             `json:"id"`
	Name               string             `json:"name"`
	Type               string             `json:"type"`
	Enabled            bool               `json:"enabled"`
	Description        string             `json:"description,omitempty"`
	Qualifier          string             `json:"qualifier,omitempty"`
	Config             json.RawMessage    `json:"config,omitempty"`
	BatchSize          int                `json:"batchSize"`
	BatchWindow        string             `json:"batchWindow"`
	MaxRetries         int                `json:"maxRetries"`
	FailureDestination string             `json:"failureDestination,omitempty"`
	Concurrency        int                `json:"concurrency,omitempty"`
	Created            time.Time          `json:"created"`
	LastModified       time.Time          `json:"lastModified"`
	Status             trigger.StatusView `json:"status"`
}

// TriggerList is the answer of GET .../triggers.
type TriggerList struct {
	Triggers []TriggerView `json:"triggers"`
}

// viewTrigger shows t; its Config's secrets are Redacted (shownConfig).
func viewTrigger(ts TriggerService, function string, t *nimbus.Trigger) TriggerView {
	return TriggerView{
		ID: t.ID, Name: t.Name, Type: t.Type, Enabled: t.Enabled, Description: t.Description, Qualifier: t.Qualifier, Config: shownConfig(ts, t),
		BatchSize: max(t.BatchSize, 1), BatchWindow: t.BatchWindow.String(), MaxRetries: t.MaxRetries,
		FailureDestination: t.FailureDestination, Concurrency: t.Concurrency,
		Created: t.Created, LastModified: t.LastModified, Status: ts.Status(function, t),
	}
}

// shownConfig is t's Config as answers show it: with the secrets of its
// type (passwords in URLs, tokens, the s3 secret) trigger.Redacted. A
// function URL's key is not one: it is shown to the function's owner.
func shownConfig(ts TriggerService, t *nimbus.Trigger) json.RawMessage {
	return trigger.RedactConfig(ts.Types().Factories[t.Type], t.Config)
}

// keepSecrets restores, in a create's or update's config, the secrets
// that an answer showed Redacted and the request sends back as they were
// shown: they keep their stored value (old is nil for a new trigger, whose
// config must not hold a redacted secret). When it restored one, it
// returns types whose Prepare refuses the update if the stored config
// changed in the meantime (a secret from an older config would otherwise
// be written back).
func keepSecrets(types registry.TriggerTypes, in *registry.TriggerInput, old *nimbus.Trigger) (registry.TriggerTypes, error) {
	if in.Config == nil {
		return types, nil
	}
	typ, stored := "", json.RawMessage(nil)
	if in.Type != nil {
		typ = *in.Type
	}
	if old != nil {
		typ, stored = old.Type, old.Config
	}
	cfg, err := trigger.RestoreConfig(types.Factories[typ], in.Config, stored)
	if err != nil {
		return types, fmt.Errorf("%s trigger %w", typ, err)
	}
	if bytes.Equal(cfg, in.Config) {
		return types, nil
	}
	in.Config = cfg
	prepare := types.Prepare
	types.Prepare = func(fn *nimbus.Function, t *nimbus.Trigger) error {
		for _, o := range fn.Triggers {
			if o.Name == t.Name && !bytes.Equal(o.Config, stored) {
				return nimbus.Errorf(nimbus.ErrConflict, "Trigger %s of function %s changed during the update: read it again and retry", t.Name, fn.Name)
			}
		}
		if prepare != nil {
			return prepare(fn, t)
		}
		return nil
	}
	return types, nil
}

// triggerRequest is the body of a create or update: absent fields keep
// their value (on create: the defaults). The read-only fields of a
// TriggerView are accepted and ignored, so that a view can be edited and
// sent back.
type triggerRequest struct {
	Name               *string         `json:"name"`
	Type               *string         `json:"type"`
	Enabled            *bool           `json:"enabled"`
	Description        *string         `json:"description"`
	Qualifier          *string         `json:"qualifier"`
	Config             json.RawMessage `json:"config"`
	BatchSize          *int            `json:"batchSize"`
	BatchWindow        json.RawMessage `json:"batchWindow"`
	MaxRetries         *int            `json:"maxRetries"`
	FailureDestination *string         `json:"failureDestination"`
	Concurrency        *int            `json:"concurrency"`

	ID           json.RawMessage `json:"id"`
	Created      json.RawMessage `json:"created"`
	LastModified json.RawMessage `json:"lastModified"`
	Status       json.RawMessage `json:"status"`
}

// input converts the request to the registry's input.
func (q *triggerRequest) input() (registry.TriggerInput, error) {
	in := registry.TriggerInput{
		Type: q.Type, Enabled: q.Enabled, BatchSize: q.BatchSize, MaxRetries: q.MaxRetries,
		FailureDestination: q.FailureDestination, Concurrency: q.Concurrency, Qualifier: q.Qualifier,
		Description: q.Description,
	}
	if q.Name != nil {
		in.Name = *q.Name
	}
	if len(q.Config) > 0 && string(q.Config) != "null" {
		in.Config = q.Config
	}
	if len(q.BatchWindow) > 0 && string(q.BatchWindow) != "null" {
		w, err := parseWindow(q.BatchWindow)
		if err != nil {
			return in, err
		}
		in.BatchWindow = &w
	}
	return in, nil
}

// parseWindow reads a batching window: a duration string such as "500ms".
func parseWindow(raw json.RawMessage) (time.Duration, error) {
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return 0, nimbus.Errorf(nimbus.ErrValidation, "batchWindow must be a duration string such as \"500ms\" or \"2s\", not %s", raw)
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, nimbus.Errorf(nimbus.ErrValidation, "batchWindow %q is not a duration such as \"500ms\" or \"2s\"", s)
	}
	return d, nil
}

// decodeStrict decodes a JSON object body into v, refusing unknown fields.
func decodeStrict(w http.ResponseWriter, r *http.Request, v any) error {
	var raw json.RawMessage
	if err := decode(w, r, maxConfigBody, &raw); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		msg := describeJSONError(err)
		if f, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
			msg = "unknown field " + f
		}
		return newError(http.StatusBadRequest, errInvalidContent, "Could not parse request body into json: "+msg)
	}
	return nil
}

// triggerName parses the {trigger} path value.
func triggerName(r *http.Request) (string, error) {
	name := r.PathValue("trigger")
	return name, registry.ValidateTriggerName(name)
}

// triggerPath parses the function and trigger names of a request.
func triggerPath(r *http.Request) (function, name string, err error) {
	if function, err = functionName(r); err != nil {
		return "", "", err
	}
	name, err = triggerName(r)
	return function, name, err
}

// notFoundFunction rewrites the registry's not-found for a function into
// the ARN form the other handlers use.
func (s *Server) notFoundFunction(function string, err error) error {
	var ue *nimbus.UserError
	if errors.As(err, &ue) && errors.Is(err, nimbus.ErrNotFound) && strings.HasPrefix(ue.Msg, "Function not found") {
		return nimbus.Errorf(nimbus.ErrNotFound, "Function not found: %s", s.arn(function))
	}
	return err
}
