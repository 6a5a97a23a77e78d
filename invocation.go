package nimbus

import (
	"io"
	"net/http"
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
}

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
