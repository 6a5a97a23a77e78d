// Command urlfn is a test function built with aws-lambda-go that takes
// Lambda's function URL event in its typed form and answers with a typed
// function URL response echoing what it decoded.
package main

import (
	"context"
	"encoding/json"
	"errors"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambda"
)

func handle(_ context.Context, req events.LambdaFunctionURLRequest) (events.LambdaFunctionURLResponse, error) {
	if req.RawPath == "/error" {
		return events.LambdaFunctionURLResponse{}, errors.New("go handler failed")
	}
	body, err := json.Marshal(req)
	if err != nil {
		return events.LambdaFunctionURLResponse{}, err
	}
	return events.LambdaFunctionURLResponse{
		StatusCode: 200,
		Headers:    map[string]string{"Content-Type": "application/json", "X-Runtime": "go"},
		Body:       string(body),
		Cookies:    []string{"go=1; Path=/"},
	}, nil
}

func main() { lambda.Start(handle) }
