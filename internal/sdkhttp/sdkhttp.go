// Package sdkhttp is the HTTP transport Nimbus's AWS SDK clients use: it
// keeps a connection whose answer is still being read from being closed
// under it when the SDK closes the request's body early.
//
// The SDK (smithy-go) closes a request's body as soon as the answer's
// headers arrive, and the body's WriteTo then returns io.EOF where it should
// return nil. net/http, after sending a body of known length, copies what is
// left of it to check nothing is, takes that io.EOF for a failed write and
// closes the connection, though the answer is still being read from it: a
// streamed answer (InvokeWithResponseStream) ends in "use of closed network
// connection". It takes a server that answers before the client's writing
// goroutine runs again (a fast one on loopback, a loaded client), which
// Nimbus is. Given a body without WriteTo, net/http reads it instead, and a
// closed body's Read returns io.EOF, an end and not a failure.
package sdkhttp

import (
	"io"
	"net/http"
)

// Transport returns a RoundTripper that sends each request through base
// with a body that hides its WriteTo method.
func Transport(base http.RoundTripper) http.RoundTripper { return transport{base} }

// Client returns an HTTP client for an AWS SDK client: Transport over a copy
// of http.DefaultTransport.
func Client() *http.Client {
	return &http.Client{Transport: Transport(http.DefaultTransport.(*http.Transport).Clone())}
}

type transport struct{ base http.RoundTripper }

// CloseIdleConnections closes base's idle connections, if it keeps any.
func (t transport) CloseIdleConnections() { CloseIdle(t.base) }

// CloseIdle closes rt's idle connections, if it keeps any: what a
// RoundTripper that wraps another passes on from http.Client's
// CloseIdleConnections.
func CloseIdle(rt http.RoundTripper) {
	if c, ok := rt.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

// readOnly has only Read and Close: what the embedded body has besides
// (WriteTo) is hidden.
type readOnly struct{ io.ReadCloser }

func (t transport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Body == nil || req.Body == http.NoBody {
		return t.base.RoundTrip(req)
	}
	r := req.Clone(req.Context()) // a RoundTripper must not change the request
	r.Body = readOnly{req.Body}
	return t.base.RoundTrip(r)
}
