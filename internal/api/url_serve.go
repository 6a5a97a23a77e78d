package api

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/auth"
	"github.com/nimbus-serverless/nimbus/internal/engine"
	"github.com/nimbus-serverless/nimbus/internal/registry"
	"github.com/nimbus-serverless/nimbus/internal/trigger"
	"github.com/nimbus-serverless/nimbus/internal/trigger/funcurl"
)

// urlPrefix is where function URLs live: /fn/{name}/...
const urlPrefix = "/fn/"

// urlMessage is the body of a function URL's own errors, as Lambda's.
type urlMessage struct {
	Message string `json:"Message"`
}

// urlCall is one request to a function URL.
type urlCall struct {
	s   *Server
	w   http.ResponseWriter
	r   *http.Request
	fn  *nimbus.Function
	cfg funcurl.Config
	// qualifier is the alias whose URL this is ("": the function's).
	qualifier string
	path      string // after /fn/{name}, escaped, "/" at least
	id        string // the request id
	// trigger is the http trigger's name, for its counts.
	trigger string
}

// urlServe answers a request to a function URL. It is public: the API's
// authenticator does not apply, the URL's own auth type does.
func (s *Server) urlServe(w http.ResponseWriter, r *http.Request) {
	c := &urlCall{s: s, w: w, r: r, id: uuid.NewString()}
	if !c.load() {
		return
	}
	if c.cfg.Cors != nil && funcurl.IsPreflight(r) {
		c.cfg.Cors.Preflight(r, w.Header())
		w.Header().Set("X-Amzn-RequestId", c.id)
		w.WriteHeader(http.StatusOK)
		return
	}
	if !c.authorized() {
		return
	}
	if !c.cfg.Allows(r.Method) {
		w.Header().Set("Allow", strings.Join(c.cfg.Methods, ", "))
		c.fail(http.StatusMethodNotAllowed, "Method Not Allowed: this function URL answers "+strings.Join(c.cfg.Methods, ", "))
		return
	}
	body, ok := c.readBody()
	if !ok {
		return
	}
	if c.fn.State == nimbus.StateFailed {
		s.log.Warn("function URL of a failed function", nimbus.LogFunction, c.fn.Name, "reason", c.fn.StateReason)
		c.fail(http.StatusBadGateway, "Internal Server Error")
		return
	}
	if s.cfg.Invoker == nil {
		c.fail(http.StatusInternalServerError, "Internal Server Error: this node runs no engine")
		return
	}
	if funcurl.IsHTTPFunction(c.fn) {
		c.relay(body)
		return
	}
	c.invokeEvent(body)
}

// authorized checks the caller against the URL's auth type, answering the
// failures: 403 "Forbidden" as Lambda's URLs do, and 429 for an address
// that failed too often.
func (c *urlCall) authorized() bool {
	lim := c.s.cfg.Limiter
	if err := lim.Check(c.r); err != nil {
		c.fail(http.StatusTooManyRequests, err.(*auth.Error).Message)
		return false
	}
	ok := c.cfg.Authorized(c.r)
	if c.cfg.AuthType == funcurl.AuthIAM {
		p, err := c.s.authenticateURL(c.r)
		ok = err == nil && (p.Allow(auth.Invoke, c.fn.Name, "lambda:InvokeFunctionUrl") == nil ||
			c.s.policyGrants(c.r.Context(), p, c.fn.Name, c.qualifier, true))
	}
	if !ok {
		if c.cfg.AuthType == funcurl.AuthKey {
			lim.Failed(c.r) // authenticate counts its own failures
		}
		c.fail(http.StatusForbidden, "Forbidden")
	}
	return ok
}

// load finds the function, its URL configuration and what the request
// runs: the function, or for an alias's URL (/fn/{name}:{alias}/...) the
// version the alias routes this request to (trigger.Target). It answers
// 404 when there is no such URL.
func (c *urlCall) load() bool {
	rest := strings.TrimPrefix(c.r.URL.EscapedPath(), urlPrefix)
	seg, path, _ := strings.Cut(rest, "/")
	c.path = "/" + path
	seg, _ = url.PathUnescape(seg) // "%3A" is a ':' too
	name, q, _ := strings.Cut(seg, ":")
	if !registry.ValidName(name) {
		c.fail(http.StatusNotFound, "No function URL here: "+strconv.Quote(seg)+" is not a function name (function URLs are "+urlPrefix+"{function name}/... and "+urlPrefix+"{function name}:{alias}/...)")
		return false
	}
	fn, err := c.s.reg.Get(c.r.Context(), name)
	if errors.Is(err, nimbus.ErrNotFound) {
		c.fail(http.StatusNotFound, "Function not found: "+name)
		return false
	}
	if err != nil {
		c.error(err)
		return false
	}
	c.fn, c.qualifier = fn, q
	t := funcurl.Find(fn, q)
	if t != nil {
		c.trigger = t.Name
	}
	if t == nil || !t.Enabled {
		msg := "Function " + seg + " has no function URL: create one with CreateFunctionUrlConfig or an http trigger"
		if t != nil {
			msg = "The function URL of " + seg + " is disabled: enable its http trigger " + strconv.Quote(t.Name)
		}
		c.fail(http.StatusNotFound, msg)
		return false
	}
	if c.cfg, err = funcurl.Served(t.Config); err == nil {
		c.fn, err = trigger.Target(c.r.Context(), c.s.reg, fn, t.Qualifier)
	}
	if err != nil {
		c.error(err)
		return false
	}
	return true
}

// readBody reads the request body, answering 413 past the limit.
func (c *urlCall) readBody() ([]byte, bool) {
	body, err := io.ReadAll(http.MaxBytesReader(c.w, c.r.Body, funcurl.MaxRequestBody))
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		c.fail(http.StatusRequestEntityTooLarge, "Request body too large: a function URL accepts at most 6291456 bytes (6 MB)")
		return nil, false
	case err != nil:
		c.fail(http.StatusBadRequest, "Could not read the request body: "+err.Error())
		return nil, false
	}
	return body, true
}

// invokeEvent runs a Runtime-API function with the format 2.0 event (or,
// with Function Compute's conventions, its http trigger's event) and
// answers with its parsed response.
func (c *urlCall) invokeEvent(body []byte) {
	trace := traceID(c.r)
	in := funcurl.EventInput{Function: c.fn.Name, Path: c.path, Body: body, RequestID: c.id, TraceID: trace, Time: time.Now()}
	// A function with Function Compute's conventions gets its http
	// trigger's event, and answers as its built-in runtimes do.
	fcConv := c.fn.FC != nil && c.fn.FC.Conventions
	var payload []byte
	if fcConv {
		payload = funcurl.BuildFCEvent(c.r, c.s.cfg.Account, in).Marshal()
	} else {
		payload = funcurl.BuildEvent(c.r, in).Marshal()
	}
	if len(payload) > funcurl.MaxRequestBody {
		c.fail(http.StatusRequestEntityTooLarge, "Request too large: the function's event would be "+strconv.Itoa(len(payload))+
			" bytes (a binary body grows by a third in base64); a function URL accepts events of at most 6291456 bytes (6 MB)")
		return
	}
	res, ok := c.invoke(nimbus.Invocation{RequestID: c.id, Payload: payload, TraceID: trace, Trigger: nimbus.TriggerURL})
	if !ok {
		return
	}
	parse := funcurl.ParseResponse
	if fcConv {
		parse = funcurl.ParseFCResponse
	}
	resp, err := parse(res.Payload)
	if err != nil {
		c.count(false)
		c.functionLog("Function URL: " + err.Error() + "; the caller got 502")
		c.fail(http.StatusBadGateway, "Internal Server Error")
		return
	}
	c.count(true)
	c.respond(resp.Status, resp.Header, resp.Body)
}

// invoke calls the engine; ok is false when the invocation failed and
// outcome answered.
func (c *urlCall) invoke(req nimbus.Invocation) (res nimbus.Result, ok bool) {
	res, err := c.s.cfg.Invoker.Invoke(traceContext(c.r), c.fn, req)
	return res, c.outcome(res, err)
}

// outcome answers a failed invocation: the error's status (429 when
// throttled, 500 when the platform failed), or 502 when the function failed.
// It reports whether the invocation succeeded (and nothing was written).
func (c *urlCall) outcome(res nimbus.Result, err error) bool {
	if err == nil {
		err = callerGone(c.r)
	}
	switch {
	case err != nil:
		if c.error(err) {
			c.count(false)
		}
		return false
	case res.Err != nil:
		c.count(false)
		c.functionFailed(res.Err)
		return false
	}
	return true
}

// count adds the call to the http trigger's counts (a caller that went
// away is neither).
func (c *urlCall) count(delivered bool) {
	if ts := c.s.cfg.Triggers; ts != nil && c.trigger != "" {
		ts.Count(c.fn.Name, c.trigger, delivered)
	}
}

// functionFailed answers 502 for a function error (nil: a missing answer),
// as Lambda's URLs do.
func (c *urlCall) functionFailed(fe *nimbus.FunctionError) {
	if fe == nil {
		fe = &nimbus.FunctionError{Type: "Runtime.NoResponse", Message: "the function gave no answer"}
	}
	c.functionLog("Function URL: the function failed (" + fe.Type + ": " + fe.Message + "); the caller got 502")
	if fe.Type == "Function.ResponseSizeTooLarge" {
		c.fail(http.StatusBadGateway, "Response payload size exceeded maximum allowed payload size (6291456 bytes).")
		return
	}
	c.fail(http.StatusBadGateway, "Internal Server Error")
}

// respond writes a buffered answer with CORS headers and the request id.
func (c *urlCall) respond(status int, header http.Header, body []byte) {
	h := c.w.Header()
	for k, vs := range header {
		h[k] = append(h[k], vs...)
	}
	c.finishHeader()
	if !bodyAllowed(status) {
		body = nil
		h.Del("Content-Length")
	} else if c.r.Method != http.MethodHead || len(body) > 0 {
		h.Set("Content-Length", strconv.Itoa(len(body)))
	}
	c.w.WriteHeader(status)
	if len(body) > 0 && c.r.Method != http.MethodHead {
		_, _ = c.w.Write(body)
	}
}

// finishHeader adds the CORS headers and the request id, and keeps net/http
// from guessing a Content-Type the function did not set.
func (c *urlCall) finishHeader() {
	h := c.w.Header()
	if c.cfg.Cors != nil {
		c.cfg.Cors.Apply(c.r, h)
	}
	h.Set("X-Amzn-RequestId", c.id)
	if h.Get("Content-Type") == "" {
		h["Content-Type"] = nil
	}
}

func bodyAllowed(status int) bool {
	return status != http.StatusNoContent && status != http.StatusNotModified && status >= 200
}

// fail writes one of the URL's own errors: {"Message": msg}.
func (c *urlCall) fail(status int, msg string) {
	b, _ := json.Marshal(urlMessage{Message: msg})
	c.w.Header().Set("Content-Type", "application/json")
	c.respond(status, nil, b)
}

// error answers err through the API's one error mapper, in the URL's own
// shape ({"Message": ...}). It reports whether it answered: a caller that
// went away gets nothing.
func (c *urlCall) error(err error) bool {
	p := classify(c.r, c.s.log, err)
	switch {
	case p.gone:
		return false
	case p.status == http.StatusTooManyRequests:
		c.w.Header().Set("Retry-After", "1")
		p.msg = "Too Many Requests: " + p.msg
	case p.status >= 500 && p.id != "":
		p.msg = "Internal Server Error (id " + p.id + "); the Nimbus log has the details"
	}
	c.fail(p.status, p.msg)
	return true
}

// functionLog adds a line to the function's log, where its owner looks.
func (c *urlCall) functionLog(line string) {
	if c.s.cfg.Logs != nil {
		c.s.cfg.Logs.Append(engine.LogRecord{Time: time.Now().UTC(), Function: c.fn.Name, RequestID: c.id, Line: line})
	}
}

// authenticateURL authenticates a call to an AWS_IAM function URL: by its
// SigV4 signature, or by an ACS3 signature (Function Compute's http
// triggers of authType function) when the Authorization header is one.
func (s *Server) authenticateURL(r *http.Request) (auth.Principal, error) {
	if s.fcVerifier == nil || !strings.HasPrefix(r.Header.Get("Authorization"), "ACS3-") {
		return s.authenticate(r, true)
	}
	if err := s.cfg.Limiter.Check(r); err != nil {
		return auth.Principal{}, err
	}
	p, err := s.fcVerifier.Verify(r, true)
	if ae, ok := err.(*auth.Error); ok && ae.Status == http.StatusForbidden {
		s.cfg.Limiter.Failed(r)
	}
	return p, err
}
