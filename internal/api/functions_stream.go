package api

import (
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"

	"github.com/aws/aws-sdk-go-v2/aws/protocol/eventstream"
	"github.com/google/uuid"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/trigger/funcurl"
)

// eventStreamType is the Content-Type of an InvokeWithResponseStream answer.
const eventStreamType = "application/vnd.amazon.eventstream"

// functionsInvokeStream answers InvokeWithResponseStream: the function's
// answer as event-stream messages, PayloadChunk events as it arrives (an
// HTTP function's body, a Runtime-API function's streamed response) or at
// once (any other function's whole result),
// then one InvokeComplete event with the function's error, if any, and the
// log tail.
func (s *Server) functionsInvokeStream(w http.ResponseWriter, r *http.Request) error {
	fn, err := s.qualified(r.Context(), r, true)
	if err != nil {
		return err
	}
	if err := checkStreamInvoke(r, fn); err != nil {
		return err
	}
	if r.Header.Get("X-Amz-Invocation-Type") == "DryRun" {
		w.WriteHeader(http.StatusNoContent)
		return nil
	}
	clientContext, err := decodeClientContext(r.Header.Get("X-Amz-Client-Context"))
	if err != nil {
		return err
	}
	payload, err := readPayload(w, r)
	if err != nil {
		return err
	}
	if s.cfg.Invoker == nil {
		return newError(http.StatusInternalServerError, errService, "this node runs no engine")
	}
	es := &eventStreamWriter{w: w, rc: http.NewResponseController(w), enc: eventstream.NewEncoder(),
		id: uuid.NewString(), version: fn.Qualifier()}
	req := nimbus.Invocation{RequestID: es.id, Payload: payload, ClientContext: clientContext,
		TraceID: traceID(r), Trigger: nimbus.TriggerAPI}
	if funcurl.IsHTTPFunction(fn) {
		// As Invoke forwards it (a POST of the payload to "/"), with the
		// body handed over as it arrives.
		req.HTTP = &nimbus.HTTPRequest{Method: http.MethodPost, Path: "/", Body: payload,
			Header: http.Header{"Content-Type": {"application/json"}}, Respond: es.respond}
	} else {
		req.Stream = chunkWriter{es} // used by a function that streams (streamifyResponse)
	}
	res, err := s.cfg.Invoker.Invoke(traceContext(r), fn, req)
	if err == nil {
		err = callerGone(r)
	}
	if !es.started {
		if err != nil {
			return err // nothing is out yet: an error answer of its own
		}
		es.start()
		if res.Err == nil {
			_ = es.chunk(res.Payload) // an HTTP function's Payload is its body
		}
	} else if gone := callerGone(r); gone != nil {
		s.log.Debug("the caller went away mid-stream", nimbus.LogFunction, fn.Name, nimbus.LogRequest, es.id, nimbus.LogErr, gone)
		return nil
	}
	var tail []byte
	if r.Header.Get("X-Amz-Log-Type") == "Tail" {
		tail = res.LogTail
	}
	es.complete(s.completeEvent(r, res.Err, err, tail))
	return nil
}

// checkStreamInvoke checks an InvokeWithResponseStream's headers and its
// function's state, as Invoke does; Event is not one of its invocation
// types.
func checkStreamInvoke(r *http.Request, fn *nimbus.Function) error {
	switch t := r.Header.Get("X-Amz-Invocation-Type"); t {
	case "", "RequestResponse", "DryRun":
	default:
		return nimbus.Errorf(nimbus.ErrValidation,
			"1 validation error detected: Value '%s' at 'invocationType' failed to satisfy constraint: Member must satisfy enum value set: [RequestResponse, DryRun]", t)
	}
	if lt := r.Header.Get("X-Amz-Log-Type"); lt != "" && lt != "None" && lt != "Tail" {
		return nimbus.Errorf(nimbus.ErrValidation,
			"1 validation error detected: Value '%s' at 'logType' failed to satisfy constraint: Member must satisfy enum value set: [None, Tail]", lt)
	}
	if fn.State == nimbus.StateFailed {
		return nimbus.Errorf(nimbus.ErrConflict,
			"The operation cannot be performed at this time. The function is currently in the following state: Failed. %s", fn.StateReason)
	}
	return nil
}

// completeEvent is the InvokeComplete event of an invocation: its function
// error fe (ErrorCode its type, ErrorDetails its message) or the platform's
// err once the stream had begun.
func (s *Server) completeEvent(r *http.Request, fe *nimbus.FunctionError, err error, tail []byte) completeEvent {
	var ev completeEvent
	switch {
	case err != nil:
		p := classify(r, s.log, err)
		ev.ErrorCode, ev.ErrorDetails = p.typ, p.msg
	case fe != nil:
		ev.ErrorCode, ev.ErrorDetails = fe.Type, fe.Message
	}
	if len(tail) > 0 {
		ev.LogResult = base64.StdEncoding.EncodeToString(tail)
	}
	return ev
}

// completeEvent is the payload of an InvokeComplete event
// (InvokeWithResponseStreamCompleteEvent).
type completeEvent struct {
	ErrorCode    string `json:"ErrorCode,omitempty"`
	ErrorDetails string `json:"ErrorDetails,omitempty"`
	LogResult    string `json:"LogResult,omitempty"`
}

// eventStreamWriter writes an InvokeWithResponseStream answer: the HTTP
// header once (start), then event-stream messages, each flushed to the
// caller as it is written. It is used by one goroutine at a time: the
// engine's while the function streams, the handler's after.
type eventStreamWriter struct {
	w       http.ResponseWriter
	rc      *http.ResponseController
	enc     *eventstream.Encoder
	id      string // the request id
	version string // the executed version
	started bool
	err     error // the first write error: the caller is gone
}

// start sends the status and headers.
func (es *eventStreamWriter) start() {
	es.started = true
	h := es.w.Header()
	h.Set("X-Amzn-RequestId", es.id)
	h.Set("X-Amz-Executed-Version", es.version)
	h.Set("Content-Type", eventStreamType)
	es.w.WriteHeader(http.StatusOK)
	es.flush()
}

// respond is an HTTP function's nimbus.HTTPRequest.Respond: its status and
// headers stay with the function (Lambda's stream carries the body only);
// what it writes goes out as PayloadChunk events.
func (es *eventStreamWriter) respond(int, http.Header) io.Writer {
	es.start()
	return chunkWriter{es}
}

// chunk sends p as one PayloadChunk event (nothing when p is empty),
// starting the answer if it has not started.
func (es *eventStreamWriter) chunk(p []byte) error {
	if len(p) == 0 {
		return es.err
	}
	if !es.started {
		es.start()
	}
	return es.send("PayloadChunk", "application/octet-stream", p)
}

// complete sends the InvokeComplete event that ends the stream.
func (es *eventStreamWriter) complete(ev completeEvent) {
	b, _ := json.Marshal(ev)
	_ = es.send("InvokeComplete", "application/json", b)
}

func (es *eventStreamWriter) send(event, contentType string, payload []byte) error {
	if es.err != nil {
		return es.err
	}
	var msg eventstream.Message
	msg.Headers.Set(":event-type", eventstream.StringValue(event))
	msg.Headers.Set(":content-type", eventstream.StringValue(contentType))
	msg.Headers.Set(":message-type", eventstream.StringValue("event"))
	msg.Payload = payload
	if err := es.enc.Encode(es.w, msg); err != nil {
		es.err = err
		return err
	}
	return es.flush()
}

func (es *eventStreamWriter) flush() error {
	if err := es.rc.Flush(); err != nil && es.err == nil {
		es.err = err
	}
	return es.err
}

// chunkWriter turns each write into a PayloadChunk event.
type chunkWriter struct{ es *eventStreamWriter }

func (c chunkWriter) Write(p []byte) (int, error) {
	if err := c.es.chunk(p); err != nil {
		return 0, err
	}
	return len(p), nil
}
