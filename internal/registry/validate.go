package registry

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/destination"
	"github.com/nimbus-serverless/nimbus/internal/lazyre"
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
	// EphemeralStorageMB sizes an instance's /tmp (Lambda's
	// EphemeralStorage.Size).
	EphemeralStorageMB *int
	// TracingMode is Lambda's TracingConfig.Mode: Active or PassThrough.
	TracingMode *string
	// Logging changes the fields of Lambda's LoggingConfig it sets.
	Logging *LoggingInput
	// DeadLetterTarget is Lambda's DeadLetterConfig.TargetArn: a
	// destination as EventInvokeConfig takes; "" removes it.
	DeadLetterTarget *string
	// Network is the network of the function's instances: egress, none or
	// host; "" means the node's default.
	Network *string
	// Tags are a new function's tags (CreateFunction's; updates have
	// none): settings.go.
	Tags map[string]string
	// Layers are layer version ARNs, in order (layers.go); empty removes
	// them.
	Layers *[]string
	// FC replaces the function's Function Compute settings when set.
	FC *nimbus.FCSettings
	// ImageConfig is Lambda's ImageConfig, for image functions only
	// (images.go): given, it replaces the function's.
	ImageConfig *ImageConfigInput
	// ImagePort is the port an HTTP image serves on (0: the default).
	ImagePort *int
}

// LoggingInput is Lambda's LoggingConfig as a request sets it: nil fields
// are left as they are.
type LoggingInput struct {
	LogFormat           *string
	ApplicationLogLevel *string
	SystemLogLevel      *string
	// LogGroup may only name the function's default group,
	// /aws/lambda/<name>: Nimbus keeps a function's logs itself.
	LogGroup *string
}

// Lambda's log levels, least severe first.
var (
	applicationLogLevels = []string{"TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"}
	systemLogLevels      = []string{"DEBUG", "INFO", "WARN"}
)

// DefaultLogGroup is the only log group a function may name: Lambda's
// default, /aws/lambda/<name>.
func DefaultLogGroup(name string) string { return "/aws/lambda/" + name }

// maxIdleTimeout caps a function's own instance idle timeout (a day).
const maxIdleTimeout = 86400

// The patterns are compiled on first use (lazyre).
var (
	handlerRE = lazyre.New(`^[^\s]{1,128}$`)
	envKeyRE  = lazyre.New(`^[a-zA-Z]([a-zA-Z0-9_])+$`)
	arnRE     = lazyre.New(`^(?:arn:aws[a-zA-Z-]*:lambda:[a-z]{2}(?:-gov)?-[a-z]+-\d:)?(?:\d{12}:)?(?:function:)?([a-zA-Z0-9_-]+)(?::(\$LATEST|[a-zA-Z0-9_-]+))?$`)
)

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
// returns the bare name, for the operations that take $LATEST only.
// Errors: nimbus.ErrValidation, nimbus.ErrNotFound (another qualifier).
func ParseName(s string) (string, error) {
	name, q, err := ParseQualifiedName(s)
	if err != nil {
		return "", err
	}
	if q != "" && q != nimbus.Latest {
		return "", nimbus.Errorf(nimbus.ErrNotFound, "Function not found: %s (this operation takes the function itself, not a version or an alias)", s)
	}
	return name, nil
}

// ParseQualifiedName is ParseName keeping the qualifier ("" when none):
// a version's number, an alias or $LATEST. Errors: nimbus.ErrValidation.
func ParseQualifiedName(s string) (name, qualifier string, err error) {
	if len(s) > 170 || s == "" {
		return "", "", validationf("functionName", s, "Member must have length less than or equal to 170 and greater than or equal to 1")
	}
	if ValidName(s) { // a plain name, the usual case
		return s, "", nil
	}
	m := arnRE().FindStringSubmatch(s)
	if m == nil {
		return "", "", validationf("functionName", s,
			`Member must satisfy regular expression pattern: (arn:(aws[a-zA-Z-]*)?:lambda:)?([a-z]{2}(-gov)?-[a-z]+-\d{1}:)?(\d{12}:)?(function:)?([a-zA-Z0-9-_]+)(:(\$LATEST|[a-zA-Z0-9-_]+))?`)
	}
	if err := ValidateName(m[1]); err != nil {
		return "", "", err
	}
	return m[1], m[2], nil
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
	if in.Layers != nil {
		fn.Layers = nil
		if len(*in.Layers) > 0 {
			fn.Layers = slices.Clone(*in.Layers)
		}
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
	if err := in.applyRuntimeSettings(fn); err != nil {
		return err
	}
	if in.FC != nil {
		fn.FC = in.FC
	}
	if err := in.applyTags(fn); err != nil {
		return err
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

// applyRuntimeSettings validates and writes the settings of an instance's
// surroundings: its /tmp, tracing, logs and dead-letter target.
func (in FunctionInput) applyRuntimeSettings(fn *nimbus.Function) error {
	if in.EphemeralStorageMB != nil {
		mb := *in.EphemeralStorageMB
		if mb < nimbus.MinEphemeralMB || mb > nimbus.MaxEphemeralMB {
			return validationf("ephemeralStorage.size", mb, rangeConstraint(mb, nimbus.MinEphemeralMB, nimbus.MaxEphemeralMB))
		}
		fn.EphemeralStorageMB = mb
	}
	if in.Network != nil {
		switch n := *in.Network; n {
		case "", nimbus.NetworkEgress, nimbus.NetworkNone, nimbus.NetworkHost:
			fn.NimbusNetwork = n
		default:
			return nimbus.Invalidf("NimbusNetwork %q is invalid: it must be egress (outside addresses, not the host), none (no network), host (the host's network), or empty for the node's default", n)
		}
	}
	if in.TracingMode != nil {
		switch m := *in.TracingMode; m {
		case nimbus.TracingActive:
			fn.TracingMode = m
		case nimbus.TracingPassThrough:
			fn.TracingMode = ""
		default:
			return validationf("tracingConfig.mode", m, "Member must satisfy enum value set: [Active, PassThrough]")
		}
	}
	if in.Logging != nil {
		if err := in.Logging.apply(fn); err != nil {
			return err
		}
	}
	if in.DeadLetterTarget != nil {
		return applyDeadLetter(fn, *in.DeadLetterTarget)
	}
	return nil
}

// apply merges the set fields into fn.Logging. Levels need the JSON format,
// as in Lambda; leaving it drops them.
func (l *LoggingInput) apply(fn *nimbus.Function) error {
	var c nimbus.LoggingConfig
	if fn.Logging != nil {
		c = *fn.Logging
	}
	if l.LogFormat != nil {
		switch f := *l.LogFormat; f {
		case nimbus.LogFormatJSON:
			c.LogFormat = f
		case nimbus.LogFormatText:
			c.LogFormat = ""
		default:
			return validationf("loggingConfig.logFormat", f, "Member must satisfy enum value set: [JSON, Text]")
		}
	}
	if err := setLevel(&c.ApplicationLogLevel, l.ApplicationLogLevel, "loggingConfig.applicationLogLevel", applicationLogLevels); err != nil {
		return err
	}
	if err := setLevel(&c.SystemLogLevel, l.SystemLogLevel, "loggingConfig.systemLogLevel", systemLogLevels); err != nil {
		return err
	}
	if g := l.LogGroup; g != nil && *g != "" && *g != DefaultLogGroup(fn.Name) {
		return nimbus.Invalidf("LoggingConfig.LogGroup %s is not supported: Nimbus keeps a function's logs itself (nimbus logs %s), in its default group %s; leave LogGroup out",
			*g, fn.Name, DefaultLogGroup(fn.Name))
	}
	if c.LogFormat != nimbus.LogFormatJSON {
		if l.ApplicationLogLevel != nil || l.SystemLogLevel != nil {
			return nimbus.Invalidf(`LogLevel is not supported when LogFormat is set to "Text". Remove LogLevel from your request or change the LogFormat to "JSON" and try again.`)
		}
		c.ApplicationLogLevel, c.SystemLogLevel = "", ""
	}
	fn.Logging = &c
	if c == (nimbus.LoggingConfig{}) {
		fn.Logging = nil
	}
	return nil
}

// setLevel validates a level against Lambda's enum and sets it.
func setLevel(dst *string, v *string, field string, levels []string) error {
	if v == nil {
		return nil
	}
	if !slices.Contains(levels, *v) {
		return validationf(field, *v, "Member must satisfy enum value set: ["+strings.Join(levels, ", ")+"]")
	}
	*dst = *v
	return nil
}

// applyDeadLetter sets (or with "" removes) the dead-letter target: any
// destination EventInvokeConfig takes (a function, an http(s) webhook,
// nats:<subject>), but not the function itself. The caller checks that a
// function target exists (Registry.CheckDestination).
func applyDeadLetter(fn *nimbus.Function, target string) error {
	if target == "" {
		fn.DeadLetterTarget = ""
		return nil
	}
	t, err := ParseDeadLetter(target, "", "")
	if err != nil {
		return err
	}
	if t.Kind == destination.Function && t.Name == fn.Name {
		return nimbus.Invalidf("DeadLetterConfig.TargetArn: a function cannot be its own dead-letter target")
	}
	fn.DeadLetterTarget = target
	return nil
}

// ParseDeadLetter parses a dead-letter target (Lambda's
// DeadLetterConfig.TargetArn) as destination.Parse does, for region and
// account (empty: any); Lambda's SQS and SNS targets are refused as not
// supported. Errors wrap nimbus.ErrInvalid.
func ParseDeadLetter(target, region, account string) (destination.Target, error) {
	if service := arnService(target); service == "sqs" || service == "sns" {
		return destination.Target{}, nimbus.Invalidf("DeadLetterConfig.TargetArn %s is not supported: Nimbus has no %s; use a function (name or ARN), an http(s) webhook or nats:<subject>",
			target, strings.ToUpper(service))
	}
	t, err := destination.Parse(target, region, account)
	if err != nil {
		return t, nimbus.Invalidf("DeadLetterConfig.TargetArn: %v", err)
	}
	return t, nil
}

// arnService returns the service of an ARN ("sqs" of arn:aws:sqs:...), ""
// for anything else.
func arnService(s string) string {
	parts := strings.SplitN(s, ":", 4)
	if len(parts) < 4 || !strings.EqualFold(parts[0], "arn") {
		return ""
	}
	return strings.ToLower(parts[2])
}

// CheckDestination checks a destination of function name as the API
// receives it: that a function destination exists and is another
// function. Errors: nimbus.ErrInvalid.
func (r *Registry) CheckDestination(ctx context.Context, name, dest string) error {
	return r.validateDestination(ctx, name, dest)
}
