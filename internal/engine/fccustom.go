package engine

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"path"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/sandbox"
)

// Function Compute's conventions for custom-runtime (HTTP) functions made
// in its dialect (nimbus.FCSettings.Conventions): the server listens on
// customRuntimeConfig.port (9000 by default) when the instance has a
// network of its own, and an invocation that is not an HTTP request
// arrives as POST /invoke; every request carries Function Compute's x-fc-*
// headers.

// fcDefaultPort is customRuntimeConfig.port's default.
const fcDefaultPort = 9000

// fcCustomConfig is what an instance of a custom function with Function
// Compute's conventions needs.
type fcCustomConfig struct {
	port int
}

// fcCustom returns the conventions of fn, or nil when it has none.
func fcCustom(fn *nimbus.Function) *fcCustomConfig {
	fc := fn.FC
	if fc == nil || !fc.Conventions {
		return nil
	}
	c := &fcCustomConfig{port: fcDefaultPort}
	if fc.CustomRuntime != nil {
		c.port = cmp.Or(fc.CustomRuntime.Port, fcDefaultPort)
	}
	return c
}

// headers are the x-fc-* headers of the requests to an instance of fn.
func (c *fcCustomConfig) headers(fn *nimbus.Function, cfg Config, instance string) http.Header {
	q := fn.Version
	if q == "" {
		q = "LATEST"
	}
	h := http.Header{}
	for k, v := range map[string]string{
		"X-Fc-Function-Name":    fn.Name,
		"X-Fc-Function-Handler": fn.Handler,
		"X-Fc-Function-Memory":  strconv.Itoa(cmp.Or(fn.MemoryMB, nimbus.DefaultMemoryMB)),
		"X-Fc-Function-Timeout": strconv.Itoa(cmp.Or(fn.Timeout, nimbus.DefaultTimeout)),
		"X-Fc-Region":           cfg.Region,
		"X-Fc-Account-Id":       cfg.Account,
		"X-Fc-Qualifier":        q,
		"X-Fc-Version-Id":       q,
		"X-Fc-Instance-Id":      instance,
	} {
		h.Set(k, v)
	}
	return h
}

// fcInvokeRequest is an invocation that is not a function URL's request as
// Function Compute's custom runtime gets it: POST /invoke with the payload
// (the body of hr, a trigger's or a streamed invoke's request, if any, whose
// Respond it keeps).
func fcInvokeRequest(req nimbus.Invocation, hr *nimbus.HTTPRequest) *nimbus.HTTPRequest {
	out := &nimbus.HTTPRequest{Method: http.MethodPost, Path: "/invoke", Body: req.Payload,
		Header: http.Header{"Content-Type": {"application/octet-stream"}}}
	if hr != nil {
		out.Body, out.Respond = hr.Body, hr.Respond
		if ct := hr.Header.Get("Content-Type"); ct != "" {
			out.Header.Set("Content-Type", ct)
		}
	}
	return out
}

// fcFailed is the error type of an /invoke answer whose x-fc-status
// header reports a failure (400 or more; Function Compute documents 404):
// the function handled its error and said so. The Function Compute
// dialect answers it with x-fc-error-type HandledInvocationError.
const fcFailed = "HandledInvocationError"

// fcInitFailed is the error type of a custom function's initializer
// (POST /initialize) that failed or timed out: the dialect answers it with
// x-fc-error-type InitializationError.
const fcInitFailed = "InitializationError"

// fcAnswer reads an answer to POST /invoke: an x-fc-status of 400 or more
// makes it the function's handled error, its body the message.
func fcAnswer(res nimbus.Result) nimbus.Result {
	if res.HTTP == nil || res.Err != nil {
		return res
	}
	if s, err := strconv.Atoi(res.HTTP.Header.Get("X-Fc-Status")); err == nil && s >= 400 {
		res.Err = &nimbus.FunctionError{Type: fcFailed, Message: string(res.Payload)}
	}
	return res
}

// fcCommand is the command line of a custom function's server when
// customRuntimeConfig gives one (ok false: the package's bootstrap):
// command then args, as Function Compute joins them. A command in /code
// is found at taskRoot where the instance does not see the code at /code
// (codeAlso false).
func fcCommand(fn *nimbus.Function, taskRoot string, codeAlso bool) (prog string, args []string, ok bool) {
	fc := fn.FC
	if fc == nil || !fc.Conventions || fc.CustomRuntime == nil || len(fc.CustomRuntime.Command) == 0 || fn.IsImage() {
		return "", nil, false
	}
	args = append(slices.Clone(fc.CustomRuntime.Command), fc.CustomRuntime.Args...)
	if rest, in := strings.CutPrefix(args[0], fcCodeRoot+"/"); in && !codeAlso {
		args[0] = path.Join(taskRoot, rest)
	}
	return args[0], args, true
}

// fcCodeRoot is where Function Compute puts a function's code; Nimbus
// shows it there too (sandbox.Spec.CodeAlso) for functions with its
// conventions, beside /var/task.
const fcCodeRoot = "/code"

// fcHook sends a lifecycle hook's request (POST /initialize, GET
// /pre-stop) to inst's server, with Function Compute's headers, and waits
// for its answer within timeout; a status that is not 2xx is an error.
func (inst *instance) fcHook(ctx context.Context, method, hookPath string, timeout time.Duration) error {
	t := inst.fcTarget.Load()
	if t == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	out, err := http.NewRequestWithContext(ctx, method, "http://"+t.addr+hookPath, http.NoBody)
	if err != nil {
		return err
	}
	for k, v := range t.fc {
		out.Header[k] = v
	}
	id := newID("hook")
	out.Header.Set("X-Fc-Request-Id", id[len("hook-"):])
	out.Header.Set("X-Fc-Control-Path", hookPath)
	hc, err := t.conn(ctx)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, hookPath, cmp.Or(ctx.Err(), err))
	}
	res, err := t.roundTrip(ctx, hc, out, nil)
	switch {
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		return fmt.Errorf("%s %s did not answer within %s", method, hookPath, timeout)
	case err != nil:
		return fmt.Errorf("%s %s: %w", method, hookPath, err)
	case res.HTTP.Status < 200 || res.HTTP.Status > 299:
		return fmt.Errorf("%s %s answered %d: %s", method, hookPath, res.HTTP.Status, bytes.TrimSpace(res.Payload[:min(len(res.Payload), 1024)]))
	}
	return nil
}

// fcInitializerTimeout is the time fn's Function Compute initializer may
// take (its timeout, 3 s when unset; 0 without one), which an instance's
// start may take on top of the engine's init timeout: a custom function's
// runs after its port accepts (fcInitialize), a Python or Node function's
// in the bootstrap before its first /next, with the same timeout there.
func fcInitializerTimeout(fn *nimbus.Function) time.Duration {
	if fn.FC == nil || fn.FC.Initializer == nil || !fn.FC.Conventions {
		return 0
	}
	return time.Duration(cmp.Or(fn.FC.Initializer.Timeout, 3)) * time.Second
}

// fcInitialize runs a custom function's initializer, if it has one, on
// inst, which has just started: a failure is the instance's init error.
func (inst *instance) fcInitialize(ctx context.Context) error {
	fc := inst.fn.FC
	if inst.fcTarget.Load() == nil || fc == nil || fc.Initializer == nil {
		return nil
	}
	if err := inst.fcHook(ctx, http.MethodPost, "/initialize", fcInitializerTimeout(inst.fn)); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return &nimbus.FunctionError{Type: fcInitFailed, Unhandled: true, Message: "Initializer failed: " + err.Error()}
	}
	return nil
}

// fcPreStop is the preStop hook's timeout for inst (0: it has none): a
// custom function's (GET /pre-stop), or a Python or Node function's with
// Function Compute's conventions, whose bootstrap runs the hook on SIGTERM
// (FC_PRESTOP_HANDLER) where the sandbox can signal it.
func (inst *instance) fcPreStop() time.Duration {
	fc := inst.fn.FC
	if fc == nil || !fc.Conventions || fc.PreStop == nil || inst.sb == nil {
		return 0
	}
	if inst.fcTarget.Load() == nil && (inst.rapi == nil || sandbox.SignalerOf(inst.sb) == nil) {
		return 0
	}
	return time.Duration(cmp.Or(fc.PreStop.Timeout, 3)) * time.Second
}

// fcRunPreStop runs inst's preStop hook, bounded by d: GET /pre-stop for a
// custom function; for a Python or Node one, SIGTERM, after which its
// bootstrap runs the hook and exits.
func (inst *instance) fcRunPreStop(d time.Duration) error {
	if inst.fcTarget.Load() != nil {
		return inst.fcHook(inst.ctx, http.MethodGet, "/pre-stop", d)
	}
	if err := sandbox.SignalerOf(inst.sb).Signal(syscall.SIGTERM); err != nil {
		return err
	}
	select {
	case <-inst.sb.Done():
		return nil
	case <-time.After(d):
		return fmt.Errorf("the preStop handler did not finish within %s", d)
	}
}
