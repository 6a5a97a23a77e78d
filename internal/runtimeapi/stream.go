package runtimeapi

import (
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"

	"github.com/nimbus-serverless/nimbus"
)

// Headers of a streamed response (Lambda's response streaming for custom
// runtimes): the mode on the request, the error as trailers.
const (
	hdrResponseMode = "Lambda-Runtime-Function-Response-Mode"
	hdrErrorBody    = "Lambda-Runtime-Function-Error-Body" // base64 of the error document
	streamingMode   = "streaming"
)

// MaxStream is the largest streamed response (Lambda's limit for response
// streaming, 200 MiB).
const MaxStream = 200 << 20

// errStreamClosed is what a write to an invocation's stream returns once
// Invoke has returned.
var errStreamClosed = errors.New("the invocation is over")

// streamGuard passes writes on to an invocation's Stream until Invoke
// returns (close): after that the runtime's late writes are refused, never
// interleaved with what the caller writes next.
type streamGuard struct {
	mu     sync.Mutex
	w      io.Writer
	closed bool
	n      int64 // bytes written
}

func (g *streamGuard) Write(p []byte) (int, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return 0, errStreamClosed
	}
	if g.n+int64(len(p)) > MaxStream {
		return 0, nimbus.ErrTooLarge
	}
	n, err := g.w.Write(p)
	g.n += int64(n)
	return n, err
}

// close ends the writes; it waits for one in progress.
func (g *streamGuard) close() {
	g.mu.Lock()
	g.closed = true
	g.mu.Unlock()
}

// streamed reports whether r is a streamed response.
func streamed(r *http.Request) bool {
	return strings.EqualFold(r.Header.Get(hdrResponseMode), streamingMode)
}

// handleStreamAnswer is a /response in streaming mode: its body goes to
// the invocation's Stream as it arrives (or is read whole, up to
// MaxResponse, when the invocation has none), and an error the function
// hit mid-stream comes in the trailers.
func (s *Server) handleStreamAnswer(w http.ResponseWriter, r *http.Request, c *call) {
	var err error
	tooLarge := false
	if c.stream != nil {
		_, err = io.Copy(c.stream, r.Body)
		if errors.Is(err, nimbus.ErrTooLarge) {
			err, tooLarge = nil, true
			drain(r.Body)
		}
	} else {
		c.res.Payload, tooLarge, err = readBody(r)
	}
	switch {
	case errors.Is(err, errStreamClosed):
		// Invoke has returned (a timeout): nothing to record.
	case err != nil:
		c.err = fmt.Errorf("read runtime's streamed answer: %w", err)
	case tooLarge:
		c.err = nimbus.Errorf(nimbus.ErrTooLarge, "%s", tooLargeMessage)
	default:
		c.res.Err = streamError(r.Trailer)
	}
	close(c.done)
	switch {
	case errors.Is(err, errStreamClosed):
		s.writeFault(w, r, fault{http.StatusBadRequest, errInvalidStateTransition, "Invocation " + c.inv.RequestID + " ended while its response streamed"})
	case err != nil:
		s.writeFault(w, r, fault{http.StatusBadRequest, errInvalidRequestFormat, "Reading the request body failed: " + err.Error()})
	case tooLarge:
		s.writeFault(w, r, fault{http.StatusRequestEntityTooLarge, errTooLarge, "Exceeded maximum allowed payload size."})
	default:
		writeAccepted(w)
	}
}

// streamError is the function error a streamed response's trailers report,
// nil when they report none.
func streamError(t http.Header) *nimbus.FunctionError {
	typ, body := t.Get(hdrErrorType), t.Get(hdrErrorBody)
	if typ == "" && body == "" {
		return nil
	}
	doc, err := base64.StdEncoding.DecodeString(body)
	if err != nil {
		doc = []byte(body)
	}
	return parseError(typ, doc)
}
