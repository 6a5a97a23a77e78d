// Command gofn is a test function built with aws-lambda-go: it speaks the
// Lambda Runtime API exactly as a user's Go function on provided.al2023 does.
//
// The event selects the behaviour:
//
//	{"fail": "msg"}       returns errors.New(msg) (errorType "errorString")
//	{"failCustom": "msg"} returns a *CustomError (errorType "CustomError")
//	{"big": n}            returns a string of n bytes
//	{"sleepMs": n}        sleeps n ms first
//	anything else         echoes the event with the invocation's context
package main

import (
	"context"
	"errors"
	"os"
	"strings"
	"time"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-lambda-go/lambdacontext"
)

// CustomError is a user-defined error type.
type CustomError struct{ Msg string }

func (e *CustomError) Error() string { return e.Msg }

type event struct {
	Fail       string `json:"fail,omitempty"`
	FailCustom string `json:"failCustom,omitempty"`
	Big        int    `json:"big,omitempty"`
	SleepMs    int    `json:"sleepMs,omitempty"`
	Echo       any    `json:"echo,omitempty"`
}

type reply struct {
	Echo         any    `json:"echo"`
	RequestID    string `json:"requestId"`
	FunctionARN  string `json:"functionArn"`
	FunctionName string `json:"functionName"`
	MemoryMB     int    `json:"memoryMB"`
	DeadlineMs   int64  `json:"deadlineMs"`
	TraceID      string `json:"traceId"`
	Handler      string `json:"handler"`
}

func handle(ctx context.Context, ev event) (any, error) {
	if ev.SleepMs > 0 {
		time.Sleep(time.Duration(ev.SleepMs) * time.Millisecond)
	}
	switch {
	case ev.Fail != "":
		return nil, errors.New(ev.Fail)
	case ev.FailCustom != "":
		return nil, &CustomError{ev.FailCustom}
	case ev.Big > 0:
		return strings.Repeat("x", ev.Big), nil
	}
	lc, _ := lambdacontext.FromContext(ctx)
	deadline, _ := ctx.Deadline()
	return reply{
		Echo:         ev.Echo,
		RequestID:    lc.AwsRequestID,
		FunctionARN:  lc.InvokedFunctionArn,
		FunctionName: lambdacontext.FunctionName,
		MemoryMB:     lambdacontext.MemoryLimitInMB,
		DeadlineMs:   deadline.UnixMilli(),
		TraceID:      os.Getenv("_X_AMZN_TRACE_ID"),
		Handler:      os.Getenv("_HANDLER"),
	}, nil
}

func main() {
	lambda.Start(handle)
}
