// Package api serves Nimbus's HTTP API: the AWS Lambda dialect under
// /2015-03-31/ (and Lambda's other dated prefixes) and Nimbus's own API under
// /nimbus/v1/. Handlers decode and validate requests and call the registry and
// the engine; errors go through one mapper (errors.go) into Lambda's shape.
package api

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/audit"
	"github.com/nimbus-serverless/nimbus/internal/auth"
	"github.com/nimbus-serverless/nimbus/internal/engine"
	"github.com/nimbus-serverless/nimbus/internal/registry"
)

// Config wires a Server.
type Config struct {
	Registry *registry.Registry
	// Invoker runs functions; nil answers invokes with an error.
	Invoker Invoker
	// Logs holds functions' recent logs.
	Logs *engine.LogStore
	// DurableLogs, when set, is where GET /nimbus/v1/functions/{name}/logs
	// reads (every node's lines, kept across restarts); nil: Logs.
	DurableLogs LogReader
	Region      string // e.g. us-east-1
	Account     string // 12 digits, used in ARNs
	// MaxCodeBody caps a request carrying a code package (base64 in JSON).
	MaxCodeBody int64
	// UploadMemory bounds the bytes of code upload bodies handled at once
	// and UploadWait how long one waits for room (upload.go; 0: defaults).
	UploadMemory int64
	UploadWait   time.Duration
	// Verifier checks every API request's SigV4 signature against the
	// node's access keys; nil turns authentication off (--auth none):
	// every request is auth.Anonymous, an admin.
	Verifier *auth.Verifier
	// Limiter bounds failed authentications per client address (nil: no
	// bound).
	Limiter *auth.Limiter
	// Keys manages access keys; nil answers the keys routes with an error.
	Keys KeyService
	// Ready are the checks of GET /readyz (health.go), in the order
	// shown; the node is ready when each returns nil. None: always ready.
	Ready []ReadyCheck
	// Async is the Async Service (asynchronous invokes, tasks, dead
	// letters); nil answers those requests with an error.
	Async AsyncService
	// Triggers manages functions' triggers; nil answers those requests
	// with an error.
	Triggers TriggerService
	S3       S3Receiver // object-storage trigger notifications (s3_routes.go); nil answers 404
	// Audit keeps the audit trail (audit.go); nil keeps none.
	Audit audit.Log
	// Records are the invocation records and usage (records_routes.go);
	// nil answers those routes 404.
	Records Records
	// Instances lists a function's running instances on this node
	// (ListInstances of the Function Compute dialect); nil answers it
	// with an error.
	Instances InstanceLister
	// Limits are the node's limits GetAccountSettings reports
	// (account_settings.go); nil reports zeros.
	Limits NodeLimits
	// Metrics serves GET /metrics (metrics.go), for admin keys; nil
	// answers 404.
	Metrics http.Handler
	// Closing closes when the node starts shutting down: answers that
	// stream until the client leaves (a log follow) end then, so that
	// they do not hold the shutdown for its whole grace period.
	Closing <-chan struct{}
	// Nodes is the cluster's membership, for GET /nimbus/v1/nodes (nil
	// answers 404); SelfID is this node's id in it.
	Nodes  NodeLister
	SelfID string
	// Forwards receives the invocations other nodes forward here
	// (cluster.Forwarder); nil: none are taken.
	Forwards http.Handler
	Logger   *slog.Logger
}

// Server is the HTTP API.
type Server struct {
	cfg Config
	reg *registry.Registry
	log *slog.Logger
	mux *http.ServeMux
	// uploads bounds the code upload bodies handled at once (upload.go).
	uploads *uploadGate
	// fcVerifier checks the Function Compute dialect's ACS3 signatures
	// against the same keys as Verifier (nil when authentication is off).
	fcVerifier *auth.ACS3Verifier
}

// maxConfigBody caps requests that carry no code.
const maxConfigBody = 1 << 20

// New returns a Server.
func New(cfg Config) *Server {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Region == "" {
		cfg.Region = "us-east-1"
	}
	if cfg.Account == "" {
		cfg.Account = "000000000000"
	}
	if cfg.MaxCodeBody == 0 {
		cfg.MaxCodeBody = 70 << 20
	}
	s := &Server{cfg: cfg, reg: cfg.Registry, log: cfg.Logger, mux: http.NewServeMux(),
		uploads: newUploadGate(cfg.UploadMemory, cfg.UploadWait)}
	if v := cfg.Verifier; v != nil {
		s.fcVerifier = &auth.ACS3Verifier{Secrets: v.Secrets, MaxBody: v.MaxBody, Now: v.Now}
	}
	s.routes()
	return s
}

func (s *Server) routes() {
	const fns = "/2015-03-31/functions"
	s.handle("POST "+fns, s.functionsCreate)
	s.handle("POST "+fns+"/{$}", s.functionsCreate)
	s.handle("GET "+fns, s.functionsList)
	s.handle("GET "+fns+"/{$}", s.functionsList)
	s.handle("GET "+fns+"/{name}", s.functionsGet)
	s.handle("GET "+fns+"/{name}/configuration", s.functionsGetConfiguration)
	s.handle("PUT "+fns+"/{name}/code", s.functionsUpdateCode)
	s.handle("PUT "+fns+"/{name}/configuration", s.functionsUpdateConfiguration)
	s.handle("DELETE "+fns+"/{name}", s.functionsDelete)
	s.handle("POST "+fns+"/{name}/invocations", s.functionsInvoke)
	s.handle("POST /2021-11-15/functions/{name}/response-streaming-invocations", s.functionsInvokeStream)
	s.handle("PUT /2017-10-31/functions/{name}/concurrency", s.concurrencyPut)
	s.handle("DELETE /2017-10-31/functions/{name}/concurrency", s.concurrencyDelete)
	s.handle("GET /2019-09-30/functions/{name}/concurrency", s.concurrencyGet)
	s.handle("PUT /2019-09-30/functions/{name}/provisioned-concurrency", s.provisionedPut)
	s.handle("GET /2019-09-30/functions/{name}/provisioned-concurrency", s.provisionedGet)
	s.handle("DELETE /2019-09-30/functions/{name}/provisioned-concurrency", s.provisionedDelete)
	s.handle("GET /nimbus/v1/functions/{name}/code", s.codeDownload)
	s.handle("GET /nimbus/v1/functions/{name}/logs", s.functionsLogs)
	s.handle("GET /nimbus/v1/runtimes", s.runtimesList)
	s.versionRoutes()
	s.layerRoutes()
	s.eventInvokeRoutes()
	s.asyncRoutes()
	s.triggerRoutes()
	s.urlRoutes()
	s.s3Routes()
	s.keysRoutes()
	s.auditRoutes()
	s.recordsRoutes()
	s.metricsRoutes()
	s.unsupportedRoutes()
	s.tagRoutes()
	s.policyRoutes()
	s.accountRoutes()
	s.functionConfigRoutes()
	s.fcRoutes()
	s.nodesRoutes()
	s.mux.HandleFunc("GET /healthz", s.health)
	s.mux.HandleFunc("GET /readyz", s.ready)
	s.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, r, s.log, newError(http.StatusNotFound, errUnknownOperation,
			"Unknown operation: "+r.Method+" "+r.URL.Path))
	})
}

// handlerFunc is an API handler that returns its error.
type handlerFunc func(w http.ResponseWriter, r *http.Request) error

// handle serves pattern with h once the request is authenticated and
// allowed what the pattern does (accessOf) on the function it names, and
// records it in the audit trail (audit.go).
func (s *Server) handle(pattern string, h handlerFunc) {
	access := accessOf(pattern)
	trail := s.trail(pattern, access)
	s.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		w, r = trail.begin(w, r)
		release, err := s.admitUpload(r, pattern) // before authorize, which reads a signed body
		if err == nil {
			r, err = s.authorize(r, pattern, access)
		}
		if err == nil {
			err = h(w, r)
		}
		release()
		if err != nil {
			writeError(w, r, s.log, err)
		}
		trail.end(w, r, start, err)
	})
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// decode reads a JSON body of at most limit bytes into v.
func decode(w http.ResponseWriter, r *http.Request, limit int64, v any) error {
	return decodeBody(w, r, limit, v, false)
}

// decodeStrictLimit is decode refusing fields v does not have, so that a
// setting Nimbus does not know is an error rather than dropped.
func decodeStrictLimit(w http.ResponseWriter, r *http.Request, limit int64, v any) error {
	return decodeBody(w, r, limit, v, true)
}

func decodeBody(w http.ResponseWriter, r *http.Request, limit int64, v any, strict bool) error {
	body := http.MaxBytesReader(w, r.Body, limit)
	dec := json.NewDecoder(body)
	if strict {
		dec.DisallowUnknownFields()
	}
	if err := dec.Decode(v); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return newError(http.StatusRequestEntityTooLarge, errTooLarge,
				"Request must be smaller than "+itoa(limit)+" bytes for this operation")
		}
		if errors.Is(err, io.EOF) {
			return newError(http.StatusBadRequest, errInvalidContent, "Could not parse request body into json: the body is empty")
		}
		return newError(http.StatusBadRequest, errInvalidContent, "Could not parse request body into json: "+describeJSONError(err))
	}
	if dec.More() {
		return newError(http.StatusBadRequest, errInvalidContent, "Could not parse request body into json: unexpected data after the JSON value")
	}
	return nil
}

func describeJSONError(err error) string {
	if f, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		return "unknown field " + f + ": Nimbus does not support it"
	}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		if te.Field != "" {
			return "field " + te.Field + " must be of type " + jsonKind(te.Type.Kind().String()) + ", not " + te.Value
		}
		return "the body must be a JSON object, not " + te.Value
	}
	if strings.Contains(err.Error(), "base64") {
		return "a field has invalid base64 data: " + err.Error()
	}
	return err.Error()
}

func jsonKind(k string) string {
	switch k {
	case "int", "int64", "int32":
		return "integer"
	case "map", "struct":
		return "object"
	case "slice":
		return "array or base64 string"
	}
	return k
}

func itoa(n int64) string {
	b, _ := json.Marshal(n)
	return string(b)
}

// writeJSON writes v with the given status.
func writeJSON(w http.ResponseWriter, status int, v any) error {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	return json.NewEncoder(w).Encode(v)
}

// functionName parses the {name} path value (a name or an ARN).
func functionName(r *http.Request) (string, error) {
	return registry.ParseName(r.PathValue("name"))
}

// getFunction parses the name and loads the function.
func (s *Server) getFunction(ctx context.Context, r *http.Request) (*nimbus.Function, error) {
	name, err := functionName(r)
	if err != nil {
		return nil, err
	}
	if q := r.URL.Query().Get("Qualifier"); q != "" && q != nimbus.Latest {
		return nil, s.unqualified(ctx, name, q)
	}
	fn, err := s.reg.Get(ctx, name)
	if errors.Is(err, nimbus.ErrNotFound) {
		return nil, nimbus.Errorf(nimbus.ErrNotFound, "Function not found: %s", s.arn(name))
	}
	return fn, err
}
