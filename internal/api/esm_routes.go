package api

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/trigger"
)

// Lambda's event source mappings (CreateEventSourceMapping and friends),
// for self-managed Apache Kafka only: each maps onto a Nimbus trigger of
// type "kafka" whose ID is the mapping's UUID.

func (s *Server) esmRoutes() {
	const base = "/2015-03-31/event-source-mappings"
	for _, p := range []string{base, base + "/{$}"} {
		s.handle("POST "+p, s.esmCreate)
		s.handle("GET "+p, s.esmList)
	}
	s.handle("GET "+base+"/{uuid}", s.esmGet)
	s.handle("PUT "+base+"/{uuid}", s.esmUpdate)
	s.handle("DELETE "+base+"/{uuid}", s.esmDelete)
}

// Lambda's defaults and names for Kafka event source mappings.
const (
	esmDefaultBatchSize = 100
	esmDefaultWindow    = 500 * time.Millisecond
	esmMaxWindowSeconds = 300
	kafkaBootstrap      = "KAFKA_BOOTSTRAP_SERVERS"
	reportBatchFailures = "ReportBatchItemFailures"
)

// errOnlyKafka explains what the Lambda dialect supports.
const errOnlyKafka = "Nimbus supports event source mappings for self-managed Apache Kafka only " +
	"(SelfManagedEventSource with Endpoints KAFKA_BOOTSTRAP_SERVERS, one topic in Topics)%s. " +
	"Other event sources (RabbitMQ, NATS, MQTT, Redis Streams, timers, object storage) are Nimbus triggers: " +
	"POST /nimbus/v1/functions/{name}/triggers, or `nimbus triggers create`"

// kafkaConfig is the kafka trigger type's Config (trigger/kafka.Config).
type kafkaConfig struct {
	Brokers       []string `json:"brokers"`
	Topic         string   `json:"topic"`
	StartPosition string   `json:"startPosition,omitempty"`
	Group         string   `json:"group,omitempty"`
}

// esmRequest is the body of Create- and UpdateEventSourceMapping: the
// members Nimbus maps. Any other member set is refused (esmSupported).
type esmRequest struct {
	FunctionName                      *string               `json:"FunctionName"`
	EventSourceArn                    *string               `json:"EventSourceArn"`
	SelfManagedEventSource            *esmSelfManaged       `json:"SelfManagedEventSource"`
	SelfManagedKafkaEventSourceConfig *esmKafkaConfig       `json:"SelfManagedKafkaEventSourceConfig"`
	Topics                            []string              `json:"Topics"`
	StartingPosition                  *string               `json:"StartingPosition"`
	BatchSize                         *int                  `json:"BatchSize"`
	MaximumBatchingWindowInSeconds    *int                  `json:"MaximumBatchingWindowInSeconds"`
	MaximumRetryAttempts              *int                  `json:"MaximumRetryAttempts"`
	Enabled                           *bool                 `json:"Enabled"`
	DestinationConfig                 *esmDestinationConfig `json:"DestinationConfig"`
	FunctionResponseTypes             []string              `json:"FunctionResponseTypes"`
	Tags                              map[string]string     `json:"Tags"`
}

type esmSelfManaged struct {
	Endpoints map[string][]string `json:"Endpoints"`
}

type esmKafkaConfig struct {
	ConsumerGroupId string `json:"ConsumerGroupId,omitempty"`
}

type esmDestinationConfig struct {
	OnFailure *esmDestination `json:"OnFailure,omitempty"`
	OnSuccess *esmDestination `json:"OnSuccess,omitempty"`
}

type esmDestination struct {
	Destination string `json:"Destination,omitempty"`
}

// esmSupported are the request members Nimbus maps.
var esmSupported = []string{"FunctionName", "EventSourceArn", "SelfManagedEventSource",
	"SelfManagedKafkaEventSourceConfig", "Topics", "StartingPosition", "BatchSize",
	"MaximumBatchingWindowInSeconds", "MaximumRetryAttempts", "Enabled", "DestinationConfig",
	"FunctionResponseTypes", "Tags"}

// decodeESM reads a request body and refuses members Nimbus does not map.
func decodeESM(w http.ResponseWriter, r *http.Request) (*esmRequest, error) {
	var raw map[string]json.RawMessage
	if err := decode(w, r, maxConfigBody, &raw); err != nil {
		return nil, err
	}
	var refused []string
	for k, v := range raw {
		if !slices.Contains(esmSupported, k) && string(v) != "null" {
			refused = append(refused, k)
		}
	}
	if len(refused) > 0 {
		slices.Sort(refused)
		return nil, nimbus.Invalidf("Nimbus's event source mappings do not support %s", strings.Join(refused, ", "))
	}
	b, _ := json.Marshal(raw)
	var req esmRequest
	if err := json.Unmarshal(b, &req); err != nil {
		return nil, newError(http.StatusBadRequest, errInvalidContent, "Could not parse request body into json: "+describeJSONError(err))
	}
	return &req, nil
}

// esmView is Lambda's EventSourceMappingConfiguration.
type esmView struct {
	UUID                              string                `json:"UUID"`
	FunctionArn                       string                `json:"FunctionArn"`
	State                             string                `json:"State"`
	StateTransitionReason             string                `json:"StateTransitionReason"`
	LastModified                      float64               `json:"LastModified"`
	LastProcessingResult              string                `json:"LastProcessingResult"`
	BatchSize                         int                   `json:"BatchSize"`
	MaximumBatchingWindowInSeconds    int                   `json:"MaximumBatchingWindowInSeconds"`
	MaximumRetryAttempts              int                   `json:"MaximumRetryAttempts"`
	StartingPosition                  string                `json:"StartingPosition,omitempty"`
	Topics                            []string              `json:"Topics"`
	SelfManagedEventSource            esmSelfManaged        `json:"SelfManagedEventSource"`
	SelfManagedKafkaEventSourceConfig *esmKafkaConfig       `json:"SelfManagedKafkaEventSourceConfig,omitempty"`
	DestinationConfig                 *esmDestinationConfig `json:"DestinationConfig,omitempty"`
	FunctionResponseTypes             []string              `json:"FunctionResponseTypes"`
}

// viewESM shows a kafka trigger as an event source mapping (its
// FunctionArn qualified by the trigger's version or alias).
func (s *Server) viewESM(ts TriggerService, function string, t *nimbus.Trigger) esmView {
	var c kafkaConfig
	_ = json.Unmarshal(shownConfig(ts, t), &c)
	v := esmView{
		UUID: t.ID, FunctionArn: s.arnQualified(function, t.Qualifier), State: "Disabled", StateTransitionReason: "USER_INITIATED",
		LastModified: float64(t.LastModified.UnixMilli()) / 1000, BatchSize: max(t.BatchSize, 1),
		MaximumBatchingWindowInSeconds: int(t.BatchWindow / time.Second), MaximumRetryAttempts: t.MaxRetries,
		StartingPosition: c.StartPosition, Topics: []string{c.Topic},
		SelfManagedEventSource: esmSelfManaged{Endpoints: map[string][]string{kafkaBootstrap: c.Brokers}},
		FunctionResponseTypes:  []string{reportBatchFailures},
	}
	if c.Group != "" {
		v.SelfManagedKafkaEventSourceConfig = &esmKafkaConfig{ConsumerGroupId: c.Group}
	}
	if t.FailureDestination != "" {
		v.DestinationConfig = &esmDestinationConfig{OnFailure: &esmDestination{Destination: t.FailureDestination}}
	}
	if t.Enabled {
		v.State = "Enabled"
	}
	v.LastProcessingResult = processingResult(ts.Status(function, t))
	return v
}

// processingResult is Lambda's LastProcessingResult, from the status.
func processingResult(st trigger.StatusView) string {
	switch {
	case st.State == trigger.StateError:
		return "PROBLEM: " + st.Reason
	case st.LastEvent.IsZero():
		return "No records processed"
	}
	return "OK"
}

// esmSettings validates the members shared by create and update and writes
// them into in's fields.
func esmSettings(req *esmRequest) (batch, retries *int, window *time.Duration, dest *string, err error) {
	if n := req.BatchSize; n != nil && (*n < 1 || *n > nimbus.MaxTriggerBatchSize) {
		return nil, nil, nil, nil, esmValidationf("batchSize", *n, fmt.Sprintf("Member must have value between 1 and %d", nimbus.MaxTriggerBatchSize))
	}
	if n := req.MaximumBatchingWindowInSeconds; n != nil {
		if *n < 0 || *n > esmMaxWindowSeconds {
			return nil, nil, nil, nil, esmValidationf("maximumBatchingWindowInSeconds", *n, "Member must have value between 0 and 300")
		}
		w := time.Duration(*n) * time.Second
		window = &w
	}
	if n := req.MaximumRetryAttempts; n != nil && (*n < 0 || *n > nimbus.MaxTriggerRetries) {
		return nil, nil, nil, nil, nimbus.Invalidf("MaximumRetryAttempts must be 0 to %d in Nimbus (-1, retry forever, is not supported), not %d", nimbus.MaxTriggerRetries, *n)
	}
	for _, rt := range req.FunctionResponseTypes {
		if rt != reportBatchFailures {
			return nil, nil, nil, nil, nimbus.Invalidf("FunctionResponseTypes may hold only %s (Nimbus always honours partial batch responses), not %q", reportBatchFailures, rt)
		}
	}
	if dc := req.DestinationConfig; dc != nil {
		if dc.OnSuccess != nil && dc.OnSuccess.Destination != "" {
			return nil, nil, nil, nil, nimbus.Invalidf("DestinationConfig.OnSuccess is not supported for Kafka event source mappings; only OnFailure is")
		}
		d := ""
		if dc.OnFailure != nil {
			d = dc.OnFailure.Destination
		}
		dest = &d
	}
	return req.BatchSize, req.MaximumRetryAttempts, window, dest, nil
}

// esmValidationf builds Lambda's ValidationException message for one field.
func esmValidationf(field string, value any, constraint string) error {
	return nimbus.Errorf(nimbus.ErrValidation,
		"1 validation error detected: Value '%v' at '%s' failed to satisfy constraint: %s", value, field, constraint)
}
