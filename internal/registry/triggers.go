package registry

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/trigger"
	"github.com/nimbus-serverless/nimbus/internal/trigger/funcurl"
)

// TriggerTypes is what trigger validation needs from outside the registry.
type TriggerTypes struct {
	// Factories are the trigger types this node knows; each validates its
	// type's Config.
	Factories map[string]trigger.Factory
	// Destination validates a failure destination (e.g. with
	// destination.Parse); nil accepts any of at most 2048 characters.
	Destination func(dest string) error
	// Prepare, when set, sees a created or updated trigger, validated,
	// with its function before it is stored: it may refuse it for that
	// function (user errors) or complete its Config (e.g. generate a key).
	// It runs in the compare-and-swap loop, so possibly more than once.
	Prepare func(fn *nimbus.Function, t *nimbus.Trigger) error
}

func (tt TriggerTypes) prepare(fn *nimbus.Function, t *nimbus.Trigger) error {
	if tt.Prepare == nil {
		return nil
	}
	return tt.Prepare(fn, t)
}

// Names lists the known types, sorted.
func (tt TriggerTypes) Names() []string {
	names := make([]string, 0, len(tt.Factories))
	for k := range tt.Factories {
		names = append(names, k)
	}
	sort.Strings(names)
	return names
}

// TriggerInput is what a trigger create or update sets. Nil fields are left
// as they are (on create: the defaults).
type TriggerInput struct {
	Name string
	// ID is the new trigger's ID (create only; empty: a new UUID).
	ID                 string
	Type               *string
	Enabled            *bool
	Config             json.RawMessage // nil: unchanged
	BatchSize          *int
	BatchWindow        *time.Duration
	MaxRetries         *int
	FailureDestination *string
	Concurrency        *int
	// Qualifier is the version or alias the trigger invokes ("" or
	// $LATEST: the function's $LATEST).
	Qualifier *string
	// Description is the owner's note (at most MaxTriggerDescription).
	Description *string
}

// MaxTriggerDescription bounds a trigger's Description.
const MaxTriggerDescription = 256

// maxTriggerConfig caps a trigger's Config.
const maxTriggerConfig = 64 << 10

// ValidateTriggerName checks a trigger name: 1 to 64 letters, digits,
// hyphens and underscores.
func ValidateTriggerName(name string) error {
	if !ValidName(name) {
		return validationf("triggerName", name, "Member must have length between 1 and 64 and satisfy regular expression pattern: [a-zA-Z0-9-_]+")
	}
	return nil
}

// apply validates the set fields of in and writes them into t.
func (in *TriggerInput) apply(t *nimbus.Trigger, types TriggerTypes) error {
	if in.Type != nil {
		if t.Type != "" && t.Type != *in.Type {
			return nimbus.Invalidf("The type of trigger %s cannot be changed from %s to %s: delete the trigger and create it again", t.Name, t.Type, *in.Type)
		}
		t.Type = *in.Type
	}
	if in.Enabled != nil {
		t.Enabled = *in.Enabled
	}
	if in.Config != nil {
		t.Config = slices.Clone(in.Config)
	}
	if in.Description != nil {
		if len(*in.Description) > MaxTriggerDescription {
			return validationf("description", *in.Description, "Member must have length less than or equal to 256")
		}
		t.Description = *in.Description
	}
	if in.Qualifier != nil {
		q := *in.Qualifier
		if q == nimbus.Latest {
			q = ""
		}
		if q != "" && !aliasName().MatchString(q) {
			return validationf("qualifier", q, "Member must satisfy regular expression pattern: (|[a-zA-Z0-9$_-]{1,128})")
		}
		t.Qualifier = q
	}
	if err := in.applyNumbers(t); err != nil {
		return err
	}
	if in.FailureDestination != nil {
		t.FailureDestination = *in.FailureDestination
	}
	return checkTrigger(t, types)
}

func (in *TriggerInput) applyNumbers(t *nimbus.Trigger) error {
	if in.BatchSize != nil {
		if n := *in.BatchSize; n < 1 || n > nimbus.MaxTriggerBatchSize {
			return validationf("batchSize", n, fmt.Sprintf("Member must have value between 1 and %d", nimbus.MaxTriggerBatchSize))
		}
		t.BatchSize = *in.BatchSize
	}
	if in.BatchWindow != nil {
		if w := *in.BatchWindow; w < 0 || w > nimbus.MaxTriggerBatchWindow {
			return validationf("batchWindow", w, "Member must be a duration from 0s to "+nimbus.MaxTriggerBatchWindow.String())
		}
		t.BatchWindow = *in.BatchWindow
	}
	if in.MaxRetries != nil {
		if n := *in.MaxRetries; n < 0 || n > nimbus.MaxTriggerRetries {
			return validationf("maxRetries", n, fmt.Sprintf("Member must have value between 0 and %d", nimbus.MaxTriggerRetries))
		}
		t.MaxRetries = *in.MaxRetries
	}
	if in.Concurrency != nil {
		if n := *in.Concurrency; n < 0 || n > nimbus.MaxTriggerConcurrency {
			return validationf("concurrency", n, fmt.Sprintf("Member must have value between 0 (the node's default) and %d", nimbus.MaxTriggerConcurrency))
		}
		t.Concurrency = *in.Concurrency
	}
	return nil
}

// checkTrigger validates the whole trigger: its type and Config (through
// the type's factory) and its failure destination.
func checkTrigger(t *nimbus.Trigger, types TriggerTypes) error {
	if t.Type == "" {
		return nimbus.Invalidf("The trigger's type is required: one of %s", strings.Join(types.Names(), ", "))
	}
	f := types.Factories[t.Type]
	if f == nil {
		return nimbus.Invalidf("Trigger type %q is not supported. Types on this node: %s", t.Type, strings.Join(types.Names(), ", "))
	}
	if len(t.Config) > maxTriggerConfig {
		return nimbus.Invalidf("The trigger's config is %d bytes, over the limit of %d", len(t.Config), maxTriggerConfig)
	}
	if len(t.Config) > 0 && !json.Valid(t.Config) {
		return nimbus.Invalidf("The trigger's config is not valid JSON")
	}
	if _, err := f(t.Config); err != nil {
		return fmt.Errorf("%s trigger config: %w", t.Type, err)
	}
	return checkDestination(t.FailureDestination, types)
}

func checkDestination(dest string, types TriggerTypes) error {
	if dest == "" {
		return nil
	}
	if types.Destination != nil {
		return types.Destination(dest)
	}
	if len(dest) > 2048 {
		return validationf("failureDestination", dest[:32]+"...", "Member must have length less than or equal to 2048")
	}
	return nil
}

// AddTrigger validates a new trigger and stores it on its function. Unset
// fields take their defaults: enabled, batch size 1, no batching window,
// nimbus.DefaultTriggerRetries retries. Errors: nimbus.ErrNotFound (no
// function), nimbus.ErrValidation, nimbus.ErrInvalid, nimbus.ErrConflict (the
// name is taken, or the function has an HTTP trigger already).
func (r *Registry) AddTrigger(ctx context.Context, function string, in TriggerInput, types TriggerTypes) (*nimbus.Trigger, error) {
	if err := ValidateTriggerName(in.Name); err != nil {
		return nil, err
	}
	now := r.cfg.Now().UTC()
	id := in.ID
	if id == "" {
		id = uuid.NewString()
	}
	t := nimbus.Trigger{ID: id, Name: in.Name, Enabled: true, BatchSize: nimbus.DefaultTriggerBatch,
		MaxRetries: nimbus.DefaultTriggerRetries, Created: now, LastModified: now}
	if err := in.apply(&t, types); err != nil {
		return nil, err
	}
	if err := complete(&t, nil); err != nil {
		return nil, err
	}
	var out nimbus.Trigger
	_, err := r.modify(ctx, function, "", func(fn *nimbus.Function) error {
		out = t
		if err := canAdd(fn, &out); err != nil {
			return err
		}
		if err := checkQualifier(fn, &out); err != nil {
			return err
		}
		if err := types.prepare(fn, &out); err != nil {
			return err
		}
		fn.Triggers = append(fn.Triggers, out)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &out, nil
}

// canAdd checks that t fits beside fn's triggers.
func canAdd(fn *nimbus.Function, t *nimbus.Trigger) error {
	if len(fn.Triggers) >= nimbus.MaxTriggersPerFunction {
		return nimbus.Invalidf("Function %s has %d triggers, the most a function may have", fn.Name, len(fn.Triggers))
	}
	for _, o := range fn.Triggers {
		if o.Name == t.Name {
			return nimbus.Errorf(nimbus.ErrConflict, "Function %s has a trigger named %s already", fn.Name, t.Name)
		}
	}
	return oneURL(fn, t)
}

// oneURL checks that t is not a second function URL (http trigger) for
// its qualifier: a function has at most one URL of its own and one per
// alias.
func oneURL(fn *nimbus.Function, t *nimbus.Trigger) error {
	if t.Type != nimbus.TriggerHTTP {
		return nil
	}
	for _, o := range fn.Triggers {
		if o.Type == nimbus.TriggerHTTP && o.Qualifier == t.Qualifier && o.Name != t.Name {
			if t.Qualifier != "" {
				return nimbus.Errorf(nimbus.ErrConflict, "Function %s has an HTTP trigger (function URL) for alias %s already: %s", fn.Name, t.Qualifier, o.Name)
			}
			return nimbus.Errorf(nimbus.ErrConflict, "Function %s has an HTTP trigger (function URL) already: %s", fn.Name, o.Name)
		}
	}
	return nil
}

// checkQualifier checks t's qualifier against fn: one of its versions or
// aliases; an alias only for a function URL, as Lambda's. Errors:
// nimbus.ErrValidation, nimbus.ErrNotFound.
func checkQualifier(fn *nimbus.Function, t *nimbus.Trigger) error {
	q := t.Qualifier
	switch {
	case q == "":
		return nil
	case t.Type == nimbus.TriggerHTTP:
		if err := ValidateURLQualifier(q); err != nil {
			return err
		}
		if findAlias(fn, q) == nil {
			return nimbus.Errorf(nimbus.ErrNotFound, "Function %s has no alias %s (a function URL takes an alias)", fn.Name, q)
		}
	case !hasVersion(fn, q) && findAlias(fn, q) == nil:
		return nimbus.Errorf(nimbus.ErrNotFound, "Function %s has no version or alias %s", fn.Name, q)
	}
	return nil
}

// ValidateURLQualifier checks the Qualifier of a function URL: an alias
// or $LATEST, never a version's number. Errors: nimbus.ErrValidation, with
// Lambda's message.
func ValidateURLQualifier(q string) error {
	if q == nimbus.Latest || validAliasName(q) == nil {
		return nil
	}
	return validationf("qualifier", q, `Member must satisfy regular expression pattern: (^\$LATEST$)|((?!^[0-9]+$)([a-zA-Z0-9-_]+))`)
}

// GetTrigger returns one trigger of a function. Errors: nimbus.ErrNotFound.
func (r *Registry) GetTrigger(ctx context.Context, function, name string) (*nimbus.Trigger, error) {
	fn, err := r.Get(ctx, function)
	if err != nil {
		return nil, err
	}
	i := triggerIndex(fn, name)
	if i < 0 {
		return nil, triggerNotFound(function, name)
	}
	t := fn.Triggers[i]
	return &t, nil
}

// FindTrigger returns the function and trigger with the given trigger ID.
// Errors: nimbus.ErrNotFound.
func (r *Registry) FindTrigger(ctx context.Context, id string) (*nimbus.Function, *nimbus.Trigger, error) {
	var found *nimbus.Function
	var t nimbus.Trigger
	err := r.Walk(ctx, func(fn *nimbus.Function) bool {
		for i := range fn.Triggers {
			if fn.Triggers[i].ID == id {
				found, t = fn, fn.Triggers[i]
				return false
			}
		}
		return true
	})
	if err != nil {
		return nil, nil, err
	}
	if found == nil {
		return nil, nil, nimbus.Errorf(nimbus.ErrNotFound, "The trigger %s does not exist", id)
	}
	return found, &t, nil
}

func triggerIndex(fn *nimbus.Function, name string) int {
	return slices.IndexFunc(fn.Triggers, func(t nimbus.Trigger) bool { return t.Name == name })
}

func triggerNotFound(function, name string) error {
	return nimbus.Errorf(nimbus.ErrNotFound, "Function %s has no trigger named %s", function, name)
}

// UpdateTrigger changes the set fields of in on an existing trigger (its
// type cannot change) and validates the result. Errors: nimbus.ErrNotFound,
// nimbus.ErrValidation, nimbus.ErrInvalid.
func (r *Registry) UpdateTrigger(ctx context.Context, function, name string, in TriggerInput, types TriggerTypes) (*nimbus.Trigger, error) {
	if in.Name != "" && in.Name != name {
		return nil, nimbus.Invalidf("A trigger cannot be renamed (from %s to %s): delete it and create it again", name, in.Name)
	}
	return r.changeTrigger(ctx, function, name, func(fn *nimbus.Function, t *nimbus.Trigger) error {
		prev := t.Config
		if err := in.apply(t, types); err != nil {
			return err
		}
		if err := complete(t, prev); err != nil {
			return err
		}
		if err := oneURL(fn, t); err != nil {
			return err
		}
		if err := checkQualifier(fn, t); err != nil {
			return err
		}
		return types.prepare(fn, t)
	})
}

// complete finishes a validated trigger's config before it is stored, given
// the config it replaces (nil for a new trigger): a function URL whose
// authType is KEY keeps its key when the new config leaves it out, or gets
// a generated one (funcurl.Normalize). Every path that stores an http
// trigger comes through AddTrigger or UpdateTrigger, so a key changes only
// when it is set or rotated on purpose.
func complete(t *nimbus.Trigger, prev json.RawMessage) error {
	if t.Type != nimbus.TriggerHTTP {
		return nil
	}
	cfg, err := funcurl.Normalize(prev, t.Config)
	if err != nil {
		return fmt.Errorf("%s trigger config: %w", t.Type, err)
	}
	t.Config = cfg
	return nil
}

// RotateTriggerKey gives a function URL (an http trigger whose authType is
// KEY) a new generated key: from then on the old key is refused. Errors:
// nimbus.ErrNotFound, nimbus.ErrInvalid (not a KEY URL).
func (r *Registry) RotateTriggerKey(ctx context.Context, function, name string) (*nimbus.Trigger, error) {
	return r.changeTrigger(ctx, function, name, func(_ *nimbus.Function, t *nimbus.Trigger) error {
		if t.Type != nimbus.TriggerHTTP {
			return nimbus.Invalidf("Trigger %s of function %s is of type %s: only an http trigger (a function URL) whose authType is KEY has a key", name, function, t.Type)
		}
		c, err := funcurl.ParseConfig(t.Config)
		if err != nil {
			return err
		}
		if c.AuthType != funcurl.AuthKey {
			return nimbus.Invalidf("The function URL %s of function %s has authType %s: it has no key to rotate (set authType KEY to require one)", name, function, c.AuthType)
		}
		c.Key = funcurl.NewKey()
		t.Config = c.Encode()
		return nil
	})
}

// SetTriggerEnabled enables or disables a trigger. Errors: nimbus.ErrNotFound.
func (r *Registry) SetTriggerEnabled(ctx context.Context, function, name string, enabled bool) (*nimbus.Trigger, error) {
	return r.changeTrigger(ctx, function, name, func(_ *nimbus.Function, t *nimbus.Trigger) error {
		t.Enabled = enabled
		return nil
	})
}

// changeTrigger applies change to one trigger in the compare-and-swap loop.
func (r *Registry) changeTrigger(ctx context.Context, function, name string, change func(*nimbus.Function, *nimbus.Trigger) error) (*nimbus.Trigger, error) {
	var out nimbus.Trigger
	_, err := r.modify(ctx, function, "", func(fn *nimbus.Function) error {
		i := triggerIndex(fn, name)
		if i < 0 {
			return triggerNotFound(function, name)
		}
		t := fn.Triggers[i]
		if err := change(fn, &t); err != nil {
			return err
		}
		t.LastModified = r.cfg.Now().UTC()
		fn.Triggers = slices.Clone(fn.Triggers)
		fn.Triggers[i] = t
		out = t
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &out, nil
}

// DeleteTrigger removes a trigger from its function. Errors:
// nimbus.ErrNotFound.
func (r *Registry) DeleteTrigger(ctx context.Context, function, name string) error {
	_, err := r.modify(ctx, function, "", func(fn *nimbus.Function) error {
		i := triggerIndex(fn, name)
		if i < 0 {
			return triggerNotFound(function, name)
		}
		fn.Triggers = slices.Delete(slices.Clone(fn.Triggers), i, i+1)
		return nil
	})
	return err
}
