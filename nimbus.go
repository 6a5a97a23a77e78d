// Package nimbus holds Nimbus's domain types and the sentinel errors shared by
// its parts. It does no I/O: the store, the engine, the API and the CLI all
// speak in these types, and the interfaces between them live beside their
// consumers (internal/store, internal/sandbox).
package nimbus

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Sentinel errors. Parts wrap them with %w; the API maps them to Lambda's
// error types in one place (internal/api/errors.go).
var (
	// ErrNotFound: the named resource does not exist.
	ErrNotFound = errors.New("not found")
	// ErrConflict: the resource exists already, or is in a state that
	// forbids the operation.
	ErrConflict = errors.New("conflict")
	// ErrPreconditionFailed: an optimistic-concurrency check failed (a stale
	// RevisionId).
	ErrPreconditionFailed = errors.New("precondition failed")
	// ErrInvalid: a request parameter is invalid (Lambda's
	// InvalidParameterValueException).
	ErrInvalid = errors.New("invalid parameter")
	// ErrValidation: a field breaks a declared constraint such as a length,
	// pattern or range (Lambda's ValidationException).
	ErrValidation = errors.New("validation failed")
	// ErrTooLarge: a request or response is over a size limit.
	ErrTooLarge = errors.New("too large")
	// ErrThrottled: no capacity to run the request now.
	ErrThrottled = errors.New("throttled")
	// ErrReservedConcurrency: the function's reserved concurrency is all
	// in use (or 0). It is an ErrThrottled: errors.Is(err, ErrThrottled)
	// holds.
	ErrReservedConcurrency = fmt.Errorf("reserved concurrency: %w", ErrThrottled)
	// ErrMalformed: a request body cannot be read as what the operation
	// takes (Lambda's InvalidRequestContentException).
	ErrMalformed = errors.New("malformed request")
	// ErrUnauthorized: the request carries no credentials, or ones that
	// are not valid (403, as Lambda answers).
	ErrUnauthorized = errors.New("unauthorized")
	// ErrForbidden: the caller is known but may not do this (403).
	ErrForbidden = errors.New("forbidden")
	// ErrUnavailable: the platform cannot do it now (its store does not
	// answer or cannot write, e.g. a full disk); retrying later may work
	// (503).
	ErrUnavailable = errors.New("unavailable")
	// ErrRecursive: the invocation would run a function in a recursive
	// loop past the limit (Lambda's RecursiveInvocationException, 400).
	ErrRecursive = errors.New("recursive invocation")
)

// Invalidf returns an error that wraps ErrInvalid with a message meant for
// the user.
func Invalidf(format string, args ...any) error {
	return &UserError{Kind: ErrInvalid, Msg: fmt.Sprintf(format, args...)}
}

// UserError is an error whose message is safe to show to the API caller.
type UserError struct {
	Kind error // one of the sentinels
	Msg  string
}

func (e *UserError) Error() string { return e.Msg }
func (e *UserError) Unwrap() error { return e.Kind }

// Errorf returns a UserError of the given kind.
func Errorf(kind error, format string, args ...any) error {
	return &UserError{Kind: kind, Msg: fmt.Sprintf(format, args...)}
}

// Function states, as Lambda names them.
const (
	StatePending  = "Pending"
	StateActive   = "Active"
	StateFailed   = "Failed"
	StateInactive = "Inactive"

	UpdateInProgress = "InProgress"
	UpdateSuccessful = "Successful"
	UpdateFailed     = "Failed"
)

// Limits on function configuration, as Lambda has them.
const (
	MinMemoryMB = 128
	MaxMemoryMB = 10240
	MinTimeout  = 1
	MaxTimeout  = 900
	// DefaultMemoryMB and DefaultTimeout are Lambda's defaults.
	DefaultMemoryMB = 128
	DefaultTimeout  = 3
	// MemoryPerCPU is the memory that comes with one CPU's worth of time,
	// as Lambda scales CPU with memory (6 CPUs at the maximum).
	MemoryPerCPU = 1769
)

// Function is a function's stored configuration: what CreateFunction and
// UpdateFunction* write and GetFunction reads.
type Function struct {
	Name        string            `json:"name"`
	Runtime     string            `json:"runtime"`
	Handler     string            `json:"handler,omitempty"`
	Role        string            `json:"role,omitempty"`
	Description string            `json:"description,omitempty"`
	MemoryMB    int               `json:"memoryMB"`
	Timeout     int               `json:"timeout"` // seconds
	Environment map[string]string `json:"environment,omitempty"`
	CodeSHA256  string            `json:"codeSha256"` // hex digest of the zip; Lambda shows it base64
	CodeSize    int64             `json:"codeSize"`
	// CodeCRC64 is the CRC-64/ECMA (CRC-64/XZ) of the zip, which Function
	// Compute's API shows as codeChecksum (in decimal); 0 for code stored
	// before it was kept.
	CodeCRC64 uint64 `json:"codeCrc64,omitempty"`
	// FC holds the settings only Function Compute's API has (its
	// dialect, internal/api/fc_*.go); nil for a function never
	// configured through it.
	FC           *FCSettings `json:"fc,omitempty"`
	LastModified time.Time   `json:"lastModified"`
	// RevisionID changes on every write; updates that name a stale one fail.
	RevisionID       string `json:"revisionId"`
	State            string `json:"state"`
	StateReason      string `json:"stateReason,omitempty"`
	StateReasonCode  string `json:"stateReasonCode,omitempty"`
	LastUpdateStatus string `json:"lastUpdateStatus"`
	// ReservedConcurrency caps the function's concurrent instances
	// (PutFunctionConcurrency); nil means unreserved.
	ReservedConcurrency *int `json:"reservedConcurrency,omitempty"`
	// ProvisionedConcurrency is the number of warm instances kept ready.
	ProvisionedConcurrency int `json:"provisionedConcurrency,omitempty"`
	// HTTPConcurrency is how many requests one instance of an HTTP function
	// takes at once.
	HTTPConcurrency int `json:"httpConcurrency,omitempty"`
	// IdleTimeout overrides the node's instance idle timeout when non-zero.
	IdleTimeout time.Duration `json:"idleTimeout,omitempty"`
	// EventInvoke is the asynchronous invocation configuration of
	// $LATEST, the unqualified function (nil: the defaults). Its
	// flow-control settings are the function's queue's: they hold for the
	// asynchronous events of every version and alias.
	EventInvoke *EventInvokeConfig `json:"eventInvoke,omitempty"`
	// EventInvokeQualified are the asynchronous invocation configurations
	// of versions and aliases, by qualifier (a version's number or an
	// alias's name), without flow-control settings. They are kept here,
	// on the function, not in a version's snapshot: a version is
	// immutable, its event invoke config is not (as in Lambda).
	EventInvokeQualified map[string]*EventInvokeConfig `json:"eventInvokeQualified,omitempty"`
	// Triggers connect event sources to the function.
	Triggers []Trigger `json:"triggers,omitempty"`
	// EphemeralStorageMB is the size of an instance's private /tmp
	// (Lambda's EphemeralStorage.Size; 0: DefaultEphemeralMB).
	EphemeralStorageMB int `json:"ephemeralStorageMB,omitempty"`
	// TracingMode is Lambda's TracingConfig.Mode: TracingPassThrough (the
	// default, "") or TracingActive.
	TracingMode string `json:"tracingMode,omitempty"`
	// Logging is Lambda's LoggingConfig (nil: text logs, no level filter).
	Logging *LoggingConfig `json:"logging,omitempty"`
	// NimbusNetwork is the network of the function's instances: NetworkEgress
	// (outside addresses, but not the host nor other instances),
	// NetworkNone (nothing but its own loopback) or NetworkHost (the host's
	// network, as any process on it); "" means the node's default.
	NimbusNetwork string `json:"network,omitempty"`
	// DeadLetterTarget receives the event of an asynchronous invocation
	// that failed for good (Lambda's DeadLetterConfig.TargetArn): a
	// destination as in EventInvokeConfig.
	DeadLetterTarget string `json:"deadLetterTarget,omitempty"`
	// Tags are the function's tags (Lambda's TagResource); changing them
	// keeps the RevisionID, as in Lambda.
	Tags map[string]string `json:"tags,omitempty"`
	// Policy is the resource-based policy of the unqualified function
	// (and $LATEST), one statement per AddPermission (policy.go).
	Policy []PolicyStatement `json:"policy,omitempty"`
	// PolicyQualified are the resource-based policies of versions and
	// aliases, by qualifier (a version's number or an alias's name). As
	// EventInvokeQualified, they are kept on the function, not in a
	// version's immutable snapshot.
	PolicyQualified map[string][]PolicyStatement `json:"policyQualified,omitempty"`
	// RecursiveLoop is Lambda's recursion config: RecursiveLoopTerminate
	// ("") or RecursiveLoopAllow.
	RecursiveLoop string `json:"recursiveLoop,omitempty"`
	// UpdateRuntimeOn is Lambda's runtime management config:
	// UpdateRuntimeAuto ("") or UpdateRuntimeOnFunctionUpdate.
	UpdateRuntimeOn string `json:"updateRuntimeOn,omitempty"`

	// Version is "" for the function itself ($LATEST), or the number of
	// a published version: then the Function is that version's immutable
	// snapshot (registry.Version), which runs in a pool of its own.
	Version string `json:"version,omitempty"`
	// Versions are the function's published versions, oldest first, and
	// LastVersion the highest number ever published (numbers are not
	// used again after a delete).
	Versions    []VersionRef `json:"versions,omitempty"`
	LastVersion int          `json:"lastVersion,omitempty"`
	// Aliases name versions, by name.
	Aliases []Alias `json:"aliases,omitempty"`
	// ProvisionedVersions is the provisioned concurrency of versions and
	// aliases, by qualifier (a version's number or an alias's name):
	// that many warm instances of the version are kept ($LATEST's is
	// ProvisionedConcurrency).
	ProvisionedVersions map[string]int `json:"provisionedVersions,omitempty"`
	// Layers are the ARNs of the layer versions the function adds under
	// /opt, in order: a later one's files over an earlier one's.
	Layers []string `json:"layers,omitempty"`
	// PackageType is Lambda's: PackageZip ("" in records written before
	// images) or PackageImage.
	PackageType string `json:"packageType,omitempty"`
	// Image is an image function's image (PackageType Image); nil for a
	// zip function, whose code is CodeSHA256.
	Image *FunctionImage `json:"image,omitempty"`
}

// FCSettings are a function's settings that only Function Compute's API
// has: kept, shown and validated as Function Compute does. CPU and
// DiskSize are not enforced apart from memory: an instance's CPU share
// follows its memory as for every Nimbus function.
type FCSettings struct {
	// Runtime is the runtime's name as Function Compute spells it
	// (python3.10, nodejs20, custom.debian10, ...); Function.Runtime is
	// Nimbus's runtime that runs it.
	Runtime             string           `json:"runtime,omitempty"`
	CPU                 float64          `json:"cpu,omitempty"`
	DiskSize            int              `json:"diskSize,omitempty"`
	InstanceConcurrency int              `json:"instanceConcurrency,omitempty"`
	CustomRuntime       *FCCustomRuntime `json:"customRuntime,omitempty"`
	InternetAccess      *bool            `json:"internetAccess,omitempty"`
	Created             time.Time        `json:"created,omitzero"`
	// Conventions makes a Python or Node function run with Function
	// Compute's conventions (handler(event, context) with the payload as
	// bytes or a Buffer, Function Compute's context, the initializer):
	// set for functions created in the Function Compute dialect with its
	// python3.x and nodejsNN runtimes.
	Conventions bool `json:"conventions,omitempty"`
	// Initializer is instanceLifecycleConfig.initializer (Conventions
	// only): for Python and Node, a handler the bootstrap runs; for a
	// custom runtime or container, POST /initialize on its server, once,
	// before its first invocation.
	Initializer *FCHook `json:"initializer,omitempty"`
	// PreStop is instanceLifecycleConfig.preStop (custom runtimes and
	// containers): GET /pre-stop on the instance's server before it is
	// stopped, bounded by its timeout.
	PreStop *FCHook `json:"preStop,omitempty"`
}

// FCHook is a Function Compute lifecycle hook: a handler and its timeout
// in seconds.
type FCHook struct {
	Handler string `json:"handler"`
	Timeout int    `json:"timeout,omitempty"`
}

// FCCustomRuntime is Function Compute's customRuntimeConfig: the command
// of a custom runtime's server (Command and Args, started in the code's
// directory; none: the package's bootstrap) and the port it listens on.
type FCCustomRuntime struct {
	Command []string `json:"command,omitempty"`
	Args    []string `json:"args,omitempty"`
	Port    int      `json:"port,omitempty"`
}

// Lambda's package types.
const (
	PackageZip   = "Zip"
	PackageImage = "Image"
)

// DefaultImagePort is the port an HTTP image function (Function Compute's
// custom container: PackageImage with Runtime "http") serves on unless
// FunctionImage.Port says otherwise.
const DefaultImagePort = 9000

// FunctionImage is an image function's container image and how it runs:
// Lambda's Code.ImageUri, ResolvedImageUri and ImageConfig, and Nimbus's
// port of an HTTP image.
type FunctionImage struct {
	// URI is the image as given: "host[:port]/repo:tag" or
	// "host[:port]/repo@sha256:<hex>".
	URI string `json:"uri"`
	// Resolved is what URI named when the function was created or its code
	// last updated: "host[:port]/repo@sha256:<hex>". The function runs it
	// until the next update, wherever the tag has moved since.
	Resolved string `json:"resolved"`
	// EntryPoint, Command and WorkingDirectory override the image's
	// ENTRYPOINT, CMD and WORKDIR when set (Lambda's ImageConfig).
	EntryPoint       []string `json:"entryPoint,omitempty"`
	Command          []string `json:"command,omitempty"`
	WorkingDirectory string   `json:"workingDirectory,omitempty"`
	// Port is the port an HTTP image serves on (0: DefaultImagePort).
	Port int `json:"port,omitempty"`
}

// Digest is the image's manifest digest, "sha256:<hex>", from Resolved
// ("" if it has none).
func (im *FunctionImage) Digest() string {
	if im == nil {
		return ""
	}
	_, d, ok := strings.Cut(im.Resolved, "@")
	if !ok {
		return ""
	}
	return d
}

// IsImage reports whether f runs a container image.
func (f *Function) IsImage() bool { return f.PackageType == PackageImage }

// Latest is the qualifier of a function's unpublished version.
const Latest = "$LATEST"

// Qualifier is the version f is: its number, or Latest.
func (f *Function) Qualifier() string {
	if f.Version == "" {
		return Latest
	}
	return f.Version
}

// VersionRef is a published version, as its function's record lists it:
// the code it keeps while it exists.
type VersionRef struct {
	Number     int    `json:"number"`
	CodeSHA256 string `json:"codeSha256"`
}

// Alias is a name for a version of a function (Lambda's alias): requests
// to it go to FunctionVersion, or to another version for a share of them
// (Weights, AdditionalVersionWeights: at most one other version, its
// share from 0 to 1).
type Alias struct {
	Name            string             `json:"name"`
	FunctionVersion string             `json:"functionVersion"`
	Description     string             `json:"description,omitempty"`
	Weights         map[string]float64 `json:"weights,omitempty"`
	RevisionID      string             `json:"revisionId"`
	// Created and LastModified are when the alias was made and last
	// changed (zero for aliases made before they were kept).
	Created      time.Time `json:"created,omitzero"`
	LastModified time.Time `json:"lastModified,omitzero"`
}

// Ephemeral storage (/tmp) limits, as Lambda has them.
const (
	MinEphemeralMB     = 512
	MaxEphemeralMB     = 10240
	DefaultEphemeralMB = 512
)

// Networks of a function's instances (Function.NimbusNetwork).
const (
	NetworkEgress = "egress"
	NetworkNone   = "none"
	NetworkHost   = "host"
)

// Tracing modes (TracingConfig.Mode).
const (
	TracingPassThrough = "PassThrough"
	TracingActive      = "Active"
)

// Log formats (LoggingConfig.LogFormat).
const (
	LogFormatText = "Text"
	LogFormatJSON = "JSON"
)

// LoggingConfig is how a function's logs are written (Lambda's
// LoggingConfig). The levels apply to the JSON format only, as in Lambda.
type LoggingConfig struct {
	LogFormat string `json:"logFormat,omitempty"` // LogFormatText ("") or LogFormatJSON
	// ApplicationLogLevel is the least level of the function's own log
	// records that is kept: TRACE, DEBUG, INFO (""), WARN, ERROR or FATAL.
	ApplicationLogLevel string `json:"applicationLogLevel,omitempty"`
	// SystemLogLevel is the least level of the platform's records (START,
	// END, REPORT are INFO) that is kept: DEBUG, INFO ("") or WARN.
	SystemLogLevel string `json:"systemLogLevel,omitempty"`
}

// JSONLogs reports whether the function's logs are in the JSON format.
func (f *Function) JSONLogs() bool { return f.Logging != nil && f.Logging.LogFormat == LogFormatJSON }

// TmpMB is the size of an instance's /tmp.
func (f *Function) TmpMB() int {
	if f.EphemeralStorageMB == 0 {
		return DefaultEphemeralMB
	}
	return f.EphemeralStorageMB
}

// FunctionError is an error raised by the user's function (as opposed to the
// platform): it becomes X-Amz-Function-Error and Lambda's error payload.
type FunctionError struct {
	Type       string   `json:"errorType"`
	Message    string   `json:"errorMessage"`
	StackTrace []string `json:"stackTrace,omitempty"`
	// Unhandled is true when the runtime or the platform raised it (crash,
	// timeout, out of memory) rather than the handler returning an error.
	Unhandled bool `json:"-"`
}

func (e *FunctionError) Error() string { return e.Type + ": " + e.Message }
