package api

import (
	"cmp"
	"encoding/json"
	"errors"
	"hash/crc64"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/auth"
	"github.com/nimbus-serverless/nimbus/internal/lazyre"
	"github.com/nimbus-serverless/nimbus/internal/registry"
)

// fcCustomRuntime is customRuntimeConfig.
type fcCustomRuntime struct {
	Command           []string        `json:"command,omitempty"`
	Args              []string        `json:"args,omitempty"`
	Port              int             `json:"port,omitempty"`
	HealthCheckConfig json.RawMessage `json:"healthCheckConfig,omitempty"`
}

// fcMaxCommand bounds the length of customRuntimeConfig's command and
// args together, in bytes.
const fcMaxCommand = 4096

// check refuses a customRuntimeConfig Nimbus cannot honour for a function
// of Function Compute's runtime rt: command and args (the server's
// command line, started in the code's directory instead of the package's
// bootstrap) only for custom runtimes, args only with a command.
func (c *fcCustomRuntime) check(rt string) error {
	if c.Port != 0 && (c.Port < 1 || c.Port > 65535) {
		return fcInvalid("customRuntimeConfig.port %d is invalid", c.Port)
	}
	if len(c.Command) == 0 && len(c.Args) == 0 {
		return nil
	}
	n := 0
	for _, a := range append(slices.Clone(c.Command), c.Args...) {
		if strings.IndexByte(a, 0) >= 0 {
			return fcInvalid("customRuntimeConfig.command and args may not hold a NUL byte")
		}
		n += len(a) + 1
	}
	switch {
	case !slices.Contains(fcCustomRuntimes, rt):
		return fcInvalid("customRuntimeConfig.command and args are for the custom runtimes (%s), not %s", strings.Join(fcCustomRuntimes, ", "), rt)
	case len(c.Command) == 0:
		return fcInvalid("customRuntimeConfig.args needs a command: without one, the package's bootstrap is started with no arguments")
	case c.Command[0] == "":
		return fcInvalid("customRuntimeConfig.command[0] is empty: give a program, a path in the code (/code/server) or a name on PATH (python3)")
	case n > fcMaxCommand:
		return fcInvalid("customRuntimeConfig.command and args are %d bytes long, over %d", n, fcMaxCommand)
	}
	return nil
}

// fcContainer is customContainerConfig: a custom container function's
// image (an image function of Nimbus's, HTTP contract), its port and its
// entry point and command (ImageConfig's).
type fcContainer struct {
	Image            string          `json:"image,omitempty"`
	Port             int             `json:"port,omitempty"`
	Entrypoint       []string        `json:"entrypoint,omitempty"`
	Command          []string        `json:"command,omitempty"`
	ResolvedImageURI string          `json:"resolvedImageUri,omitempty"`
	AccelerationType string          `json:"accelerationType,omitempty"`
	RegistryConfig   json.RawMessage `json:"registryConfig,omitempty"`
	HealthCheck      json.RawMessage `json:"healthCheckConfig,omitempty"`
}

// fcCustomContainer is Function Compute's runtime of container functions.
const fcCustomContainer = "custom-container"

// check refuses what Nimbus cannot honour of c.
func (c *fcContainer) check() error {
	switch {
	case c.Image == "":
		return fcInvalid("customContainerConfig.image is required")
	case c.Port != 0 && (c.Port < 1 || c.Port > 65535):
		return fcInvalid("customContainerConfig.port %d is invalid", c.Port)
	case c.AccelerationType != "" && c.AccelerationType != "Default":
		return fcInvalid("customContainerConfig.accelerationType %q is not supported: Nimbus always pulls and unpacks an image when its function is created or updated (Default)", c.AccelerationType)
	case len(c.RegistryConfig) > 0 && string(c.RegistryConfig) != "null":
		return fcInvalid("customContainerConfig.registryConfig is not supported: a node reads registry credentials from its --registry-config file (docs/images.md)")
	case len(c.HealthCheck) > 0 && string(c.HealthCheck) != "null":
		return fcInvalid("customContainerConfig.healthCheckConfig is not supported: an instance is ready when its port accepts connections")
	}
	return nil
}

// fcFunctionFields are the fields CreateFunction and UpdateFunction share.
// Those Nimbus cannot honour are declared so that a request setting them
// is refused by name (fcUnsupported) rather than dropped.
type fcFunctionFields struct {
	Runtime              *string            `json:"runtime"`
	Handler              *string            `json:"handler"`
	Description          *string            `json:"description"`
	MemorySize           *int               `json:"memorySize"`
	CPU                  *float64           `json:"cpu"`
	DiskSize             *int               `json:"diskSize"`
	Timeout              *int               `json:"timeout"`
	InstanceConcurrency  *int               `json:"instanceConcurrency"`
	EnvironmentVariables *map[string]string `json:"environmentVariables"`
	CustomRuntimeConfig  *fcCustomRuntime   `json:"customRuntimeConfig"`
	Layers               *[]string          `json:"layers"`
	Role                 *string            `json:"role"`
	InternetAccess       *bool              `json:"internetAccess"`
	Code                 *struct {
		ZipFile       []byte `json:"zipFile"`
		Checksum      string `json:"checksum"`
		OSSBucketName string `json:"ossBucketName"`
		OSSObjectName string `json:"ossObjectName"`
	} `json:"code"`
	// Accepted only when it asks for nothing (fcLogConfig.check).
	LogConfig             *fcLogConfig `json:"logConfig"`
	CustomContainerConfig *fcContainer `json:"customContainerConfig"`
	// Refused when set (fcUnsupported).
	CustomDNS               json.RawMessage `json:"customDNS"`
	GPUConfig               json.RawMessage `json:"gpuConfig"`
	InstanceLifecycleConfig *fcLifecycle    `json:"instanceLifecycleConfig"`
	NASConfig               json.RawMessage `json:"nasConfig"`
	OSSMountConfig          json.RawMessage `json:"ossMountConfig"`
	VPCConfig               json.RawMessage `json:"vpcConfig"`
	TracingConfig           json.RawMessage `json:"tracingConfig"`
	JuiceFSConfig           json.RawMessage `json:"juiceFsConfig"`
	PolarFSConfig           json.RawMessage `json:"polarFsConfig"`
	SessionAffinity         json.RawMessage `json:"sessionAffinity"`
	SessionAffinityConfig   json.RawMessage `json:"sessionAffinityConfig"`
	InstanceIsolationMode   json.RawMessage `json:"instanceIsolationMode"`
	EnableLongLiving        json.RawMessage `json:"enableLongLiving"`
	DisableOndemand         json.RawMessage `json:"disableOndemand"`
	DisableInjectCreds      json.RawMessage `json:"disableInjectCredentials"`
	IdleTimeout             *int            `json:"idleTimeout"`
	ResourceGroupID         json.RawMessage `json:"resourceGroupId"`
}

// fcLogConfig is logConfig: where Function Compute ships a function's
// logs (a Simple Log Service project and logstore) and which metrics it
// adds to them. Nimbus keeps every function's logs itself, so a logConfig
// is accepted only when it ships nothing: empty, or all its fields unset.
type fcLogConfig struct {
	Project               string `json:"project"`
	Logstore              string `json:"logstore"`
	EnableRequestMetrics  bool   `json:"enableRequestMetrics"`
	EnableInstanceMetrics bool   `json:"enableInstanceMetrics"`
	LogBeginRule          string `json:"logBeginRule"`
}

// check refuses a logConfig that asks Nimbus to ship logs or metrics.
func (c *fcLogConfig) check() error {
	if c == nil {
		return nil
	}
	const why = "Nimbus ships no logs to Simple Log Service; it keeps every function's logs itself (GetFunction's logs with the Lambda API, `nimbus logs`, the console)"
	switch {
	case c.Project != "" || c.Logstore != "":
		return fcInvalid("logConfig.project and logConfig.logstore are not supported: %s", why)
	case c.EnableRequestMetrics || c.EnableInstanceMetrics:
		return fcInvalid("logConfig.enableRequestMetrics and enableInstanceMetrics are not supported: %s; Nimbus's metrics are at GET /metrics", why)
	case c.LogBeginRule != "" && c.LogBeginRule != "None":
		return fcInvalid("logConfig.logBeginRule is not supported: %s", why)
	}
	return nil
}

// fcLifecycle is instanceLifecycleConfig (fcFunctionFields.lifecycle).
type fcLifecycle struct {
	Initializer *fcHook `json:"initializer,omitempty"`
	PreStop     *fcHook `json:"preStop,omitempty"`
}

// fcHook is a LifecycleHook.
type fcHook struct {
	Handler string   `json:"handler,omitempty"`
	Timeout int      `json:"timeout,omitempty"`
	Command []string `json:"command,omitempty"`
}

// fcMaxInitTimeout bounds a lifecycle hook's timeout (seconds).
const fcMaxInitTimeout = 600

// fcUnsupported refuses the set fields Nimbus has no equivalent for.
func (f *fcFunctionFields) fcUnsupported() error {
	for _, u := range []struct {
		name string
		v    json.RawMessage
		why  string
	}{
		{"customDNS", f.CustomDNS, "Nimbus's instances use the host's resolver"},
		{"gpuConfig", f.GPUConfig, "Nimbus has no GPU instances"},
		{"nasConfig", f.NASConfig, "Nimbus mounts no NAS file systems"},
		{"ossMountConfig", f.OSSMountConfig, "Nimbus mounts no OSS buckets"},
		{"vpcConfig", f.VPCConfig, "Nimbus's instances have no VPC; their network is egress, none or host"},
		{"tracingConfig", f.TracingConfig, "Nimbus traces with OpenTelemetry (docs/observability.md)"},
		{"juiceFsConfig", f.JuiceFSConfig, "Nimbus mounts no JuiceFS"},
		{"polarFsConfig", f.PolarFSConfig, "Nimbus mounts no PolarFS"},
		{"sessionAffinity", f.SessionAffinity, "Nimbus has no session affinity"},
		{"sessionAffinityConfig", f.SessionAffinityConfig, "Nimbus has no session affinity"},
		{"instanceIsolationMode", f.InstanceIsolationMode, "every Nimbus instance is isolated alike"},
		{"enableLongLiving", f.EnableLongLiving, "not applicable"},
		{"disableOndemand", f.DisableOndemand, "not applicable"},
		{"disableInjectCredentials", f.DisableInjectCreds, "Nimbus injects no cloud credentials"},
		{"resourceGroupId", f.ResourceGroupID, "Nimbus has no resource groups"},
	} {
		if len(u.v) > 0 && string(u.v) != "null" {
			return fcInvalid("%s is not supported: %s", u.name, u.why)
		}
	}
	if err := f.LogConfig.check(); err != nil {
		return err
	}
	if c := f.Code; c != nil && (c.OSSBucketName != "" || c.OSSObjectName != "") {
		return fcInvalid("code.ossBucketName and code.ossObjectName are not supported: upload the package in code.zipFile")
	}
	return nil
}

// fcRuntimeNames maps Function Compute's runtime names to the Nimbus
// runtime that runs them; python3.x and nodejsNN are matched by pattern.
var fcCustomRuntimes = []string{"custom", "custom.debian10", "custom.debian11", "custom.debian12"}

var fcPython = lazyre.New(`^python3\.(\d+)$`)
var fcNode = lazyre.New(`^nodejs(\d+)$`)

// fcRuntime returns the Nimbus runtime of Function Compute's runtime
// name fc, among the node's runtimes; Nimbus's own runtime IDs are taken as
// they are.
func fcRuntime(fc string, have []string) (string, error) {
	id := fc
	switch {
	case slices.Contains(fcCustomRuntimes, fc) || fc == fcCustomContainer:
		id = "http"
	case fcNode().MatchString(fc):
		id = fc + ".x"
	}
	if slices.Contains(have, id) {
		return id, nil
	}
	var offered []string
	for _, h := range have {
		switch {
		case h == "http":
			offered = append(offered, fcCustomRuntimes...)
		case fcPython().MatchString(h):
			offered = append(offered, h)
		case strings.HasPrefix(h, "nodejs") && strings.HasSuffix(h, ".x"):
			offered = append(offered, strings.TrimSuffix(h, ".x"))
		}
	}
	return "", fcInvalid("runtime %q is not supported on this node. Function Compute runtimes it offers: %s (and Nimbus's own: %s)",
		fc, strings.Join(offered, ", "), strings.Join(have, ", "))
}

// fcRuntimeName is the runtime of fn as Function Compute names it.
func fcRuntimeName(fn *nimbus.Function) string {
	if fn.FC != nil && fn.FC.Runtime != "" {
		return fn.FC.Runtime
	}
	if fn.IsImage() {
		return fcCustomContainer
	}
	if fn.Runtime == "http" {
		return "custom"
	}
	if fcNode().MatchString(strings.TrimSuffix(fn.Runtime, ".x")) {
		return strings.TrimSuffix(fn.Runtime, ".x")
	}
	return fn.Runtime
}

// Function Compute's limits of an elastic instance (docs/fc-api.md cites
// them): vCPU 0.05 to 16 in steps of 0.05; memory 128 to 32768 MB in steps
// of 64 (Nimbus's own cap, 10240, applies too); vCPU:memory (GB) from 1:1
// to 1:4; disk 512 or 10240 MB; instance concurrency 1 to 200.
const (
	fcMinCPU  = 0.05
	fcMaxCPU  = 16
	fcMemStep = 64
)

// fcCheckSpec checks memory, cpu and disk as Function Compute does; mem and
// cpu are the values the function will have.
func fcCheckSpec(mem int, cpu float64, disk int) error {
	if mem%fcMemStep != 0 {
		return fcInvalid("memorySize %d is invalid: it must be a multiple of 64 MB", mem)
	}
	if cpu != 0 {
		steps := cpu / fcMinCPU
		if cpu < fcMinCPU || cpu > fcMaxCPU || math.Abs(steps-math.Round(steps)) > 1e-6 {
			return fcInvalid("cpu %v is invalid: it must be from 0.05 to 16 vCPU, a multiple of 0.05", cpu)
		}
		gb := float64(mem) / 1024
		if gb < cpu-1e-9 || gb > 4*cpu+1e-9 {
			return fcInvalid("cpu %v and memorySize %d are invalid together: the ratio of vCPU to memory in GB must be from 1:1 to 1:4 (memory from %d to %d MB for %v vCPU)",
				cpu, mem, int(math.Ceil(cpu*1024)), int(cpu*4*1024), cpu)
		}
	}
	if disk != 0 && disk != 512 && disk != 10240 {
		return fcInvalid("diskSize %d is invalid: it must be 512 or 10240 (MB)", disk)
	}
	return nil
}

// fcDefaultCPU is the vCPU Function Compute gives a memory size when cpu is
// not set: the least that keeps the ratio (memory in GB / 4, at least
// 0.05, in steps of 0.05).
func fcDefaultCPU(mem int) float64 {
	c := math.Ceil(float64(mem)/1024/4/fcMinCPU) * fcMinCPU
	return math.Round(max(c, fcMinCPU)*100) / 100
}

// input builds the registry's input for the fields set, over cur (nil: a
// new function).
func (f *fcFunctionFields) input(name string, cur *nimbus.Function, have []string) (registry.FunctionInput, error) {
	in := registry.FunctionInput{Name: name, Handler: f.Handler, Description: f.Description, MemoryMB: f.MemorySize,
		Timeout: f.Timeout, Role: f.Role, Environment: f.EnvironmentVariables, Layers: f.Layers}
	if err := f.fcUnsupported(); err != nil {
		return in, err
	}
	fc := nimbus.FCSettings{}
	mem := nimbus.DefaultMemoryMB
	if cur != nil {
		mem = cur.MemoryMB
		if cur.FC != nil {
			fc = *cur.FC
			if fc.CustomRuntime != nil {
				c := *fc.CustomRuntime
				fc.CustomRuntime = &c
			}
		}
	}
	if f.Runtime != nil {
		rt, err := fcRuntime(*f.Runtime, have)
		if err != nil {
			return in, err
		}
		in.Runtime, fc.Runtime = &rt, *f.Runtime
		fc.Conventions = fcPython().MatchString(*f.Runtime) || fcNode().MatchString(*f.Runtime) || slices.Contains(fcCustomRuntimes, *f.Runtime)
	}
	if f.MemorySize != nil {
		mem = *f.MemorySize
	}
	if f.CPU != nil {
		fc.CPU = *f.CPU
	}
	if fc.CPU == 0 || (f.MemorySize != nil && f.CPU == nil) {
		fc.CPU = fcDefaultCPU(mem)
	}
	if f.DiskSize != nil {
		fc.DiskSize = *f.DiskSize
		in.EphemeralStorageMB = f.DiskSize
	}
	if err := fcCheckSpec(mem, fc.CPU, fc.DiskSize); err != nil {
		return in, err
	}
	if f.InstanceConcurrency != nil {
		c := *f.InstanceConcurrency
		if c < 1 || c > 200 {
			return in, fcInvalid("instanceConcurrency %d is invalid: it must be from 1 to 200", c)
		}
		fc.InstanceConcurrency = c
		in.HTTPConcurrency = &c
	}
	if f.IdleTimeout != nil {
		in.IdleTimeoutSeconds = f.IdleTimeout
	}
	if f.InternetAccess != nil {
		fc.InternetAccess = f.InternetAccess
		netw := nimbus.NetworkEgress
		if !*f.InternetAccess {
			netw = nimbus.NetworkNone
		}
		in.Network = &netw
	}
	if c := f.CustomRuntimeConfig; c != nil {
		if err := c.check(fc.Runtime); err != nil {
			return in, err
		}
		fc.CustomRuntime = &nimbus.FCCustomRuntime{Command: c.Command, Args: c.Args, Port: c.Port}
	}
	if c := f.CustomContainerConfig; c != nil {
		if cur != nil && !cur.IsImage() {
			return in, fcInvalid("customContainerConfig is for functions of runtime custom-container: function %s runs a code package", name)
		}
		if err := c.check(); err != nil {
			return in, err
		}
		port := cmp.Or(c.Port, nimbus.DefaultImagePort)
		in.ImagePort = &port
		in.ImageConfig = &registry.ImageConfigInput{EntryPoint: c.Entrypoint, Command: c.Command}
		if cur != nil && cur.Image != nil {
			in.ImageConfig.WorkingDirectory = cur.Image.WorkingDirectory
		}
		// Function Compute's custom conventions (POST /invoke, x-fc-*), on the image's port.
		fc.Conventions, fc.CustomRuntime = true, &nimbus.FCCustomRuntime{Port: port}
	}
	if err := f.lifecycle(&fc); err != nil {
		return in, err
	}
	in.FC = &fc
	return in, nil
}

// fcCreateRequest is CreateFunction's body.
type fcCreateRequest struct {
	FunctionName string `json:"functionName"`
	fcFunctionFields
	Tags []fcTag `json:"tags"`
}

// fcTag is Function Compute's Tag: Key and Value, capitalized on the wire
// (the SDK's Tag model names them so).
type fcTag struct {
	Key   string `json:"Key"`
	Value string `json:"Value"`
}

// fcLayer is a layer as a function shows it.
type fcLayer struct {
	Arn  string `json:"arn"`
	Size int64  `json:"size"`
}

// fcFunction is Function Compute's Function.
type fcFunction struct {
	FunctionName           string              `json:"functionName"`
	FunctionID             string              `json:"functionId"`
	FunctionArn            string              `json:"functionArn"`
	Description            string              `json:"description"`
	Runtime                string              `json:"runtime"`
	Handler                string              `json:"handler"`
	Role                   string              `json:"role,omitempty"`
	CodeChecksum           string              `json:"codeChecksum"`
	CodeSize               int64               `json:"codeSize"`
	CPU                    float64             `json:"cpu"`
	MemorySize             int                 `json:"memorySize"`
	DiskSize               int                 `json:"diskSize"`
	Timeout                int                 `json:"timeout"`
	InstanceConcurrency    int                 `json:"instanceConcurrency"`
	InternetAccess         bool                `json:"internetAccess"`
	EnvironmentVariables   map[string]string   `json:"environmentVariables"`
	CustomRuntimeConfig    *fcCustomRuntime    `json:"customRuntimeConfig,omitempty"`
	CustomContainerConfig  *fcContainer        `json:"customContainerConfig,omitempty"`
	InstanceLifecycle      *fcLifecycle        `json:"instanceLifecycleConfig,omitempty"`
	Layers                 []fcLayer           `json:"layers,omitempty"`
	CreatedTime            string              `json:"createdTime"`
	LastModifiedTime       string              `json:"lastModifiedTime"`
	State                  string              `json:"state"`
	StateReason            string              `json:"stateReason,omitempty"`
	StateReasonCode        string              `json:"stateReasonCode,omitempty"`
	LastUpdateStatus       string              `json:"lastUpdateStatus"`
	LastUpdateStatusReason string              `json:"lastUpdateStatusReason,omitempty"`
	Tags                   []fcTag             `json:"tags,omitempty"`
	IdleTimeout            int                 `json:"idleTimeout,omitempty"`
	Extra                  map[string]struct{} `json:"-"`
}

// fcView is fn in Function Compute's shape.
func (s *Server) fcView(fn *nimbus.Function) fcFunction {
	v := fcFunction{FunctionName: fn.Name, FunctionID: fn.Name, FunctionArn: s.fcARN(fn.Name),
		Description: fn.Description, Runtime: fcRuntimeName(fn), Handler: fn.Handler, Role: fn.Role,
		CodeSize: fn.CodeSize, MemorySize: fn.MemoryMB, Timeout: fn.Timeout, DiskSize: fn.EphemeralStorageMB,
		EnvironmentVariables: fn.Environment, LastModifiedTime: fcTime(fn.LastModified),
		State: fn.State, StateReason: fn.StateReason, StateReasonCode: fn.StateReasonCode,
		LastUpdateStatus: fn.LastUpdateStatus, InternetAccess: fn.NimbusNetwork != nimbus.NetworkNone,
		InstanceConcurrency: 1, CreatedTime: fcTime(fn.LastModified), IdleTimeout: int(fn.IdleTimeout.Seconds())}
	if fn.CodeCRC64 != 0 {
		v.CodeChecksum = strconv.FormatUint(fn.CodeCRC64, 10)
	}
	if v.DiskSize == 0 {
		v.DiskSize = nimbus.DefaultEphemeralMB
	}
	if v.EnvironmentVariables == nil {
		v.EnvironmentVariables = map[string]string{}
	}
	if fn.HTTPConcurrency > 0 {
		v.InstanceConcurrency = fn.HTTPConcurrency
	}
	v.CPU = fcDefaultCPU(fn.MemoryMB)
	if fc := fn.FC; fc != nil {
		if fc.CPU != 0 {
			v.CPU = fc.CPU
		}
		if !fc.Created.IsZero() {
			v.CreatedTime = fcTime(fc.Created)
		}
		if c := fc.CustomRuntime; c != nil {
			v.CustomRuntimeConfig = &fcCustomRuntime{Command: c.Command, Args: c.Args, Port: c.Port}
		}
		if fc.Initializer != nil || fc.PreStop != nil {
			v.InstanceLifecycle = &fcLifecycle{}
			if i := fc.Initializer; i != nil {
				v.InstanceLifecycle.Initializer = &fcHook{Handler: i.Handler, Timeout: i.Timeout}
			}
			if p := fc.PreStop; p != nil {
				v.InstanceLifecycle.PreStop = &fcHook{Handler: p.Handler, Timeout: p.Timeout}
			}
		}
	}
	if im := fn.Image; im != nil {
		v.CustomRuntimeConfig = nil
		v.CustomContainerConfig = &fcContainer{Image: im.URI, ResolvedImageURI: im.Resolved, Port: cmp.Or(im.Port, nimbus.DefaultImagePort),
			Entrypoint: im.EntryPoint, Command: im.Command, AccelerationType: "Default"}
	} else if fn.Runtime == "http" && v.CustomRuntimeConfig == nil {
		v.CustomRuntimeConfig = &fcCustomRuntime{Port: 9000}
	}
	for _, l := range fn.Layers {
		v.Layers = append(v.Layers, fcLayer{Arn: l})
	}
	for k, val := range fn.Tags {
		v.Tags = append(v.Tags, fcTag{Key: k, Value: val})
	}
	slices.SortFunc(v.Tags, func(a, b fcTag) int { return strings.Compare(a.Key, b.Key) })
	return v
}

// fcCheckCode checks code.checksum, when given, against the package.
func fcCheckCode(zip []byte, checksum string) error {
	if checksum == "" {
		return nil
	}
	got := strconv.FormatUint(crc64.Checksum(zip, crc64.MakeTable(crc64.ECMA)), 10)
	if got != checksum {
		return fcInvalid("code.checksum %s does not match the package's CRC-64 (ECMA), %s", checksum, got)
	}
	return nil
}

func (s *Server) fcFunctionsCreate(w http.ResponseWriter, r *http.Request) error {
	var req fcCreateRequest
	if err := fcDecode(w, r, s.cfg.MaxCodeBody, &req); err != nil {
		return err
	}
	if req.FunctionName == "" {
		return fcInvalid("functionName is required")
	}
	if !registry.ValidName(req.FunctionName) {
		return fcInvalid("functionName %q is invalid: 1 to 64 letters, digits, - and _", req.FunctionName)
	}
	if err := allow(r, auth.Manage, req.FunctionName); err != nil {
		return err
	}
	if req.Runtime == nil {
		return fcInvalid("runtime is required")
	}
	container := *req.Runtime == fcCustomContainer
	switch {
	case container && req.CustomContainerConfig == nil:
		return fcInvalid("customContainerConfig is required for runtime custom-container")
	case !container && req.CustomContainerConfig != nil:
		return fcInvalid("customContainerConfig is for runtime custom-container, not %s", *req.Runtime)
	case container && req.Code != nil:
		return fcInvalid("code is not taken for runtime custom-container: the function runs customContainerConfig.image")
	case !container && (req.Code == nil || len(req.Code.ZipFile) == 0):
		return fcInvalid("code.zipFile is required: Nimbus takes the package (a zip, base64) in the request")
	}
	if !container {
		if err := fcCheckCode(req.Code.ZipFile, req.Code.Checksum); err != nil {
			return err
		}
	}
	in, err := req.input(req.FunctionName, nil, s.reg.Runtimes())
	if err != nil {
		return err
	}
	in.FC.Created = time.Now().UTC()
	if len(req.Tags) > 0 {
		in.Tags = map[string]string{}
		for _, t := range req.Tags {
			in.Tags[t.Key] = t.Value
		}
	}
	if err := s.checkDeadLetter(r.Context(), in); err != nil {
		return err
	}
	if _, err := s.reg.Get(r.Context(), in.Name); err == nil {
		return fcErr(http.StatusConflict, fcFunctionAlreadyExists, "function '"+in.Name+"' already exists")
	}
	var fn *nimbus.Function
	if container {
		fn, err = s.reg.CreateImage(r.Context(), in, req.CustomContainerConfig.Image)
	} else {
		fn, err = s.reg.Create(r.Context(), in, req.Code.ZipFile)
	}
	if errors.Is(err, nimbus.ErrConflict) {
		return fcErr(http.StatusConflict, fcFunctionAlreadyExists, "function '"+in.Name+"' already exists")
	}
	if err != nil {
		return err
	}
	w.Header().Set("X-Fc-Code-Checksum", strconv.FormatUint(fn.CodeCRC64, 10))
	return fcWriteJSON(w, http.StatusOK, s.fcView(fn))
}

// fcFunction loads the function {name} names, or FunctionNotFound.
func (s *Server) fcFunction(r *http.Request) (*nimbus.Function, error) {
	name := r.PathValue("name")
	if !registry.ValidName(name) {
		return nil, fcErr(http.StatusNotFound, fcFunctionNotFound, "function '"+name+"' does not exist")
	}
	fn, err := s.reg.Get(r.Context(), name)
	if errors.Is(err, nimbus.ErrNotFound) {
		return nil, fcErr(http.StatusNotFound, fcFunctionNotFound, "function '"+name+"' does not exist")
	}
	return fn, err
}

func (s *Server) fcFunctionsGet(w http.ResponseWriter, r *http.Request) error {
	fn, err := s.fcQualified(r)
	if err != nil {
		return err
	}
	if fn.CodeCRC64 != 0 {
		w.Header().Set("X-Fc-Code-Checksum", strconv.FormatUint(fn.CodeCRC64, 10))
	}
	return fcWriteJSON(w, http.StatusOK, s.fcView(fn))
}

// fcQualified is the function, or the version or alias's version the
// qualifier query names.
func (s *Server) fcQualified(r *http.Request) (*nimbus.Function, error) {
	fn, err := s.fcFunction(r)
	if err != nil {
		return nil, err
	}
	q := r.URL.Query().Get("qualifier")
	if q == "" || q == "LATEST" || q == nimbus.Latest {
		return fn, nil
	}
	v, err := s.reg.Resolve(r.Context(), fn.Name, q)
	if errors.Is(err, nimbus.ErrNotFound) {
		return nil, fcErr(http.StatusNotFound, fcVersionNotFound, "version or alias '"+q+"' of function '"+fn.Name+"' does not exist")
	}
	return v, err
}

func (s *Server) fcFunctionsUpdate(w http.ResponseWriter, r *http.Request) error {
	cur, err := s.fcFunction(r)
	if err != nil {
		return err
	}
	var req fcFunctionFields
	if err := fcDecode(w, r, s.cfg.MaxCodeBody, &req); err != nil {
		return err
	}
	in, err := req.input(cur.Name, cur, s.reg.Runtimes())
	if err != nil {
		return err
	}
	if err := s.checkDeadLetter(r.Context(), in); err != nil {
		return err
	}
	fn := cur
	if c := req.CustomContainerConfig; c != nil && c.Image != cur.Image.URI {
		if fn, err = s.reg.UpdateImage(r.Context(), cur.Name, c.Image, ""); err != nil {
			return fcNotFound(err, fcFunctionNotFound)
		}
	}
	if req.Code != nil && cur.IsImage() {
		return fcInvalid("code is not taken for runtime custom-container: set customContainerConfig.image")
	}
	if req.Code != nil {
		if len(req.Code.ZipFile) == 0 {
			return fcInvalid("code.zipFile is required when code is given")
		}
		if err := fcCheckCode(req.Code.ZipFile, req.Code.Checksum); err != nil {
			return err
		}
		if fn, err = s.reg.UpdateCode(r.Context(), cur.Name, req.Code.ZipFile, ""); err != nil {
			return fcNotFound(err, fcFunctionNotFound)
		}
	}
	if fn, err = s.reg.UpdateConfig(r.Context(), cur.Name, in, ""); err != nil {
		return fcNotFound(err, fcFunctionNotFound)
	}
	w.Header().Set("X-Fc-Code-Checksum", strconv.FormatUint(fn.CodeCRC64, 10))
	return fcWriteJSON(w, http.StatusOK, s.fcView(fn))
}

func (s *Server) fcFunctionsDelete(w http.ResponseWriter, r *http.Request) error {
	fn, err := s.fcFunction(r)
	if err != nil {
		return err
	}
	if err := s.reg.Delete(r.Context(), fn.Name); err != nil {
		return fcNotFound(err, fcFunctionNotFound)
	}
	return fcNoContent(w)
}

// fcListFunctions is ListFunctions' answer.
type fcListFunctions struct {
	Functions []fcFunction `json:"functions"`
	NextToken string       `json:"nextToken,omitempty"`
}

// fcFunctionsList is ListFunctions: prefix, limit (1 to 100, default 20)
// and nextToken (the name to start at); a key sees only its functions.
func (s *Server) fcFunctionsList(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	limit := 20
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 100 {
			return fcInvalid("limit %q is invalid: it must be from 1 to 100", v)
		}
		limit = n
	}
	fns, err := s.reg.List(r.Context())
	if err != nil {
		return err
	}
	prefix, token := q.Get("prefix"), q.Get("nextToken")
	out := fcListFunctions{Functions: []fcFunction{}}
	for _, fn := range fns { // in name order
		if !strings.HasPrefix(fn.Name, prefix) || fn.Name < token || !sees(r, fn.Name) {
			continue
		}
		if len(out.Functions) == limit {
			out.NextToken = fn.Name
			break
		}
		out.Functions = append(out.Functions, s.fcView(fn))
	}
	return fcWriteJSON(w, http.StatusOK, out)
}

// fcCodeOutput is GetFunctionCode's answer.
type fcCodeOutput struct {
	URL      string `json:"url"`
	Checksum string `json:"checksum"`
}

// fcFunctionsCode is GetFunctionCode: a URL of the package, the same as
// the Lambda dialect's GetFunction Code.Location (a signed request
// downloads it), and its checksum.
func (s *Server) fcFunctionsCode(w http.ResponseWriter, r *http.Request) error {
	fn, err := s.fcQualified(r)
	if err != nil {
		return err
	}
	out := fcCodeOutput{URL: s.codeURL(r, fn)}
	if fn.CodeCRC64 != 0 {
		out.Checksum = strconv.FormatUint(fn.CodeCRC64, 10)
	}
	return fcWriteJSON(w, http.StatusOK, out)
}

// lifecycle applies instanceLifecycleConfig to fc: the initializer of a
// function with Function Compute's conventions (its handler in the
// function's code for Python and Node; POST /initialize for a custom
// runtime or container) and the preStop hook of a custom runtime or
// container (GET /pre-stop); a hook's command is refused. A hook is set by
// its handler (a custom function's is not used, as in Function Compute).
func (f *fcFunctionFields) lifecycle(fc *nimbus.FCSettings) error {
	if lc := f.InstanceLifecycleConfig; lc != nil {
		var err error
		if fc.Initializer, err = fcLifecycleHook("initializer", lc.Initializer); err != nil {
			return err
		}
		if fc.PreStop, err = fcLifecycleHook("preStop", lc.PreStop); err != nil {
			return err
		}
	}
	if (fc.Initializer != nil || fc.PreStop != nil) && !fc.Conventions {
		return fcInvalid("instanceLifecycleConfig is supported for functions made with Function Compute's runtimes (python3.x, nodejsNN, custom, custom-container)")
	}
	return nil
}

// fcLifecycleHook is hook h (named what) as Nimbus keeps it, nil when it
// is not set.
func fcLifecycleHook(what string, h *fcHook) (*nimbus.FCHook, error) {
	switch {
	case h == nil || h.Handler == "" && len(h.Command) == 0:
		return nil, nil
	case len(h.Command) > 0:
		return nil, fcInvalid("instanceLifecycleConfig.%s.command is not supported: give a handler", what)
	case h.Timeout < 0 || h.Timeout > fcMaxInitTimeout:
		return nil, fcInvalid("instanceLifecycleConfig.%s.timeout %d is invalid: it must be from 1 to %d seconds", what, h.Timeout, fcMaxInitTimeout)
	}
	return &nimbus.FCHook{Handler: h.Handler, Timeout: cmp.Or(h.Timeout, 3)}, nil
}
