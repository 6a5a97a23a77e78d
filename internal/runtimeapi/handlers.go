package runtimeapi

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/nimbus-serverless/nimbus"
)

// Paths and headers of the Runtime API, as AWS documents them.
const (
	apiPrefix = "/2018-06-01/runtime/"

	hdrRequestID       = "Lambda-Runtime-Aws-Request-Id"
	hdrDeadline        = "Lambda-Runtime-Deadline-Ms"
	hdrFunctionARN     = "Lambda-Runtime-Invoked-Function-Arn"
	hdrTraceID         = "Lambda-Runtime-Trace-Id"
	hdrClientContext   = "Lambda-Runtime-Client-Context"
	hdrCognitoIdentity = "Lambda-Runtime-Cognito-Identity"
	hdrErrorType       = "Lambda-Runtime-Function-Error-Type"
)

// Error types of protocol faults, as Lambda names them.
const (
	errInvalidRequestID       = "InvalidRequestID"
	errInvalidStateTransition = "InvalidStateTransition"
	errTooLarge               = "RequestEntityTooLarge"
	errNotFound               = "NotFound"
	errMethodNotAllowed       = "MethodNotAllowed"
	errInvalidRequestFormat   = "InvalidRequestFormat"
)

// Log attribute keys.
const (
	keyPath      = "path"
	keyErrorType = "error_type"
	keyStatus    = "status"
	keyMessage   = "message"
)

// maxDrain bounds how much of an oversized body is read (and dropped) so
// that the runtime sees the 413 rather than a reset connection.
const maxDrain = 4 * MaxResponse

var (
	jsonType     = []string{"application/json"}
	acceptedBody = []byte(`{"status":"OK"}` + "\n")
)

// fault is a protocol fault answered to the runtime.
type fault struct {
	status int
	typ    string
	msg    string
}

// route dispatches a Runtime API request.
func (s *Server) route(w http.ResponseWriter, r *http.Request) {
	p, ok := strings.CutPrefix(r.URL.Path, apiPrefix)
	switch {
	case !ok: // not under the API prefix: 404 below
	case p == "invocation/next":
		if allow(w, r, http.MethodGet) {
			s.handleNext(w, r)
		}
		return
	case p == "init/error":
		if allow(w, r, http.MethodPost) {
			s.handleInitError(w, r)
		}
		return
	default:
		rest, ok := strings.CutPrefix(p, "invocation/")
		id, kind, _ := strings.Cut(rest, "/")
		if ok && id != "" && (kind == "response" || kind == "error") {
			if allow(w, r, http.MethodPost) {
				s.handleAnswer(w, r, id, kind == "error")
			}
			return
		}
	}
	s.writeFault(w, r, fault{http.StatusNotFound, errNotFound, "Unknown Runtime API path " + r.URL.Path})
}

// allow answers 405 unless r uses method.
func allow(w http.ResponseWriter, r *http.Request, method string) bool {
	if r.Method == method {
		return true
	}
	w.Header().Set("Allow", method)
	writeJSONError(w, http.StatusMethodNotAllowed, errMethodNotAllowed, "Method "+r.Method+" not allowed on "+r.URL.Path)
	return false
}

// handleNext is the /invocation/next long poll.
func (s *Server) handleNext(w http.ResponseWriter, r *http.Request) {
	s.readyOnce.Do(func() { close(s.ready) })
	stop := s.polling()
	var c *call
	select {
	case c = <-s.next:
	case <-r.Context().Done():
	case <-s.closed:
		abort(w)
	}
	stop()
	if c == nil {
		return
	}
	s.mu.Lock()
	c.delivered = true
	s.mu.Unlock()
	writeInvocation(w, &c.inv)
}

// abort drops the connection of w without an answer, so that a long poll
// ends with a connection error rather than an empty 200.
func abort(w http.ResponseWriter) {
	if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
		_ = conn.Close()
	}
}

// writeInvocation writes inv as the answer of /invocation/next.
func writeInvocation(w http.ResponseWriter, inv *Invocation) {
	deadline := inv.Deadline
	if deadline.IsZero() {
		deadline = time.Now().Add(maxDeadline)
	}
	// One allocation for the header values.
	v := [...]string{
		inv.RequestID,
		strconv.FormatInt(deadline.UnixMilli(), 10),
		inv.FunctionARN,
		strconv.Itoa(len(inv.Payload)),
		inv.TraceID,
		inv.ClientContext,
		inv.CognitoIdentity,
	}
	vs := v[:]
	h := w.Header()
	h["Content-Type"] = jsonType
	h[hdrRequestID] = vs[0:1:1]
	h[hdrDeadline] = vs[1:2:2]
	h[hdrFunctionARN] = vs[2:3:3]
	h["Content-Length"] = vs[3:4:4]
	if inv.TraceID != "" {
		h[hdrTraceID] = vs[4:5:5]
	}
	if inv.ClientContext != "" {
		h[hdrClientContext] = vs[5:6:6]
	}
	if inv.CognitoIdentity != "" {
		h[hdrCognitoIdentity] = vs[6:7:7]
	}
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(inv.Payload) // a failed write shows as the runtime never answering
}

// handleAnswer is /invocation/{id}/response (isErr false) and
// /invocation/{id}/error (isErr true).
func (s *Server) handleAnswer(w http.ResponseWriter, r *http.Request, id string, isErr bool) {
	c, f := s.claim(id)
	if f != nil {
		s.writeFault(w, r, *f)
		return
	}
	if !isErr && streamed(r) {
		s.handleStreamAnswer(w, r, c)
		return
	}
	body, tooLarge, err := readBody(r)
	switch {
	case err != nil:
		c.err = fmt.Errorf("read runtime answer: %w", err)
	case tooLarge:
		c.err = nimbus.Errorf(nimbus.ErrTooLarge, "%s", tooLargeMessage)
	case isErr:
		c.res.Err = parseError(r.Header.Get(hdrErrorType), body)
	default:
		c.res.Payload = body
	}
	close(c.done)
	switch {
	case err != nil:
		s.writeFault(w, r, fault{http.StatusBadRequest, errInvalidRequestFormat, "Reading the request body failed: " + err.Error()})
	case tooLarge:
		s.writeFault(w, r, fault{http.StatusRequestEntityTooLarge, errTooLarge,
			fmt.Sprintf("Exceeded maximum allowed payload size (%d bytes).", MaxResponse)})
	default:
		writeAccepted(w)
	}
}

// claim returns the in-flight invocation named id and marks it answered, or
// the fault to answer.
func (s *Server) claim(id string) (*call, *fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.cur
	switch {
	case c != nil && c.delivered && c.inv.RequestID == id:
		if c.answered {
			return nil, &fault{http.StatusBadRequest, errInvalidStateTransition, "Invocation " + id + " was already answered"}
		}
		c.answered = true
		return c, nil
	case id == s.last:
		return nil, &fault{http.StatusBadRequest, errInvalidStateTransition, "Invocation " + id + " was already answered"}
	case c == nil || !c.delivered:
		return nil, &fault{http.StatusBadRequest, errInvalidStateTransition, "No invocation is in flight"}
	default:
		return nil, &fault{http.StatusBadRequest, errInvalidRequestID, "Invalid request ID"}
	}
}

// handleInitError is /init/error.
func (s *Server) handleInitError(w http.ResponseWriter, r *http.Request) {
	body, tooLarge, err := readBody(r)
	switch {
	case err != nil:
		s.writeFault(w, r, fault{http.StatusBadRequest, errInvalidRequestFormat, "Reading the request body failed: " + err.Error()})
		return
	case tooLarge:
		s.writeFault(w, r, fault{http.StatusRequestEntityTooLarge, errTooLarge,
			fmt.Sprintf("Exceeded maximum allowed payload size (%d bytes).", MaxResponse)})
		return
	}
	fe := parseError(r.Header.Get(hdrErrorType), body)
	fe.Unhandled = true
	if f := s.setInitErr(fe); f != nil {
		s.writeFault(w, r, *f)
		return
	}
	close(s.initFailed)
	writeAccepted(w)
}

// setInitErr records the runtime's init error, or returns the fault to
// answer if init is over or failed already.
func (s *Server) setInitErr(fe *nimbus.FunctionError) *fault {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.initErr != nil {
		return &fault{http.StatusBadRequest, errInvalidStateTransition, "Init error was already reported"}
	}
	select {
	case <-s.ready:
		return &fault{http.StatusBadRequest, errInvalidStateTransition, "Init is over: the runtime has called /invocation/next"}
	default:
	}
	s.initErr = fe
	return nil
}

// readBody reads a request body of at most MaxResponse bytes. An oversized
// body is read and dropped (up to maxDrain) and reported as tooLarge.
func readBody(r *http.Request) (body []byte, tooLarge bool, err error) {
	if n := r.ContentLength; n > MaxResponse {
		drain(r.Body)
		return nil, true, nil
	} else if n >= 0 {
		body = make([]byte, n)
		_, err = io.ReadFull(r.Body, body)
		return body, false, err
	}
	body, err = io.ReadAll(io.LimitReader(r.Body, MaxResponse+1))
	if err == nil && len(body) > MaxResponse {
		drain(r.Body)
		return nil, true, nil
	}
	return body, false, err
}

func drain(body io.Reader) {
	_, _ = io.Copy(io.Discard, io.LimitReader(body, maxDrain))
}

// errorBody is the error document runtimes post to /error and /init/error.
type errorBody struct {
	Message    string          `json:"errorMessage"`
	Type       string          `json:"errorType"`
	StackTrace json.RawMessage `json:"stackTrace"`
}

// stackFrame is a frame as aws-lambda-go reports it.
type stackFrame struct {
	Path  string `json:"path"`
	Line  int    `json:"line"`
	Label string `json:"label"`
}

// parseError turns an error document into a FunctionError. A body that is
// not a JSON error document becomes the message; the type comes from the
// document, else from the Lambda-Runtime-Function-Error-Type header, else
// "Unhandled".
func parseError(headerType string, body []byte) *nimbus.FunctionError {
	fe := &nimbus.FunctionError{}
	var eb errorBody
	if err := json.Unmarshal(body, &eb); err != nil {
		fe.Message = string(body)
	} else {
		fe.Type, fe.Message, fe.StackTrace = eb.Type, eb.Message, parseStack(eb.StackTrace)
	}
	if fe.Type == "" {
		fe.Type = headerType
	}
	if fe.Type == "" {
		fe.Type = "Unhandled"
	}
	return fe
}

// parseStack accepts a stack trace as a list of strings (Python, Node), a
// list of aws-lambda-go frames, or a single string.
func parseStack(raw json.RawMessage) []string {
	if len(raw) == 0 || string(raw) == "null" {
		return nil
	}
	var lines []string
	if json.Unmarshal(raw, &lines) == nil {
		return lines
	}
	var frames []stackFrame
	if json.Unmarshal(raw, &frames) == nil {
		lines = make([]string, len(frames))
		for i, f := range frames {
			lines[i] = fmt.Sprintf("%s:%d %s", f.Path, f.Line, f.Label)
		}
		return lines
	}
	var one string
	if json.Unmarshal(raw, &one) == nil {
		return strings.Split(one, "\n")
	}
	return []string{string(raw)}
}

func writeAccepted(w http.ResponseWriter) {
	w.Header()["Content-Type"] = jsonType
	w.WriteHeader(http.StatusAccepted)
	_, _ = w.Write(acceptedBody)
}

// writeFault logs f and answers it to the runtime.
func (s *Server) writeFault(w http.ResponseWriter, r *http.Request, f fault) {
	s.log.Warn("runtime API fault", keyPath, r.URL.Path, keyErrorType, f.typ, keyStatus, f.status, keyMessage, f.msg)
	writeJSONError(w, f.status, f.typ, f.msg)
}

// writeJSONError writes Lambda's {errorMessage, errorType} document.
func writeJSONError(w http.ResponseWriter, status int, typ, msg string) {
	b, err := json.Marshal(struct {
		Message string `json:"errorMessage"`
		Type    string `json:"errorType"`
	}{msg, typ})
	if err != nil { // cannot happen for two strings
		b = []byte(`{"errorMessage":"internal error","errorType":"InternalError"}`)
	}
	w.Header()["Content-Type"] = jsonType
	w.WriteHeader(status)
	_, _ = w.Write(b)
}
