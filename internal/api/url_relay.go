package api

import (
	"io"
	"net/http"
	"strconv"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/trigger/funcurl"
)

// relay forwards the raw request to an HTTP function and its answer back.
func (c *urlCall) relay(body []byte) {
	path := c.path
	if c.r.URL.RawQuery != "" {
		path += "?" + c.r.URL.RawQuery
	}
	rel := &httpRelay{c: c}
	req := &nimbus.HTTPRequest{
		Method: c.r.Method, Path: path, Header: funcurl.ForwardHeader(c.r),
		Body: body, RemoteIP: funcurl.SourceIP(c.r),
	}
	// A RESPONSE_STREAM URL hands the answer over as it arrives.
	if c.cfg.Mode() == funcurl.InvokeStream {
		req.Respond = rel.start
	}
	res, err := c.s.cfg.Invoker.Invoke(traceContext(c.r), c.fn, nimbus.Invocation{RequestID: c.id, HTTP: req, TraceID: traceID(c.r), Trigger: nimbus.TriggerURL})
	if rel.started {
		if gone := callerGone(c.r); gone != nil {
			// The caller left mid-answer: nothing failed.
			c.s.log.Debug("the caller went away mid-answer", nimbus.LogFunction, c.fn.Name, nimbus.LogRequest, c.id, nimbus.LogErr, gone)
			panic(http.ErrAbortHandler)
		}
		c.count(err == nil && res.Err == nil)
		if err != nil || res.Err != nil {
			// The status is out: all that is left is to cut the answer
			// short, so the caller sees it is incomplete.
			c.s.log.Warn("HTTP function failed mid-answer", nimbus.LogFunction, c.fn.Name, nimbus.LogRequest, c.id, nimbus.LogErr, err, "function_error", res.Err)
			panic(http.ErrAbortHandler)
		}
		return
	}
	if !c.outcome(res, err) {
		return
	}
	if res.HTTP == nil {
		c.count(false)
		c.functionFailed(nil)
		return
	}
	c.count(true)
	length := len(res.HTTP.Body)
	if c.r.Method == http.MethodHead {
		length = -1 // a HEAD answer keeps the function's own
	}
	w := rel.startWith(res.HTTP.Status, res.HTTP.Header, length)
	_, _ = w.Write(res.HTTP.Body)
}

// httpRelay writes an HTTP function's answer: start sends the status and
// headers (with CORS and the request id), and what is written to the writer
// it returns goes to the caller at once (flushed), so that a streamed answer
// arrives as the function produces it.
type httpRelay struct {
	c       *urlCall
	started bool
}

func (rel *httpRelay) start(status int, header http.Header) io.Writer {
	return rel.startWith(status, header, -1)
}

// startWith is start with the answer's length when it is known (else -1),
// which replaces the function's Content-Length.
func (rel *httpRelay) startWith(status int, header http.Header, length int) io.Writer {
	rel.started = true
	c := rel.c
	funcurl.CopyResponseHeader(c.w.Header(), header)
	if length >= 0 {
		c.w.Header()["Content-Length"] = []string{strconv.Itoa(length)}
	}
	c.finishHeader()
	if !bodyAllowed(status) {
		c.w.Header().Del("Content-Length")
	}
	c.w.WriteHeader(status)
	if c.r.Method == http.MethodHead || !bodyAllowed(status) {
		return io.Discard
	}
	return flushWriter{w: c.w, rc: http.NewResponseController(c.w)}
}

// flushWriter flushes after every write.
type flushWriter struct {
	w  io.Writer
	rc *http.ResponseController
}

func (f flushWriter) Write(p []byte) (int, error) {
	n, err := f.w.Write(p)
	if err == nil {
		err = f.rc.Flush()
	}
	return n, err
}
