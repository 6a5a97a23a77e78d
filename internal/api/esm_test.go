package api_test

import (
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/middleware"

	"github.com/nimbus-serverless/nimbus/internal/api"
	"github.com/nimbus-serverless/nimbus/internal/node/nodetest"
)

func kafkaMapping(function string) *lambda.CreateEventSourceMappingInput {
	return &lambda.CreateEventSourceMappingInput{
		FunctionName: aws.String(function),
		SelfManagedEventSource: &types.SelfManagedEventSource{
			Endpoints: map[string][]string{"KAFKA_BOOTSTRAP_SERVERS": {"127.0.0.1:1", "127.0.0.2:1"}},
		},
		Topics:                         []string{"orders"},
		StartingPosition:               types.EventSourcePositionTrimHorizon,
		BatchSize:                      aws.Int32(50),
		MaximumBatchingWindowInSeconds: aws.Int32(2),
		MaximumRetryAttempts:           aws.Int32(5),
		FunctionResponseTypes:          []types.FunctionResponseType{types.FunctionResponseTypeReportBatchItemFailures},
		DestinationConfig:              &types.DestinationConfig{OnFailure: &types.OnFailure{Destination: aws.String("nats:orders.dlq")}},
	}
}

func TestEventSourceMappings(t *testing.T) {
	n := nodetest.Start(t, nil)
	c := client(n)
	ctx := t.Context()
	createPy(t, c, "consumer", pyZip(t))

	out, err := c.CreateEventSourceMapping(ctx, kafkaMapping("consumer"))
	if err != nil {
		t.Fatalf("CreateEventSourceMapping: %v", err)
	}
	id := aws.ToString(out.UUID)
	if id == "" || aws.ToString(out.FunctionArn) != "arn:aws:lambda:us-east-1:000000000000:function:consumer" ||
		aws.ToInt32(out.BatchSize) != 50 || aws.ToInt32(out.MaximumBatchingWindowInSeconds) != 2 ||
		aws.ToInt32(out.MaximumRetryAttempts) != 5 || out.StartingPosition != types.EventSourcePositionTrimHorizon ||
		len(out.Topics) != 1 || out.Topics[0] != "orders" || aws.ToString(out.State) != "Enabled" ||
		len(out.SelfManagedEventSource.Endpoints["KAFKA_BOOTSTRAP_SERVERS"]) != 2 ||
		aws.ToString(out.DestinationConfig.OnFailure.Destination) != "nats:orders.dlq" || out.LastModified == nil {
		t.Errorf("create: got %+v", out)
	}

	// It is a Nimbus trigger of type kafka.
	base := nodetest.Endpoint(n) + "/nimbus/v1/functions/consumer/triggers"
	list := callJSON[api.TriggerList](t, "GET", base, "", http.StatusOK)
	if len(list.Triggers) != 1 || list.Triggers[0].ID != id || list.Triggers[0].Type != "kafka" ||
		string(list.Triggers[0].Config) != `{"brokers":["127.0.0.1:1","127.0.0.2:1"],"topic":"orders","startPosition":"TRIM_HORIZON"}` {
		t.Errorf("as a trigger: got %+v", list.Triggers)
	}

	got, err := c.GetEventSourceMapping(ctx, &lambda.GetEventSourceMappingInput{UUID: aws.String(id)})
	if err != nil || aws.ToString(got.UUID) != id || aws.ToString(got.LastProcessingResult) == "" {
		t.Errorf("get: %+v, %v", got, err)
	}

	up, err := c.UpdateEventSourceMapping(ctx, &lambda.UpdateEventSourceMappingInput{
		UUID: aws.String(id), Enabled: aws.Bool(false), BatchSize: aws.Int32(7),
	})
	if err != nil || aws.ToString(up.State) != "Disabled" || aws.ToInt32(up.BatchSize) != 7 || aws.ToInt32(up.MaximumRetryAttempts) != 5 {
		t.Errorf("update: %+v, %v", up, err)
	}

	// Paging through three mappings, two at a time.
	for range 2 {
		if _, err := c.CreateEventSourceMapping(ctx, kafkaMapping("consumer")); err != nil {
			t.Fatal(err)
		}
	}
	var seen []string
	pages := lambda.NewListEventSourceMappingsPaginator(c, &lambda.ListEventSourceMappingsInput{
		FunctionName: aws.String("consumer"), MaxItems: aws.Int32(2),
	})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			t.Fatalf("list: %v", err)
		}
		for _, m := range page.EventSourceMappings {
			seen = append(seen, aws.ToString(m.UUID))
		}
	}
	if len(seen) != 3 || seen[0] != id {
		t.Errorf("list: got %v, want 3 starting with %s", seen, id)
	}

	del, err := c.DeleteEventSourceMapping(ctx, &lambda.DeleteEventSourceMappingInput{UUID: aws.String(id)})
	if err != nil || aws.ToString(del.State) != "Deleting" {
		t.Errorf("delete: %+v, %v", del, err)
	}
	_, err = c.GetEventSourceMapping(ctx, &lambda.GetEventSourceMappingInput{UUID: aws.String(id)})
	var nf *types.ResourceNotFoundException
	if !errors.As(err, &nf) {
		t.Errorf("get after delete: %v, want ResourceNotFoundException", err)
	}
}

func TestEventSourceMappingsBadInput(t *testing.T) {
	n := nodetest.Start(t, nil)
	c := client(n)
	createPy(t, c, "consumer", pyZip(t))
	mod := func(f func(*lambda.CreateEventSourceMappingInput)) *lambda.CreateEventSourceMappingInput {
		in := kafkaMapping("consumer")
		f(in)
		return in
	}
	tests := []struct {
		name     string
		in       *lambda.CreateEventSourceMappingInput
		wantCode string
		wantMsg  string
	}{
		{"SQS", &lambda.CreateEventSourceMappingInput{FunctionName: aws.String("consumer"),
			EventSourceArn: aws.String("arn:aws:sqs:us-east-1:000000000000:q")}, "InvalidParameterValueException", "self-managed Apache Kafka only"},
		{"MSK", mod(func(in *lambda.CreateEventSourceMappingInput) {
			in.SelfManagedEventSource = nil
			in.EventSourceArn = aws.String("arn:aws:kafka:us-east-1:000000000000:cluster/c/x")
		}), "InvalidParameterValueException", "self-managed Apache Kafka only"},
		{"no function", mod(func(in *lambda.CreateEventSourceMappingInput) { in.FunctionName = aws.String("nope") }),
			"ResourceNotFoundException", "function:nope"},
		{"no brokers", mod(func(in *lambda.CreateEventSourceMappingInput) {
			in.SelfManagedEventSource.Endpoints = map[string][]string{"KAFKA_BOOTSTRAP_SERVERS": {}}
		}), "InvalidParameterValueException", "at least one broker"},
		{"bad broker", mod(func(in *lambda.CreateEventSourceMappingInput) {
			in.SelfManagedEventSource.Endpoints = map[string][]string{"KAFKA_BOOTSTRAP_SERVERS": {"no-port"}}
		}), "InvalidParameterValueException", "host:port"},
		{"two topics", mod(func(in *lambda.CreateEventSourceMappingInput) { in.Topics = []string{"a", "b"} }),
			"InvalidParameterValueException", "exactly one topic"},
		{"no starting position", mod(func(in *lambda.CreateEventSourceMappingInput) { in.StartingPosition = "" }),
			"InvalidParameterValueException", "StartingPosition is required"},
		{"at timestamp", mod(func(in *lambda.CreateEventSourceMappingInput) {
			in.StartingPosition = types.EventSourcePositionAtTimestamp
		}),
			"InvalidParameterValueException", "LATEST or TRIM_HORIZON"},
		{"batch too big", mod(func(in *lambda.CreateEventSourceMappingInput) { in.BatchSize = aws.Int32(10001) }),
			"ValidationException", "batchSize"},
		{"window too long", mod(func(in *lambda.CreateEventSourceMappingInput) { in.MaximumBatchingWindowInSeconds = aws.Int32(301) }),
			"ValidationException", "maximumBatchingWindowInSeconds"},
		{"infinite retries", mod(func(in *lambda.CreateEventSourceMappingInput) { in.MaximumRetryAttempts = aws.Int32(-1) }),
			"InvalidParameterValueException", "retry forever"},
		{"filter criteria", mod(func(in *lambda.CreateEventSourceMappingInput) {
			in.FilterCriteria = &types.FilterCriteria{Filters: []types.Filter{{Pattern: aws.String(`{}`)}}}
		}), "InvalidParameterValueException", "do not support FilterCriteria"},
		{"on-success destination", mod(func(in *lambda.CreateEventSourceMappingInput) {
			in.DestinationConfig.OnSuccess = &types.OnSuccess{Destination: aws.String("nats:x")}
		}), "InvalidParameterValueException", "OnSuccess"},
		{"bad destination", mod(func(in *lambda.CreateEventSourceMappingInput) {
			in.DestinationConfig.OnFailure.Destination = aws.String("ftp://x")
		}), "InvalidParameterValueException", "destination"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := c.CreateEventSourceMapping(t.Context(), tt.in, func(o *lambda.Options) {
				o.APIOptions = append(o.APIOptions, withoutInputValidation)
			})
			var ae smithy.APIError
			if !errors.As(err, &ae) || ae.ErrorCode() != tt.wantCode || !strings.Contains(ae.ErrorMessage(), tt.wantMsg) {
				t.Errorf("got %v, want %s containing %q", err, tt.wantCode, tt.wantMsg)
			}
		})
	}

	id := "00000000-0000-0000-0000-000000000000"
	if _, err := c.GetEventSourceMapping(t.Context(), &lambda.GetEventSourceMappingInput{UUID: aws.String(id)}); !isCode(err, "ResourceNotFoundException") {
		t.Errorf("get unknown: %v", err)
	}
	out, err := c.CreateEventSourceMapping(t.Context(), kafkaMapping("consumer"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.UpdateEventSourceMapping(t.Context(), &lambda.UpdateEventSourceMappingInput{UUID: out.UUID, FunctionName: aws.String("other")})
	if !isCode(err, "InvalidParameterValueException") {
		t.Errorf("move to another function: %v", err)
	}
	_, err = c.ListEventSourceMappings(t.Context(), &lambda.ListEventSourceMappingsInput{Marker: aws.String("bogus")})
	if !isCode(err, "InvalidParameterValueException") {
		t.Errorf("list with a bogus marker: %v", err)
	}
}

// withoutInputValidation drops the SDK's client-side checks, so that the
// node's are what is tested.
func withoutInputValidation(s *middleware.Stack) error {
	_, err := s.Initialize.Remove("OperationInputValidation")
	return err
}

func isCode(err error, code string) bool {
	var ae smithy.APIError
	return errors.As(err, &ae) && ae.ErrorCode() == code
}
