package api

import (
	"bytes"
	"encoding/json"
	"net/http"
	"slices"
	"strconv"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/destination"
)

// Lambda's event invoke config API: the asynchronous invocation settings
// (retries, event age, destinations) of a function's $LATEST, versions and
// aliases, each qualifier its own, with Nimbus's flow-control settings
// (the function's own config only) and destination secret as Nimbus*
// fields of the same JSON.

func (s *Server) eventInvokeRoutes() {
	const path = "/2019-09-25/functions/{name}/event-invoke-config"
	s.handle("PUT "+path, s.eventInvokePut)
	s.handle("POST "+path, s.eventInvokeUpdate)
	s.handle("GET "+path, s.eventInvokeGet)
	s.handle("DELETE "+path, s.eventInvokeDelete)
	s.handle("GET "+path+"/list", s.eventInvokeList)
}

// eventInvokeRequest is the body of Put and Update. Nil fields were not
// given.
type eventInvokeRequest struct {
	MaximumRetryAttempts     *int
	MaximumEventAgeInSeconds *int
	DestinationConfig        *eventInvokeDestinations
	NimbusMaxConcurrency     *int
	NimbusMaxEventsPerSecond *float64
	NimbusDestinationSecret  *string
}

type eventInvokeDestinations struct {
	OnSuccess *eventInvokeDestination
	OnFailure *eventInvokeDestination
}

type eventInvokeDestination struct {
	Destination *string `json:",omitempty"`
}

// eventInvokeResponse is Lambda's FunctionEventInvokeConfig. The destination
// secret is write-only: only whether one is set is shown.
type eventInvokeResponse struct {
	LastModified               float64 // epoch seconds, as Lambda's timestamps
	FunctionArn                string
	MaximumRetryAttempts       *int `json:",omitempty"`
	MaximumEventAgeInSeconds   *int `json:",omitempty"`
	DestinationConfig          eventInvokeDestinations
	NimbusMaxConcurrency       int
	NimbusMaxEventsPerSecond   float64
	NimbusDestinationSecretSet bool
}

type eventInvokeListResponse struct {
	FunctionEventInvokeConfigs []eventInvokeResponse
	NextMarker                 *string `json:",omitempty"`
}

// maxEventInvokeListItems is Lambda's bound on MaxItems.
const maxEventInvokeListItems = 50

func (s *Server) eventInvokePut(w http.ResponseWriter, r *http.Request) error {
	return s.eventInvokeWrite(w, r, false)
}

func (s *Server) eventInvokeUpdate(w http.ResponseWriter, r *http.Request) error {
	return s.eventInvokeWrite(w, r, true)
}

// eventInvokeWrite serves Put (replace every setting) and Update (merge the
// given ones into an existing configuration).
func (s *Server) eventInvokeWrite(w http.ResponseWriter, r *http.Request, merge bool) error {
	fn, q, err := s.qualifierTarget(r)
	if err != nil {
		return err
	}
	req, err := s.decodeEventInvoke(w, r)
	if err != nil {
		return err
	}
	fn, err = s.reg.SetEventInvokeConfig(r.Context(), fn.Name, q, func(cur *nimbus.EventInvokeConfig) (*nimbus.EventInvokeConfig, error) {
		if !merge {
			return req.apply(&nimbus.EventInvokeConfig{}), nil
		}
		if cur == nil {
			return nil, s.noEventInvoke(fn.Name, q)
		}
		return req.apply(cur), nil
	})
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, s.eventInvokeShape(fn.Name, q, fn.EventInvokeFor(q)))
}

// decodeEventInvoke reads and checks a Put or Update body: unknown fields
// are refused (so a misspelt Nimbus field is not silently ignored), at least
// one setting must be given, and destinations must parse for this region
// and account.
func (s *Server) decodeEventInvoke(w http.ResponseWriter, r *http.Request) (*eventInvokeRequest, error) {
	var raw json.RawMessage
	if err := decode(w, r, maxConfigBody, &raw); err != nil {
		return nil, err
	}
	var req eventInvokeRequest
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return nil, newError(http.StatusBadRequest, errInvalidContent, "Could not parse request body into json: "+describeJSONError(err))
	}
	if req == (eventInvokeRequest{}) {
		return nil, nimbus.Invalidf("You must specify at least one of error handling or destination setting.")
	}
	if dc := req.DestinationConfig; dc != nil {
		for _, d := range []*eventInvokeDestination{dc.OnSuccess, dc.OnFailure} {
			if d == nil || d.Destination == nil || *d.Destination == "" {
				continue
			}
			if _, err := destination.Parse(*d.Destination, s.cfg.Region, s.cfg.Account); err != nil {
				return nil, err
			}
		}
	}
	return &req, nil
}

// apply writes the given settings into c and returns it.
func (req *eventInvokeRequest) apply(c *nimbus.EventInvokeConfig) *nimbus.EventInvokeConfig {
	if req.MaximumRetryAttempts != nil {
		c.MaximumRetryAttempts = new(*req.MaximumRetryAttempts)
	}
	if req.MaximumEventAgeInSeconds != nil {
		c.MaximumEventAgeInSeconds = new(*req.MaximumEventAgeInSeconds)
	}
	if dc := req.DestinationConfig; dc != nil {
		if dc.OnSuccess != nil {
			c.OnSuccess = dc.OnSuccess.value()
		}
		if dc.OnFailure != nil {
			c.OnFailure = dc.OnFailure.value()
		}
	}
	if req.NimbusMaxConcurrency != nil {
		c.MaxConcurrency = *req.NimbusMaxConcurrency
	}
	if req.NimbusMaxEventsPerSecond != nil {
		c.MaxEventsPerSecond = *req.NimbusMaxEventsPerSecond
	}
	if req.NimbusDestinationSecret != nil {
		c.DestinationSecret = *req.NimbusDestinationSecret
	}
	return c
}

func (d *eventInvokeDestination) value() string {
	if d.Destination == nil {
		return ""
	}
	return *d.Destination
}

func (s *Server) eventInvokeGet(w http.ResponseWriter, r *http.Request) error {
	fn, q, err := s.qualifierTarget(r)
	if err != nil {
		return err
	}
	c := fn.EventInvokeFor(q)
	if c == nil {
		return s.noEventInvoke(fn.Name, q)
	}
	return writeJSON(w, http.StatusOK, s.eventInvokeShape(fn.Name, q, c))
}

func (s *Server) eventInvokeDelete(w http.ResponseWriter, r *http.Request) error {
	fn, q, err := s.qualifierTarget(r)
	if err != nil {
		return err
	}
	_, err = s.reg.SetEventInvokeConfig(r.Context(), fn.Name, q, func(cur *nimbus.EventInvokeConfig) (*nimbus.EventInvokeConfig, error) {
		if cur == nil {
			return nil, s.noEventInvoke(fn.Name, q)
		}
		return nil, nil
	})
	if err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// eventInvokeList lists the configurations of the function's qualifiers:
// $LATEST's, then its versions' by number, then its aliases' in the order
// they were created. MaxItems (default and at most 50) pages them; the
// NextMarker is the last qualifier of the page.
func (s *Server) eventInvokeList(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	maxItems := maxEventInvokeListItems
	if v := q.Get("MaxItems"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxEventInvokeListItems {
			return nimbus.Errorf(nimbus.ErrValidation,
				"1 validation error detected: Value '%s' at 'maxItems' failed to satisfy constraint: Member must be an integer from 1 to %d", v, maxEventInvokeListItems)
		}
		maxItems = n
	}
	fn, err := s.getFunction(r.Context(), r)
	if err != nil {
		return err
	}
	quals := qualifiers(fn)
	if m := q.Get("Marker"); m != "" {
		i := slices.Index(quals, m)
		if i < 0 {
			return nimbus.Invalidf("The Marker %q is not valid: pass the NextMarker of a previous answer", m)
		}
		quals = quals[i+1:]
	}
	out := eventInvokeListResponse{FunctionEventInvokeConfigs: []eventInvokeResponse{}}
	last := ""
	for _, qual := range quals {
		c := fn.EventInvokeFor(qual)
		if c == nil {
			continue
		}
		if len(out.FunctionEventInvokeConfigs) == maxItems {
			out.NextMarker = &last
			break
		}
		out.FunctionEventInvokeConfigs = append(out.FunctionEventInvokeConfigs, s.eventInvokeShape(fn.Name, qual, c))
		last = qual
	}
	return writeJSON(w, http.StatusOK, out)
}

// qualifiers are fn's qualifiers: $LATEST, its versions' numbers in order,
// its aliases' names in the order they were created.
func qualifiers(fn *nimbus.Function) []string {
	out := make([]string, 0, 1+len(fn.Versions)+len(fn.Aliases))
	out = append(out, nimbus.Latest)
	for _, v := range fn.Versions {
		out = append(out, strconv.Itoa(v.Number))
	}
	for _, a := range fn.Aliases {
		out = append(out, a.Name)
	}
	return out
}

// noEventInvoke is Lambda's error for a function, version or alias
// without a configuration.
func (s *Server) noEventInvoke(name, q string) error {
	return nimbus.Errorf(nimbus.ErrNotFound, "The function %s:%s doesn't have an EventInvokeConfig", s.arn(name), q)
}

func (s *Server) eventInvokeShape(name, q string, c *nimbus.EventInvokeConfig) eventInvokeResponse {
	return eventInvokeResponse{
		LastModified:             float64(c.LastModified.UnixMilli()) / 1000,
		FunctionArn:              s.arn(name) + ":" + q,
		MaximumRetryAttempts:     c.MaximumRetryAttempts,
		MaximumEventAgeInSeconds: c.MaximumEventAgeInSeconds,
		DestinationConfig: eventInvokeDestinations{
			OnSuccess: eventInvokeDestinationOf(c.OnSuccess),
			OnFailure: eventInvokeDestinationOf(c.OnFailure),
		},
		NimbusMaxConcurrency:       c.MaxConcurrency,
		NimbusMaxEventsPerSecond:   c.MaxEventsPerSecond,
		NimbusDestinationSecretSet: c.DestinationSecret != "",
	}
}

func eventInvokeDestinationOf(dest string) *eventInvokeDestination {
	if dest == "" {
		return &eventInvokeDestination{}
	}
	return &eventInvokeDestination{Destination: &dest}
}
