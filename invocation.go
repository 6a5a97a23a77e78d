package nimbus

import (
	"io"
	"net/http"
	"time"
)

// Invocation is one call of a function, however it arrived: the Invoke API,
// a function URL, the Async Service or a trigger.
type Invocation struct {
	RequestID     string
	Payload       []byte
	ClientContext string
	TraceID       string
	// HTTP, when set, is forwarded as is to an HTTP function.
	HTTP *HTTPRequest
	// Stream, when set, receives the body of a Runtime-API function's
	// streamed response (Node's awslambda.streamifyResponse) as it
	// arrives, while the instance stays busy; Result.Payload is then
	// empty. A function that answers whole leaves it untouched.
	Stream io.Writer
	// Trigger is how the invocation arrived: one of the Trigger* kinds,
	// or a message trigger's type (kafka, rabbitmq, nats, mqtt, redis, s3).
	Trigger string
	// TaskID is the async task the invocation runs, if any.
	TaskID string
	// TraceLinks are the span contexts (W3C traceparent or
	// X-Amzn-Trace-Id values) of what caused the invocation without
	// waiting for it: the messages of a trigger's batch, the submitter of
	// an async event. The invocation's span links to each (internal/tracing).
	TraceLinks []string
	// Lineage is how many times each function ran in the chain of
	// invocations that led to this one, this one's function included
	// (internal/recursion sets it); the instance gets it in its trace
	// header, for what the function invokes next.
	Lineage string
}

// Trigger kinds of an Invocation that are not a trigger's type (those are
// TriggerTimer, TriggerKafka, ...).
const (
	TriggerAPI   = "api"   // the Invoke API, synchronous
	TriggerURL   = "url"   // a function URL
	TriggerAsync = "async" // the Async Service (an Event invoke)
)

// Result is an invocation's outcome.
type Result struct {
	Payload []byte
	// Err is set when the function failed (its own error, a crash, a
	// timeout): the API answers 200 with X-Amz-Function-Error.
	Err *FunctionError
	// LogTail holds the end (at most 4 KB) of this invocation's log.
	LogTail []byte
	// HTTP is the response of an HTTP function.
	HTTP *HTTPResponse
	// Report is what the engine measured of the invocation.
	Report Report
}

// Report is what the engine measured of one invocation, for its REPORT
// line, its invocation record, metrics and billing.
type Report struct {
	// InstanceID is the instance that ran it ("" when none did: an init
	// that failed).
	InstanceID string
	// ColdStart says an instance was started for this request; Init is
	// the function's init in that start, from its sandbox's start until
	// its runtime was ready (0 on a warm start): the node's part before
	// it (code fetched, sandbox made) is not billed.
	ColdStart bool
	Init      time.Duration
	// Queued is how long the request waited for an instance (a cold
	// start's own init included).
	Queued time.Duration
	// Duration is the run, from the request handed to the instance to
	// its answer.
	Duration time.Duration
	// MemoryMB is the function's memory size; MaxMemoryUsedMB the most
	// its instance used so far.
	MemoryMB        int
	MaxMemoryUsedMB int64
}

// HTTPRequest is a request forwarded as is to an HTTP function.
type HTTPRequest struct {
	Method   string
	Path     string // with the query string
	Header   http.Header
	Body     []byte
	RemoteIP string
	// Respond, when set, receives the answer as it arrives: it is called
	// once with the status and headers, and the body is copied to the
	// writer it returns while the instance stays busy (Result.HTTP then
	// has no Body).
	Respond func(status int, header http.Header) io.Writer
}

// HTTPResponse is an HTTP function's answer.
type HTTPResponse struct {
	Status int
	Header http.Header
	Body   []byte
}
