package api

import (
	"net/http"

	"github.com/nimbus-serverless/nimbus"
)

// The Lambda operations Nimbus does not support answer a clear error in
// Lambda's shape rather than UnknownOperationException, so that a tool that
// calls one tells its user what Nimbus lacks and what to use instead.
// docs/lambda-api.md lists them with the rest of the API, and
// lambdaapi_test.go checks each answers the error the page names.

// unsupportedRoute is one operation Nimbus does not support.
type unsupportedRoute struct {
	pattern string // method and path, as http.ServeMux takes them
	// missing: the request names a resource of a kind Nimbus never has,
	// answered ResourceNotFoundException (404); otherwise
	// InvalidParameterValueException (400).
	missing bool
	msg     string
}

const (
	noCodeSigning = "Nimbus does not verify code signatures (it has no AWS Signer): " +
		"limit who may deploy code with access keys and their roles (nimbus keys), and see every deploy in the audit trail (nimbus audit)"
	noCodeSigningConfig = "Code signing config not found: Nimbus has no code signing configs. " + noCodeSigning
	noCapacity          = "Capacity providers are not supported: Nimbus runs functions on its own nodes. " +
		"Bound a function's instances with PutFunctionConcurrency and keep some warm with PutProvisionedConcurrencyConfig"
	noCapacityProvider = "Capacity provider not found: Nimbus has no capacity providers; it runs functions on its own nodes"
	noScalingConfig    = "Function scaling configs are for functions on a capacity provider, which Nimbus does not have: " +
		"bound a function's instances with PutFunctionConcurrency and keep some warm with PutProvisionedConcurrencyConfig"
	noDurable = "Durable functions are not supported: Nimbus has no durable executions. " +
		"Asynchronous invocations are retried whole and kept as tasks: GET /nimbus/v1/functions/{name}/tasks lists them"
	noDurableExecution = "Durable execution not found: Nimbus has no durable functions. " +
		"Asynchronous invocations are kept as tasks (GET /nimbus/v1/functions/{name}/tasks, POST .../tasks/{id}/stop)"
	noDurableCallback = "Durable execution callback not found: Nimbus has no durable functions"
	noPolicyDocument  = "Nimbus keeps a function's resource-based policy statement by statement: " +
		"use AddPermission, RemovePermission and GetPolicy (aws lambda add-permission, remove-permission, get-policy)"
)

// unsupportedOps are the operations of docs/lambda-api.md whose status
// is "not supported".
var unsupportedOps = []unsupportedRoute{
	// Code signing: function_configs.go (Nimbus verifies no signatures).

	// Whole policy documents (2026): the statement operations work.
	{"PUT /2026-07-09/resource-policy/{arn}", false, noPolicyDocument},
	{"GET /2026-07-09/resource-policy/{arn}", false, noPolicyDocument},
	{"DELETE /2026-07-09/resource-policy/{arn}", false, noPolicyDocument},

	// Capacity providers (Lambda Managed Instances).
	{"POST /2025-11-30/capacity-providers", false, noCapacity},
	{"GET /2025-11-30/capacity-providers", false, noCapacity},
	{"GET /2025-11-30/capacity-providers/{provider}", true, noCapacityProvider},
	{"PUT /2025-11-30/capacity-providers/{provider}", true, noCapacityProvider},
	{"DELETE /2025-11-30/capacity-providers/{provider}", true, noCapacityProvider},
	{"GET /2025-11-30/capacity-providers/{provider}/function-versions", true, noCapacityProvider},
	{"PUT /2025-11-30/functions/{name}/function-scaling-config", false, noScalingConfig},
	{"GET /2025-11-30/functions/{name}/function-scaling-config", false, noScalingConfig},

	// Durable functions.
	{"GET /2025-12-01/functions/{name}/durable-executions", false, noDurable},
	{"GET /2025-12-01/durable-executions/{arn}", true, noDurableExecution},
	{"GET /2025-12-01/durable-executions/{arn}/history", true, noDurableExecution},
	{"GET /2025-12-01/durable-executions/{arn}/state", true, noDurableExecution},
	{"POST /2025-12-01/durable-executions/{arn}/checkpoint", true, noDurableExecution},
	{"POST /2025-12-01/durable-executions/{arn}/stop", true, noDurableExecution},
	{"POST /2025-12-01/durable-execution-callbacks/{id}/succeed", true, noDurableCallback},
	{"POST /2025-12-01/durable-execution-callbacks/{id}/fail", true, noDurableCallback},
	{"POST /2025-12-01/durable-execution-callbacks/{id}/heartbeat", true, noDurableCallback},
}

// unsupportedRoutes answers each of unsupportedOps with its error, once
// the request is authenticated and allowed (a refused caller learns
// nothing more than for any other route).
func (s *Server) unsupportedRoutes() {
	for _, u := range unsupportedOps {
		err := nimbus.Invalidf("%s", u.msg)
		if u.missing {
			err = nimbus.Errorf(nimbus.ErrNotFound, "%s", u.msg)
		}
		s.handle(u.pattern, func(http.ResponseWriter, *http.Request) error { return err })
	}
}
