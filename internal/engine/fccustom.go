package engine

import (
	"cmp"
	"net/http"
	"strconv"

	"github.com/nimbus-serverless/nimbus"
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
