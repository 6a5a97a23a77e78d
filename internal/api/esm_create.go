package api

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"

	"github.com/google/uuid"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/auth"
	"github.com/nimbus-serverless/nimbus/internal/registry"
)

// esmCreate is CreateEventSourceMapping: POST /2015-03-31/event-source-mappings/.
func (s *Server) esmCreate(w http.ResponseWriter, r *http.Request) error {
	ts, err := s.triggerService()
	if err != nil {
		return err
	}
	req, err := decodeESM(w, r)
	if err != nil {
		return err
	}
	if req.FunctionName == nil {
		return nimbus.Invalidf("FunctionName is required")
	}
	function, q, err := registry.ParseQualifiedName(*req.FunctionName)
	if err != nil {
		return err
	}
	if err := allow(r, auth.Manage, function); err != nil {
		return err
	}
	in, err := esmTriggerInput(req)
	if err != nil {
		return err
	}
	in.Qualifier = &q
	t, err := s.reg.AddTrigger(r.Context(), function, in, ts.Types())
	if err != nil {
		return s.notFound(function, q, err)
	}
	return writeJSON(w, http.StatusAccepted, s.viewESM(ts, function, t))
}

// esmTriggerInput maps a CreateEventSourceMapping request onto a kafka
// trigger named "esm-" and the start of its UUID.
func esmTriggerInput(req *esmRequest) (registry.TriggerInput, error) {
	cfg, err := esmKafkaSource(req)
	if err != nil {
		return registry.TriggerInput{}, err
	}
	batch, retries, window, dest, err := esmSettings(req)
	if err != nil {
		return registry.TriggerInput{}, err
	}
	if batch == nil {
		n := esmDefaultBatchSize
		batch = &n
	}
	if window == nil {
		w := esmDefaultWindow
		window = &w
	}
	raw, _ := json.Marshal(cfg)
	id := uuid.NewString()
	typ := nimbus.TriggerKafka
	return registry.TriggerInput{
		Name: "esm-" + id[:8], ID: id, Type: &typ, Enabled: req.Enabled, Config: raw,
		BatchSize: batch, BatchWindow: window, MaxRetries: retries, FailureDestination: dest,
	}, nil
}

// esmKafkaSource checks that the request names a self-managed Kafka source
// and returns the kafka trigger's config.
func esmKafkaSource(req *esmRequest) (kafkaConfig, error) {
	var cfg kafkaConfig
	if req.EventSourceArn != nil {
		return cfg, nimbus.Invalidf(errOnlyKafka, "; EventSourceArn "+*req.EventSourceArn+" is not supported")
	}
	if req.SelfManagedEventSource == nil {
		return cfg, nimbus.Invalidf(errOnlyKafka, "; the request names no SelfManagedEventSource")
	}
	eps := req.SelfManagedEventSource.Endpoints
	for k := range eps {
		if k != kafkaBootstrap {
			return cfg, nimbus.Invalidf(errOnlyKafka, "; endpoint type "+k+" is not supported")
		}
	}
	cfg.Brokers = eps[kafkaBootstrap]
	if len(cfg.Brokers) == 0 {
		return cfg, nimbus.Invalidf("SelfManagedEventSource.Endpoints.%s must list at least one broker (host:port)", kafkaBootstrap)
	}
	if len(req.Topics) != 1 {
		return cfg, nimbus.Invalidf("Topics must hold exactly one topic, not %d", len(req.Topics))
	}
	cfg.Topic = req.Topics[0]
	if req.StartingPosition == nil {
		return cfg, nimbus.Invalidf("StartingPosition is required for a Kafka event source mapping: LATEST or TRIM_HORIZON")
	}
	if p := *req.StartingPosition; !slices.Contains([]string{"LATEST", "TRIM_HORIZON"}, p) {
		return cfg, nimbus.Invalidf("StartingPosition %q is not supported for Kafka: use LATEST or TRIM_HORIZON", p)
	}
	cfg.StartPosition = *req.StartingPosition
	if c := req.SelfManagedKafkaEventSourceConfig; c != nil {
		cfg.Group = strings.TrimSpace(c.ConsumerGroupId)
	}
	return cfg, nil
}

// esmUpdate is UpdateEventSourceMapping: PUT /2015-03-31/event-source-mappings/{UUID}.
func (s *Server) esmUpdate(w http.ResponseWriter, r *http.Request) error {
	ts, err := s.triggerService()
	if err != nil {
		return err
	}
	fn, t, err := s.findESM(r)
	if err != nil {
		return err
	}
	req, err := decodeESM(w, r)
	if err != nil {
		return err
	}
	q, err := esmUpdatable(req, fn.Name)
	if err != nil {
		return err
	}
	batch, retries, window, dest, err := esmSettings(req)
	if err != nil {
		return err
	}
	in := registry.TriggerInput{Enabled: req.Enabled, BatchSize: batch, BatchWindow: window, MaxRetries: retries, FailureDestination: dest, Qualifier: q}
	t, err = s.reg.UpdateTrigger(r.Context(), fn.Name, t.Name, in, ts.Types())
	if err != nil {
		if q != nil {
			return s.notFound(fn.Name, *q, err)
		}
		return err
	}
	return writeJSON(w, http.StatusAccepted, s.viewESM(ts, fn.Name, t))
}

// esmUpdatable refuses changes UpdateEventSourceMapping cannot make in
// Nimbus: another function, or another source. It returns the qualifier
// a FunctionName names (another version or alias of the function may
// be), nil when the request names none.
func esmUpdatable(req *esmRequest, function string) (*string, error) {
	var qualifier *string
	if req.FunctionName != nil {
		name, q, err := registry.ParseQualifiedName(*req.FunctionName)
		if err != nil {
			return nil, err
		}
		if name != function {
			return nil, nimbus.Invalidf("Nimbus cannot move an event source mapping to another function (%s to %s): delete it and create another", function, name)
		}
		qualifier = &q
	}
	if req.EventSourceArn != nil || req.SelfManagedEventSource != nil || req.Topics != nil ||
		req.StartingPosition != nil || req.SelfManagedKafkaEventSourceConfig != nil {
		return nil, nimbus.Invalidf("The event source of a mapping cannot be changed (EventSourceArn, SelfManagedEventSource, Topics, StartingPosition, SelfManagedKafkaEventSourceConfig): delete it and create another")
	}
	return qualifier, nil
}
