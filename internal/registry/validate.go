package registry

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/runtimes"
)

// FunctionInput is the configuration a create or update sets. Nil fields are
// left as they are (on create: defaults).
type FunctionInput struct {
	Name        string
	Runtime     *string
	Handler     *string
	Role        *string
	Description *string
	MemoryMB    *int
	Timeout     *int
	Environment *map[string]string
	// HTTPConcurrency is how many requests one instance of an HTTP function
	// takes at once.
	HTTPConcurrency *int
	// IdleTimeoutSeconds overrides the node's instance idle timeout; 0
	// restores the node's.
	IdleTimeoutSeconds *int
}

// maxIdleTimeout caps a function's own instance idle timeout (a day).
const maxIdleTimeout = 86400

// The patterns are compiled on first use: every process start (every
// sandboxed instance re-executes the binary) would pay for them otherwise.
var (
	handlerRE = lazyRE(`^[^\s]{1,128}$`)
	envKeyRE  = lazyRE(`^[a-zA-Z]([a-zA-Z0-9_])+$`)
	arnRE     = lazyRE(`^(?:arn:aws[a-zA-Z-]*:lambda:[a-z]{2}(?:-gov)?-[a-z]+-\d:)?(?:\d{12}:)?(?:function:)?([a-zA-Z0-9_-]+)(?::(\$LATEST|[a-zA-Z0-9_-]+))?$`)
)

func lazyRE(expr string) func() *regexp.Regexp {
	return sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(expr) })
}

// ValidName reports whether name is a valid bare function name.
func ValidName(name string) bool {
	if len(name) < 1 || len(name) > 64 {
		return false
	}
	for i := range len(name) {
		switch c := name[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '-', c == '_':
		default:
			return false
		}
	}
	return true
}

// ValidEnvKey reports whether k is a valid environment variable name.
func ValidEnvKey(k string) bool { return envKeyRE().MatchString(k) }

// NeedsHandler reports whether functions of runtime need a handler: custom
// runtimes (provided*) and HTTP functions run their own executable.
func NeedsHandler(runtime string) bool {
	return runtime != "" && !strings.HasPrefix(runtime, "provided") && runtime != "http"
}

// maxEnvSize is Lambda's limit on the total size of environment variables.
const maxEnvSize = 4096

// validationf builds Lambda's ValidationException message for one field.
func validationf(field string, value any, constraint string) error {
	return nimbus.Errorf(nimbus.ErrValidation,
		"1 validation error detected: Value '%v' at '%s' failed to satisfy constraint: %s", value, field, constraint)
}

// ValidateName checks a bare function name as Lambda does.
func ValidateName(name string) error {
	if !ValidName(name) {
		if n := utf8.RuneCountInString(name); n < 1 || n > 64 {
			return validationf("functionName", name, "Member must have length less than or equal to 64 and greater than or equal to 1")
		}
		return validationf("functionName", name, "Member must satisfy regular expression pattern: [a-zA-Z0-9-_]+")
	}
	return nil
}

// ParseName accepts a function name, a partial ARN (123456789012:function:
// name) or a full ARN, each with an optional qualifier, as Lambda does, and
// returns the bare name. Only the $LATEST qualifier exists in Nimbus so far.
// Errors: nimbus.ErrValidation, nimbus.ErrNotFound (unknown qualifier).
func ParseName(s string) (string, error) {
	if len(s) > 170 || s == "" {
		return "", validationf("functionName", s, "Member must have length less than or equal to 170 and greater than or equal to 1")
	}
	if ValidName(s) { // a plain name, the usual case
		return s, nil
	}
	m := arnRE().FindStringSubmatch(s)
	if m == nil {
		return "", validationf("functionName", s,
			`Member must satisfy regular expression pattern: (arn:(aws[a-zA-Z-]*)?:lambda:)?([a-z]{2}(-gov)?-[a-z]+-\d{1}:)?(\d{12}:)?(function:)?([a-zA-Z0-9-_]+)(:(\$LATEST|[a-zA-Z0-9-_]+))?`)
	}
	if err := ValidateName(m[1]); err != nil {
		return "", err
	}
	if m[2] != "" && m[2] != "$LATEST" {
		return "", nimbus.Errorf(nimbus.ErrNotFound, "Function not found: %s (Nimbus serves only the $LATEST version so far)", s)
	}
	return m[1], nil
}

// apply validates the set fields of in and writes them into fn.
func (in FunctionInput) apply(fn *nimbus.Function, runtimes []string) error {
	if in.Runtime != nil {
		if !slices.Contains(runtimes, *in.Runtime) {
			return nimbus.Invalidf("The runtime parameter of %s is not supported. Runtimes on this node: %s",
				*in.Runtime, strings.Join(runtimes, ", "))
		}
		fn.Runtime = *in.Runtime
	}
	if in.Handler != nil {
		if !handlerRE().MatchString(*in.Handler) {
			return validationf("handler", *in.Handler, `Member must satisfy regular expression pattern: [^\s]+ and have length less than or equal to 128`)
		}
		fn.Handler = *in.Handler
	}
	if in.Role != nil {
		fn.Role = *in.Role
	}
	if in.Description != nil {
		if utf8.RuneCountInString(*in.Description) > 256 {
			return validationf("description", "...", "Member must have length less than or equal to 256")
		}
		fn.Description = *in.Description
	}
	if in.MemoryMB != nil {
		m := *in.MemoryMB
		if m < nimbus.MinMemoryMB {
			return validationf("memorySize", m, fmt.Sprintf("Member must have value greater than or equal to %d", nimbus.MinMemoryMB))
		}
		if m > nimbus.MaxMemoryMB {
			return validationf("memorySize", m, fmt.Sprintf("Member must have value less than or equal to %d", nimbus.MaxMemoryMB))
		}
		fn.MemoryMB = m
	}
	if in.Timeout != nil {
		t := *in.Timeout
		if t < nimbus.MinTimeout {
			return validationf("timeout", t, fmt.Sprintf("Member must have value greater than or equal to %d", nimbus.MinTimeout))
		}
		if t > nimbus.MaxTimeout {
			return validationf("timeout", t, fmt.Sprintf("Member must have value less than or equal to %d", nimbus.MaxTimeout))
		}
		fn.Timeout = t
	}
	if in.Environment != nil {
		if err := validateEnv(*in.Environment); err != nil {
			return err
		}
		fn.Environment = *in.Environment
	}
	if in.HTTPConcurrency != nil {
		if c := *in.HTTPConcurrency; c < 1 || c > 1000 {
			return validationf("httpConcurrency", c, "Member must have value between 1 and 1000")
		}
		fn.HTTPConcurrency = *in.HTTPConcurrency
	}
	if in.IdleTimeoutSeconds != nil {
		if s := *in.IdleTimeoutSeconds; s < 0 || s > maxIdleTimeout {
			return validationf("idleTimeoutSeconds", s, fmt.Sprintf("Member must have value between 0 and %d", maxIdleTimeout))
		}
		fn.IdleTimeout = time.Duration(*in.IdleTimeoutSeconds) * time.Second
	}
	if NeedsHandler(fn.Runtime) && fn.Handler == "" {
		return nimbus.Invalidf("Handler is required for runtime %s", fn.Runtime)
	}
	return nil
}

func validateEnv(env map[string]string) error {
	size := 0
	for k, v := range env {
		if !ValidEnvKey(k) {
			return nimbus.Invalidf("Environment variable name %q is invalid: it must start with a letter and contain only letters, digits and underscores, at least two characters", k)
		}
		if runtimes.IsReserved(k) {
			return nimbus.Invalidf("Lambda was unable to configure your environment variables because the environment variables you have provided contains reserved keys that are currently not supported for modification. Reserved keys used in this request: %s", k)
		}
		size += len(k) + len(v)
	}
	if size > maxEnvSize {
		return nimbus.Invalidf("Lambda was unable to configure your environment variables because the environment variables you have provided exceeded the 4KB limit. String measured: %d bytes", size)
	}
	return nil
}
