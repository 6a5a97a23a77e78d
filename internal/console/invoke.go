package console

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// invokeView is a test invoke's outcome.
type invokeView struct {
	Name, RequestID string
	Status          int
	FunctionError   string
	Result          string
	Log             string
	// Duration is the run as the REPORT line gives it; Elapsed the whole
	// request as the node served it.
	Duration, Elapsed float64
	Payload           string
}

// functionInvoke is POST /console/functions/{name}/invoke with payload: a
// synchronous invoke with the log tail, as Invoke --log-type Tail.
func (c *Console) functionInvoke(w http.ResponseWriter, r *http.Request, v *visit) error {
	name := r.PathValue("name")
	payload, err := formValue(r, "payload")
	if err != nil {
		return err
	}
	if strings.TrimSpace(payload) == "" {
		payload = "{}" // an empty editor: the empty event
	}
	view := invokeView{Name: name, Payload: payload}
	if !json.Valid([]byte(payload)) {
		view.FunctionError = "The payload is not valid JSON: an invoke's event must be a JSON document."
		view.Status = http.StatusBadRequest
		c.fragment(w, "invoke-result", view)
		return nil
	}
	start := time.Now()
	rep, err := v.call(http.MethodPost, fnPath("/2015-03-31/functions/", name)+"/invocations", []byte(payload),
		http.Header{"X-Amz-Log-Type": {"Tail"}})
	view.Elapsed = float64(time.Since(start).Microseconds()) / 1000
	if err != nil {
		ae, ok := err.(*apiError)
		if !ok {
			return err
		}
		view.Status, view.FunctionError, view.Result = ae.Status, ae.Type, ae.Message
	} else {
		view.Status = rep.Status
		view.FunctionError = rep.Header.Get("X-Amz-Function-Error")
		view.RequestID = rep.Header.Get("X-Amzn-RequestId")
		view.Result = string(rep.Body)
		view.Log = logTail(rep.Header)
		if m := reportDuration().FindStringSubmatch(view.Log); m != nil {
			view.Duration, _ = strconv.ParseFloat(m[1], 64)
		}
	}
	// The invocation's record, charts and log move: refresh them.
	w.Header().Set("HX-Trigger", "invoked")
	c.fragment(w, "invoke-result", view)
	return nil
}
