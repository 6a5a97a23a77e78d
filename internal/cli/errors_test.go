package cli

import (
	"errors"
	"fmt"
	"net"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"github.com/aws/smithy-go"
)

// closedEndpoint returns the URL of a loopback port nothing listens on.
func closedEndpoint(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return "http://" + addr
}

func TestOneLine(t *testing.T) {
	f := newFake(t)
	c := newClient(f.URL, "us-east-1", aws.Credentials{})
	defer c.close()
	_, notFound := c.lambda.GetFunction(t.Context(), &lambda.GetFunctionInput{FunctionName: aws.String("nope")})
	_, unknownOp := c.get(t.Context(), "/nimbus/v1/nothing", nil)

	down := closedEndpoint(t)
	cd := newClient(down, "us-east-1", aws.Credentials{})
	defer cd.close()
	_, refused := cd.lambda.ListFunctions(t.Context(), &lambda.ListFunctionsInput{})

	tests := []struct {
		name string
		err  error
		want string
	}{
		{"nil", nil, ""},
		{"plain", errors.New("something broke"), "something broke"},
		{"lines", errors.Join(errors.New("line 3: bad"), errors.New("  line 5:   worse ")), "line 3: bad; line 5: worse"},
		{"sdk api error", notFound,
			"ResourceNotFoundException: Function not found: arn:aws:lambda:us-east-1:000000000000:function:nope"},
		{"wrapped sdk api error", fmt.Errorf("deploy x: %w", notFound),
			"deploy x: ResourceNotFoundException: Function not found: arn:aws:lambda:us-east-1:000000000000:function:nope"},
		{"nimbus endpoint error", unknownOp, "UnknownOperationException: Unknown operation: GET /nimbus/v1/nothing"},
		{"typed error", &smithy.OperationError{ServiceID: "Lambda", OperationName: "Invoke",
			Err: &types.TooManyRequestsException{Message: aws.String("Rate exceeded")}}, "TooManyRequestsException: Rate exceeded"},
		{"code only", &smithy.OperationError{ServiceID: "Lambda", OperationName: "Invoke",
			Err: &smithy.GenericAPIError{Code: "ServiceException"}}, "ServiceException"},
		{"connection refused, raw", refused, "cannot reach Nimbus at " + down + ": is `nimbus serve` running?"},
		{"connection refused, explained", &unreachableError{endpoint: "http://h:1/base", err: refused},
			"cannot reach Nimbus at http://h:1/base: is `nimbus serve` running?"},
		{"other operation error", &smithy.OperationError{ServiceID: "Lambda", OperationName: "GetFunction",
			Err: &smithy.DeserializationError{Err: errors.New("bad json")}}, "deserialization failed, bad json"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := OneLine(tc.err); got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}
