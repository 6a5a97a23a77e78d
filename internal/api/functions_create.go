package api

import (
	"context"
	"net/http"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/auth"
	"github.com/nimbus-serverless/nimbus/internal/registry"
)

// configurationFields are the fields CreateFunction and
// UpdateFunctionConfiguration share. Every field Lambda has is declared, so
// that those Nimbus does not support are refused by name (unsupported.go)
// rather than dropped; fields Lambda does not have are refused when the
// body is decoded.
type configurationFields struct {
	Runtime     *string
	Role        *string
	Handler     *string
	Description *string
	Timeout     *int
	MemorySize  *int
	Environment *struct {
		Variables map[string]string
	}
	EphemeralStorage *struct {
		Size *int
	}
	TracingConfig *struct {
		Mode *string
	}
	LoggingConfig *struct {
		LogFormat           *string
		ApplicationLogLevel *string
		SystemLogLevel      *string
		LogGroup            *string
	}
	DeadLetterConfig *struct {
		TargetArn *string
	}
	Layers []string // layer version ARNs; [] removes them
	// ImageConfig overrides an image's ENTRYPOINT, CMD and WORKDIR.
	ImageConfig *struct {
		EntryPoint       []string
		Command          []string
		WorkingDirectory string
	}
	unsupportedFields
	// HTTPConcurrency is a Nimbus extension: requests one instance of an
	// HTTP function takes at once.
	HTTPConcurrency *int `json:"NimbusHttpConcurrency"`
	// IdleTimeoutSeconds is a Nimbus extension: this function's instance
	// idle timeout (0: the node's).
	IdleTimeoutSeconds *int `json:"NimbusIdleTimeoutSeconds"`
	// Network is a Nimbus extension: the network of the function's
	// instances, egress, none or host ("": the node's default).
	Network *string `json:"NimbusNetwork"`
	// ImagePort is a Nimbus extension: the port an image function of
	// Runtime http serves on (0: 9000).
	ImagePort *int `json:"NimbusImagePort"`
}

// input is the registry's view of the fields; an Environment without
// Variables clears them, a DeadLetterConfig without TargetArn removes it.
func (f *configurationFields) input(name string) registry.FunctionInput {
	in := registry.FunctionInput{
		Name: name, Runtime: f.Runtime, Handler: f.Handler, Role: f.Role,
		Description: f.Description, MemoryMB: f.MemorySize, Timeout: f.Timeout,
		HTTPConcurrency: f.HTTPConcurrency, IdleTimeoutSeconds: f.IdleTimeoutSeconds,
		Network: f.Network, ImagePort: f.ImagePort,
	}
	if c := f.ImageConfig; c != nil {
		in.ImageConfig = &registry.ImageConfigInput{EntryPoint: c.EntryPoint, Command: c.Command, WorkingDirectory: c.WorkingDirectory}
	}
	if f.Environment != nil {
		vars := f.Environment.Variables
		if vars == nil {
			vars = map[string]string{}
		}
		in.Environment = &vars
	}
	if f.EphemeralStorage != nil {
		in.EphemeralStorageMB = f.EphemeralStorage.Size
	}
	if f.TracingConfig != nil {
		in.TracingMode = f.TracingConfig.Mode
	}
	if l := f.LoggingConfig; l != nil {
		in.Logging = &registry.LoggingInput{LogFormat: l.LogFormat, ApplicationLogLevel: l.ApplicationLogLevel,
			SystemLogLevel: l.SystemLogLevel, LogGroup: l.LogGroup}
	}
	if d := f.DeadLetterConfig; d != nil {
		target := ""
		if d.TargetArn != nil {
			target = *d.TargetArn
		}
		in.DeadLetterTarget = &target
	}
	if f.Layers != nil {
		in.Layers = &f.Layers
	}
	return in
}

// checkDeadLetter checks a dead-letter target for this node's region and
// account, and that a function target exists; and that layer ARNs are of
// this node's region and account.
func (s *Server) checkDeadLetter(ctx context.Context, in registry.FunctionInput) error {
	if in.Layers != nil {
		if err := s.checkLayerArns(*in.Layers); err != nil {
			return err
		}
	}
	if in.DeadLetterTarget == nil || *in.DeadLetterTarget == "" {
		return nil
	}
	if _, err := registry.ParseDeadLetter(*in.DeadLetterTarget, s.cfg.Region, s.cfg.Account); err != nil {
		return err
	}
	return s.reg.CheckDestination(ctx, in.Name, *in.DeadLetterTarget)
}

// createFunctionRequest is CreateFunction's body.
type createFunctionRequest struct {
	configurationFields
	FunctionName string
	Code         struct {
		ZipFile         []byte
		S3Bucket        string
		S3Key           string
		S3ObjectVersion string
		ImageUri        string
		SourceKMSKeyArn string
	}
	createOnlyFields
}

func (s *Server) functionsCreate(w http.ResponseWriter, r *http.Request) error {
	var req createFunctionRequest
	if err := decodeStrictLimit(w, r, s.cfg.MaxCodeBody, &req); err != nil {
		return err
	}
	if err := req.unsupported(); err != nil {
		return err
	}
	name, err := registry.ParseName(req.FunctionName)
	if err != nil {
		return err
	}
	if err := allow(r, auth.Manage, name); err != nil {
		return err
	}
	in := req.input(name)
	in.Tags = req.Tags
	if err := s.checkDeadLetter(r.Context(), in); err != nil {
		return err
	}
	var fn *nimbus.Function
	if req.PackageType == nimbus.PackageImage {
		fn, err = s.reg.CreateImage(r.Context(), in, req.Code.ImageUri)
	} else {
		fn, err = s.reg.Create(r.Context(), in, req.Code.ZipFile)
	}
	if err == nil && req.Publish {
		fn, err = s.publishSettled(r.Context(), name)
	}
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusCreated, s.configuration(fn))
}
