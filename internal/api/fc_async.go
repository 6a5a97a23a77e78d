package api

import (
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/async"
)

func (s *Server) fcAsyncRoutes() {
	const fn = fcPrefix + "/functions/{name}"
	s.fcHandle("PUT "+fn+"/async-invoke-config", "PutAsyncInvokeConfig", s.fcAsyncConfigPut)
	s.fcHandle("GET "+fn+"/async-invoke-config", "GetAsyncInvokeConfig", s.fcAsyncConfigGet)
	s.fcHandle("DELETE "+fn+"/async-invoke-config", "DeleteAsyncInvokeConfig", s.fcAsyncConfigDelete)
	s.fcHandle("GET "+fcPrefix+"/async-invoke-configs", "ListAsyncInvokeConfigs", s.fcAsyncConfigList)
	s.fcHandle("GET "+fn+"/async-tasks", "ListAsyncTasks", s.fcTasksList)
	s.fcHandle("GET "+fn+"/async-tasks/{id}", "GetAsyncTask", s.fcTasksGet)
	s.fcHandle("PUT "+fn+"/async-tasks/{id}/stop", "StopAsyncTask", s.fcTasksStop)
	s.fcHandle("PUT "+fn+"/concurrency", "PutConcurrencyConfig", s.fcConcurrencyPut)
	s.fcHandle("GET "+fn+"/concurrency", "GetConcurrencyConfig", s.fcConcurrencyGet)
	s.fcHandle("DELETE "+fn+"/concurrency", "DeleteConcurrencyConfig", s.fcConcurrencyDelete)
	s.fcHandle("GET "+fcPrefix+"/concurrency-configs", "ListConcurrencyConfigs", s.fcConcurrencyList)
}

// fcDestination is a destination of destinationConfig.
type fcDestination struct {
	Destination string `json:"destination"`
}

type fcDestinationConfig struct {
	OnSuccess *fcDestination `json:"onSuccess,omitempty"`
	OnFailure *fcDestination `json:"onFailure,omitempty"`
}

// fcAsyncConfigInput is PutAsyncInvokeConfig's body.
type fcAsyncConfigInput struct {
	MaxAsyncRetryAttempts     *int                 `json:"maxAsyncRetryAttempts"`
	MaxAsyncEventAgeInSeconds *int                 `json:"maxAsyncEventAgeInSeconds"`
	DestinationConfig         *fcDestinationConfig `json:"destinationConfig"`
	AsyncTask                 *bool                `json:"asyncTask"`
}

// fcAsyncConfig is Function Compute's AsyncConfig.
type fcAsyncConfig struct {
	FunctionArn               string               `json:"functionArn"`
	MaxAsyncRetryAttempts     int                  `json:"maxAsyncRetryAttempts"`
	MaxAsyncEventAgeInSeconds int                  `json:"maxAsyncEventAgeInSeconds"`
	DestinationConfig         *fcDestinationConfig `json:"destinationConfig,omitempty"`
	AsyncTask                 bool                 `json:"asyncTask"`
	CreatedTime               string               `json:"createdTime"`
	LastModifiedTime          string               `json:"lastModifiedTime"`
}

// fcToDestination turns a Function Compute destination ARN into Nimbus's:
// acs:fc:<region>:<account>:functions/<name> is the function; Nimbus's own
// forms (a function name, http(s) URL, nats:<subject>) pass; MNS, RocketMQ
// and EventBridge ARNs name services Nimbus does not have.
func (s *Server) fcToDestination(d string) (string, error) {
	if d == "" {
		return "", nil
	}
	if rest, ok := strings.CutPrefix(d, "acs:fc:"); ok {
		parts := strings.SplitN(rest, ":", 3)
		if len(parts) == 3 {
			if name, ok := strings.CutPrefix(parts[2], "functions/"); ok {
				name, _, _ = strings.Cut(name, "/")
				return name, nil
			}
		}
		return "", fcInvalid("destination %q is invalid: a Function Compute destination is acs:fc:<region>:<account>:functions/<name>", d)
	}
	if strings.HasPrefix(d, "acs:") {
		return "", fcInvalid("destination %q is not supported: Nimbus sends outcomes to functions (acs:fc:...:functions/<name>), http(s) webhooks and NATS subjects (nats:<subject>), not to MNS, RocketMQ or EventBridge", d)
	}
	return d, nil
}

// fcFromDestination is a Nimbus destination as Function Compute shows it.
func (s *Server) fcFromDestination(d string) *fcDestination {
	if d == "" {
		return nil
	}
	if strings.Contains(d, "://") || strings.HasPrefix(d, "nats:") {
		return &fcDestination{Destination: d}
	}
	if i := strings.LastIndex(d, ":function:"); i >= 0 {
		d = d[i+len(":function:"):]
	}
	return &fcDestination{Destination: s.fcARN(d)}
}

// fcQualifier is the qualifier query of a config operation ("" for the
// function itself, LATEST included).
func fcQualifier(r *http.Request) string {
	q := r.URL.Query().Get("qualifier")
	if q == "LATEST" || q == nimbus.Latest {
		return ""
	}
	return q
}

func (s *Server) fcAsyncConfigPut(w http.ResponseWriter, r *http.Request) error {
	fn, err := s.fcFunction(r)
	if err != nil {
		return err
	}
	var req fcAsyncConfigInput
	if err := fcDecode(w, r, maxConfigBody, &req); err != nil {
		return err
	}
	if req.AsyncTask != nil && !*req.AsyncTask {
		return fcInvalid("asyncTask false is not supported: Nimbus keeps a task record of every asynchronous invocation")
	}
	c := &nimbus.EventInvokeConfig{MaximumRetryAttempts: req.MaxAsyncRetryAttempts, MaximumEventAgeInSeconds: req.MaxAsyncEventAgeInSeconds}
	if n := req.MaxAsyncRetryAttempts; n != nil && (*n < 0 || *n > 8) {
		return fcInvalid("maxAsyncRetryAttempts %d is invalid: it must be from 0 to 8", *n)
	}
	if n := req.MaxAsyncEventAgeInSeconds; n != nil && (*n < 1 || *n > 86400) {
		return fcInvalid("maxAsyncEventAgeInSeconds %d is invalid: it must be from 1 to 86400", *n)
	}
	if dc := req.DestinationConfig; dc != nil {
		for _, d := range []struct {
			in  *fcDestination
			out *string
		}{{dc.OnSuccess, &c.OnSuccess}, {dc.OnFailure, &c.OnFailure}} {
			if d.in == nil {
				continue
			}
			if *d.out, err = s.fcToDestination(d.in.Destination); err != nil {
				return err
			}
		}
	}
	q := fcQualifier(r)
	fn, err = s.reg.SetEventInvokeConfig(r.Context(), fn.Name, q, func(*nimbus.EventInvokeConfig) (*nimbus.EventInvokeConfig, error) {
		return c, nil
	})
	if err != nil {
		return fcNotFound(err, fcFunctionNotFound)
	}
	return fcWriteJSON(w, http.StatusOK, s.fcAsyncView(fn.Name, fn.EventInvokeFor(q)))
}

func (s *Server) fcAsyncView(name string, c *nimbus.EventInvokeConfig) fcAsyncConfig {
	v := fcAsyncConfig{FunctionArn: s.fcARN(name), MaxAsyncRetryAttempts: 2, MaxAsyncEventAgeInSeconds: 21600,
		AsyncTask: true, CreatedTime: fcTime(c.LastModified), LastModifiedTime: fcTime(c.LastModified)}
	if c.MaximumRetryAttempts != nil {
		v.MaxAsyncRetryAttempts = *c.MaximumRetryAttempts
	}
	if c.MaximumEventAgeInSeconds != nil {
		v.MaxAsyncEventAgeInSeconds = *c.MaximumEventAgeInSeconds
	}
	if c.OnSuccess != "" || c.OnFailure != "" {
		v.DestinationConfig = &fcDestinationConfig{OnSuccess: s.fcFromDestination(c.OnSuccess), OnFailure: s.fcFromDestination(c.OnFailure)}
	}
	return v
}

func (s *Server) fcAsyncConfigGet(w http.ResponseWriter, r *http.Request) error {
	fn, err := s.fcFunction(r)
	if err != nil {
		return err
	}
	c := fn.EventInvokeFor(fcQualifier(r))
	if c == nil {
		return fcErr(http.StatusNotFound, fcAsyncConfigNotExist, "function '"+fn.Name+"' has no async invoke config")
	}
	return fcWriteJSON(w, http.StatusOK, s.fcAsyncView(fn.Name, c))
}

func (s *Server) fcAsyncConfigDelete(w http.ResponseWriter, r *http.Request) error {
	fn, err := s.fcFunction(r)
	if err != nil {
		return err
	}
	q := fcQualifier(r)
	if fn.EventInvokeFor(q) == nil {
		return fcErr(http.StatusNotFound, fcAsyncConfigNotExist, "function '"+fn.Name+"' has no async invoke config")
	}
	if _, err := s.reg.SetEventInvokeConfig(r.Context(), fn.Name, q, func(*nimbus.EventInvokeConfig) (*nimbus.EventInvokeConfig, error) {
		return nil, nil
	}); err != nil {
		return fcNotFound(err, fcFunctionNotFound)
	}
	return fcNoContent(w)
}

// fcAsyncConfigList is ListAsyncInvokeConfigs: the functions' own
// configs (functionName filters), a key seeing only its functions.
func (s *Server) fcAsyncConfigList(w http.ResponseWriter, r *http.Request) error {
	fns, err := s.reg.List(r.Context())
	if err != nil {
		return err
	}
	only := r.URL.Query().Get("functionName")
	out := struct {
		Configs   []fcAsyncConfig `json:"configs"`
		NextToken string          `json:"nextToken,omitempty"`
	}{Configs: []fcAsyncConfig{}}
	for _, fn := range fns {
		if (only != "" && fn.Name != only) || !sees(r, fn.Name) || fn.EventInvoke == nil {
			continue
		}
		out.Configs = append(out.Configs, s.fcAsyncView(fn.Name, fn.EventInvoke))
	}
	return fcWriteJSON(w, http.StatusOK, out)
}

// fcTask is Function Compute's AsyncTask.
type fcTask struct {
	TaskID              string `json:"taskId"`
	RequestID           string `json:"requestId"`
	FunctionArn         string `json:"functionArn"`
	Qualifier           string `json:"qualifier,omitempty"`
	Status              string `json:"status"`
	AlreadyRetriedTimes int    `json:"alreadyRetriedTimes"`
	StartedTime         int64  `json:"startedTime,omitempty"`
	EndTime             int64  `json:"endTime,omitempty"`
	DurationMs          int64  `json:"durationMs"`
	ReturnPayload       string `json:"returnPayload,omitempty"`
	TaskErrorMessage    string `json:"taskErrorMessage,omitempty"`
	DestinationStatus   string `json:"destinationStatus,omitempty"`
}

func (s *Server) fcTaskView(t nimbus.Task) fcTask {
	v := fcTask{TaskID: t.ID, RequestID: t.ID, FunctionArn: s.fcARN(t.Function), Status: t.Status,
		AlreadyRetriedTimes: max(t.Attempts-1, 0), DurationMs: int64(t.DurationMs),
		ReturnPayload: t.Result, TaskErrorMessage: t.Error, DestinationStatus: t.DestinationStatus}
	if !t.Started.IsZero() {
		v.StartedTime = t.Started.UnixMilli()
	}
	if !t.Finished.IsZero() {
		v.EndTime = t.Finished.UnixMilli()
	}
	return v
}

// fcTaskError maps the Async Service's not-found to AsyncTaskNotFound.
func fcTaskError(err error) error {
	if errors.Is(err, nimbus.ErrNotFound) {
		return fcErr(http.StatusNotFound, fcAsyncTaskNotFound, kind(err).msg)
	}
	return err
}

func (s *Server) fcTasksGet(w http.ResponseWriter, r *http.Request) error {
	as, err := s.asyncService()
	if err != nil {
		return err
	}
	t, err := as.Task(r.PathValue("name"), r.PathValue("id"))
	if err != nil {
		return fcTaskError(err)
	}
	return fcWriteJSON(w, http.StatusOK, s.fcTaskView(t))
}

// fcTasksList is ListAsyncTasks: status, startedTimeBegin and
// startedTimeEnd (ms, by creation time), limit (1 to 100, default 20),
// nextToken, sortByAsc is not supported (newest first, as the Async
// Service keeps them).
func (s *Server) fcTasksList(w http.ResponseWriter, r *http.Request) error {
	as, err := s.asyncService()
	if err != nil {
		return err
	}
	fn, err := s.fcFunction(r)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	o := async.ListOptions{Status: q.Get("status"), Marker: q.Get("nextToken"), Limit: 20}
	if v := q.Get("limit"); v != "" {
		if o.Limit, err = strconv.Atoi(v); err != nil || o.Limit < 1 || o.Limit > 100 {
			return fcInvalid("limit %q is invalid: it must be from 1 to 100", v)
		}
	}
	for _, p := range []struct {
		name string
		to   *time.Time
	}{{"startedTimeBegin", &o.Since}, {"startedTimeEnd", &o.Until}} {
		if v := q.Get(p.name); v != "" {
			ms, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return fcInvalid("%s %q is invalid: it must be a time in milliseconds since 1970", p.name, v)
			}
			*p.to = time.UnixMilli(ms)
		}
	}
	tasks, next, err := as.Tasks(fn.Name, o)
	if err != nil {
		return err
	}
	out := struct {
		Tasks     []fcTask `json:"tasks"`
		NextToken string   `json:"nextToken,omitempty"`
	}{Tasks: []fcTask{}, NextToken: next}
	for _, t := range tasks {
		out.Tasks = append(out.Tasks, s.fcTaskView(t))
	}
	return fcWriteJSON(w, http.StatusOK, out)
}

func (s *Server) fcTasksStop(w http.ResponseWriter, r *http.Request) error {
	as, err := s.asyncService()
	if err != nil {
		return err
	}
	if _, err := as.Stop(r.Context(), r.PathValue("name"), r.PathValue("id")); err != nil {
		return fcTaskError(err)
	}
	w.WriteHeader(http.StatusOK)
	return nil
}

// fcConcurrency is Function Compute's ConcurrencyConfig.
type fcConcurrency struct {
	FunctionArn         string `json:"functionArn"`
	ReservedConcurrency int    `json:"reservedConcurrency"`
}

func (s *Server) fcConcurrencyPut(w http.ResponseWriter, r *http.Request) error {
	fn, err := s.fcFunction(r)
	if err != nil {
		return err
	}
	var req struct {
		ReservedConcurrency *int `json:"reservedConcurrency"`
	}
	if err := fcDecode(w, r, maxConfigBody, &req); err != nil {
		return err
	}
	if req.ReservedConcurrency == nil {
		return fcInvalid("reservedConcurrency is required")
	}
	if *req.ReservedConcurrency < 0 {
		return fcInvalid("reservedConcurrency %d is invalid: it must be 0 or more", *req.ReservedConcurrency)
	}
	if fn, err = s.reg.SetConcurrency(r.Context(), fn.Name, req.ReservedConcurrency, true, -1); err != nil {
		return fcNotFound(err, fcFunctionNotFound)
	}
	return fcWriteJSON(w, http.StatusOK, fcConcurrency{FunctionArn: s.fcARN(fn.Name), ReservedConcurrency: *fn.ReservedConcurrency})
}

func (s *Server) fcConcurrencyGet(w http.ResponseWriter, r *http.Request) error {
	fn, err := s.fcFunction(r)
	if err != nil {
		return err
	}
	if fn.ReservedConcurrency == nil {
		return fcErr(http.StatusNotFound, fcConcurrencyNotFound, "function '"+fn.Name+"' has no concurrency config")
	}
	return fcWriteJSON(w, http.StatusOK, fcConcurrency{FunctionArn: s.fcARN(fn.Name), ReservedConcurrency: *fn.ReservedConcurrency})
}

func (s *Server) fcConcurrencyDelete(w http.ResponseWriter, r *http.Request) error {
	fn, err := s.fcFunction(r)
	if err != nil {
		return err
	}
	if _, err := s.reg.SetConcurrency(r.Context(), fn.Name, nil, true, -1); err != nil {
		return fcNotFound(err, fcFunctionNotFound)
	}
	return fcNoContent(w)
}

func (s *Server) fcConcurrencyList(w http.ResponseWriter, r *http.Request) error {
	fns, err := s.reg.List(r.Context())
	if err != nil {
		return err
	}
	only := r.URL.Query().Get("functionName")
	out := struct {
		Configs   []fcConcurrency `json:"configs"`
		NextToken string          `json:"nextToken,omitempty"`
	}{Configs: []fcConcurrency{}}
	for _, fn := range fns {
		if (only != "" && fn.Name != only) || !sees(r, fn.Name) || fn.ReservedConcurrency == nil {
			continue
		}
		out.Configs = append(out.Configs, fcConcurrency{FunctionArn: s.fcARN(fn.Name), ReservedConcurrency: *fn.ReservedConcurrency})
	}
	return fcWriteJSON(w, http.StatusOK, out)
}
