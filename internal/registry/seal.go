package registry

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/seal"
)

// Secrets at rest. A function's record is stored with its secrets sealed
// under the node key (Config.Key): the environment variables (the whole
// map, names too), the asynchronous invocation's webhook signing secret
// (EventInvokeConfig.DestinationSecret, of the function's config and of
// each version's and alias's) and each trigger's Config (the whole config: every type's
// passwords, tokens, URL credentials and function URL keys, without
// needing to know which members hold them). The associated data binds a
// sealed value to its function (and trigger), so a value copied into
// another record does not open. In memory the Function is clear: the
// registry seals in encode and opens in decode, and nothing else changes.
//
// The stored shape is the Function's JSON with two members of another
// type: "environment" is a JSON string (the sealed map) instead of an
// object, and a trigger's "config" is a JSON string (the sealed config)
// instead of an object; the destination secret is a sealed string. A record written before sealing (objects in clear)
// still decodes; decode reports it as clear, and the registry seals it
// again when it loads it (resealLegacy).

// storedFunction is a record as the functions bucket holds it.
type storedFunction struct {
	nimbus.Function
	// Environment shadows Function.Environment: a sealed JSON string, or
	// an object in a record from before sealing.
	Environment json.RawMessage `json:"environment,omitempty"`
	Triggers    []storedTrigger `json:"triggers,omitempty"`
}

type storedTrigger struct {
	nimbus.Trigger
	// Config shadows Trigger.Config: a sealed JSON string, or the config
	// itself in a record from before sealing.
	Config json.RawMessage `json:"config,omitempty"`
}

func envAAD(function string) []byte {
	return []byte("nimbus function environment\x00" + function)
}

func destinationSecretAAD(function string) []byte {
	return []byte("nimbus destination secret\x00" + function)
}

func triggerAAD(function, trigger string) []byte {
	return []byte("nimbus trigger config\x00" + function + "\x00" + trigger)
}

// encode returns fn's stored record, its secrets sealed.
func (r *Registry) encode(fn *nimbus.Function) ([]byte, error) {
	s := storedFunction{Function: *fn}
	s.Function.Environment, s.Function.Triggers = nil, nil
	if len(fn.Environment) > 0 {
		plain, err := json.Marshal(fn.Environment)
		if err != nil {
			return nil, fmt.Errorf("encode function: %w", err)
		}
		s.Environment = sealedString(r.cfg.Key.Seal(plain, envAAD(fn.Name)))
	}
	s.Function.EventInvoke = r.sealDestinationSecret(fn.EventInvoke, fn.Name)
	if len(fn.EventInvokeQualified) > 0 {
		s.Function.EventInvokeQualified = make(map[string]*nimbus.EventInvokeConfig, len(fn.EventInvokeQualified))
		for q, c := range fn.EventInvokeQualified {
			s.Function.EventInvokeQualified[q] = r.sealDestinationSecret(c, fn.Name+":"+q)
		}
	}
	for _, t := range fn.Triggers {
		st := storedTrigger{Trigger: t}
		st.Trigger.Config = nil
		if len(t.Config) > 0 {
			st.Config = sealedString(r.cfg.Key.Seal(t.Config, triggerAAD(fn.Name, t.Name)))
		}
		s.Triggers = append(s.Triggers, st)
	}
	b, err := json.Marshal(s)
	if err != nil {
		return nil, fmt.Errorf("encode function: %w", err)
	}
	return b, nil
}

// sealDestinationSecret returns c with its destination secret sealed for
// owner (the function's name, or name:qualifier for a version's or an
// alias's configuration), or c itself when it has none.
func (r *Registry) sealDestinationSecret(c *nimbus.EventInvokeConfig, owner string) *nimbus.EventInvokeConfig {
	if c == nil || c.DestinationSecret == "" {
		return c
	}
	sealed := *c
	sealed.DestinationSecret = r.cfg.Key.Seal([]byte(c.DestinationSecret), destinationSecretAAD(owner))
	return &sealed
}

// openDestinationSecrets opens, in place, the destination secrets of fn's
// event invoke configs, as decoded; clear reports one stored in clear. A
// secret that does not open is removed and reported as the error.
func (r *Registry) openDestinationSecrets(fn *nimbus.Function) (clear bool, err error) {
	open := func(c *nimbus.EventInvokeConfig, owner, what string) {
		if c == nil || c.DestinationSecret == "" {
			return
		}
		if !seal.Sealed(c.DestinationSecret) {
			clear = true
			return
		}
		plain, openErr := r.cfg.Key.Open(c.DestinationSecret, destinationSecretAAD(owner))
		if openErr != nil {
			err = cmp.Or(err, error(&OpenError{Function: fn.Name, What: what, Err: openErr}))
		}
		c.DestinationSecret = string(plain)
	}
	open(fn.EventInvoke, fn.Name, "destination secret")
	for q, c := range fn.EventInvokeQualified {
		open(c, fn.Name+":"+q, "destination secret of "+q)
	}
	return clear, err
}

// sealedString is a sealed value as a JSON string (sealed values are
// base64 after an ASCII prefix: nothing to escape).
func sealedString(v string) json.RawMessage { return json.RawMessage(`"` + v + `"`) }

// OpenError is why a stored function's secrets did not open: a value sealed
// under another node key (Unwrap gives seal.ErrWrongKey), or a damaged one.
type OpenError struct {
	Function string
	What     string // "environment" or "trigger NAME's config"
	Err      error
}

func (e *OpenError) Error() string {
	if errors.Is(e.Err, seal.ErrWrongKey) {
		return fmt.Sprintf("function %s: its %s is sealed under a different node key than this node's: start the node with the node key that sealed it (--node-key, NIMBUS_NODE_KEY or <data-dir>/%s)",
			e.Function, e.What, seal.FileName)
	}
	return fmt.Sprintf("function %s: its stored %s does not open with the node key: %v", e.Function, e.What, e.Err)
}

func (e *OpenError) Unwrap() error { return e.Err }

// decode reads a stored record. clear reports a record from before
// sealing (secrets in clear). A record whose secrets do not open returns
// an *OpenError together with the function as failed (unopened): without
// its environment, its unopened triggers disabled and without config,
// State Failed with the reason, so it is shown and refused to run.
func (r *Registry) decode(name string, b []byte) (fn *nimbus.Function, clear bool, err error) {
	var s storedFunction
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, false, fmt.Errorf("decode function %s: %w", name, err)
	}
	fn = &s.Function
	var openErr error
	env, envClear, err := r.openEnv(fn.Name, s.Environment)
	if err != nil {
		openErr = err
	}
	fn.Environment, clear = env, envClear
	secretClear, err := r.openDestinationSecrets(fn)
	openErr, clear = cmp.Or(openErr, err), clear || secretClear
	if len(s.Triggers) > 0 {
		fn.Triggers = make([]nimbus.Trigger, len(s.Triggers))
	}
	for i, st := range s.Triggers {
		t := st.Trigger
		cfg, cfgClear, err := r.openConfig(fn.Name, t.Name, st.Config)
		if err != nil {
			openErr = cmp.Or(openErr, err)
			t.Enabled = false
		}
		t.Config, clear = cfg, clear || cfgClear
		fn.Triggers[i] = t
	}
	if openErr != nil {
		failUnopened(fn, openErr)
		return fn, false, openErr
	}
	return fn, clear, nil
}

// failUnopened marks fn, whose secrets did not open, Failed.
func failUnopened(fn *nimbus.Function, err error) {
	fn.State, fn.LastUpdateStatus = nimbus.StateFailed, nimbus.UpdateFailed
	fn.StateReasonCode = "InvalidStateKMSKey"
	if errors.Is(err, seal.ErrWrongKey) {
		fn.StateReasonCode = "KMSKeyNotFound"
	}
	fn.StateReason = "Nimbus could not open the function's sealed secrets: " + err.Error()
}

// openEnv opens a stored environment: a sealed string, or a map in clear
// (clear true).
func (r *Registry) openEnv(function string, raw json.RawMessage) (map[string]string, bool, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, false, nil
	}
	sealed, ok := sealedValue(raw)
	if !ok {
		var env map[string]string
		if err := json.Unmarshal(raw, &env); err != nil {
			return nil, false, &OpenError{Function: function, What: "environment", Err: err}
		}
		return env, true, nil
	}
	plain, err := r.cfg.Key.Open(sealed, envAAD(function))
	if err != nil {
		return nil, false, &OpenError{Function: function, What: "environment", Err: err}
	}
	var env map[string]string
	if err := json.Unmarshal(plain, &env); err != nil {
		return nil, false, &OpenError{Function: function, What: "environment", Err: err}
	}
	return env, false, nil
}

// openConfig opens a stored trigger config: a sealed string, or the config
// in clear (clear true).
func (r *Registry) openConfig(function, trigger string, raw json.RawMessage) (json.RawMessage, bool, error) {
	if len(raw) == 0 {
		return nil, false, nil
	}
	sealed, ok := sealedValue(raw)
	if !ok {
		return raw, true, nil
	}
	plain, err := r.cfg.Key.Open(sealed, triggerAAD(function, trigger))
	if err != nil {
		return nil, false, &OpenError{Function: function, What: "trigger " + trigger + "'s config", Err: err}
	}
	return plain, false, nil
}

// sealedValue returns the sealed value that raw, a JSON string, holds.
func sealedValue(raw json.RawMessage) (string, bool) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || raw[0] != '"' {
		return "", false
	}
	var s string
	if json.Unmarshal(raw, &s) != nil || !seal.Sealed(s) {
		return "", false
	}
	return s, true
}
