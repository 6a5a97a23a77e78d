package api

import (
	"net/http"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/registry"
)

// configurationFields are the fields CreateFunction and
// UpdateFunctionConfiguration share.
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
	Layers []string
	// HTTPConcurrency is a Nimbus extension: requests one instance of an
	// HTTP function takes at once.
	HTTPConcurrency *int `json:"NimbusHttpConcurrency"`
	// IdleTimeoutSeconds is a Nimbus extension: this function's instance
	// idle timeout (0: the node's).
	IdleTimeoutSeconds *int `json:"NimbusIdleTimeoutSeconds"`
}

// input is the registry's view of the fields; an Environment without
// Variables clears them.
func (f *configurationFields) input(name string) registry.FunctionInput {
	in := registry.FunctionInput{
		Name: name, Runtime: f.Runtime, Handler: f.Handler, Role: f.Role,
		Description: f.Description, MemoryMB: f.MemorySize, Timeout: f.Timeout,
		HTTPConcurrency: f.HTTPConcurrency, IdleTimeoutSeconds: f.IdleTimeoutSeconds,
	}
	if f.Environment != nil {
		vars := f.Environment.Variables
		if vars == nil {
			vars = map[string]string{}
		}
		in.Environment = &vars
	}
	return in
}

// createFunctionRequest is CreateFunction's body; fields Nimbus does not
// support are decoded only to be refused clearly.
type createFunctionRequest struct {
	configurationFields
	FunctionName string
	PackageType  string
	Code         struct {
		ZipFile  []byte
		S3Bucket string
		S3Key    string
		ImageUri string
	}
	Architectures []string
}

func (s *Server) functionsCreate(w http.ResponseWriter, r *http.Request) error {
	var req createFunctionRequest
	if err := decode(w, r, s.cfg.MaxCodeBody, &req); err != nil {
		return err
	}
	if err := checkUnsupported(req.PackageType, req.Code.S3Bucket, req.Code.ImageUri, req.Layers, req.Architectures); err != nil {
		return err
	}
	name, err := registry.ParseName(req.FunctionName)
	if err != nil {
		return err
	}
	fn, err := s.reg.Create(r.Context(), req.input(name), req.Code.ZipFile)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusCreated, s.configuration(fn))
}

// checkUnsupported refuses features Nimbus does not have yet, by name.
func checkUnsupported(packageType, s3Bucket, imageURI string, layers, archs []string) error {
	switch {
	case packageType != "" && packageType != "Zip":
		return nimbus.Invalidf("PackageType %s is not supported yet: Nimbus runs Zip packages", packageType)
	case s3Bucket != "":
		return nimbus.Invalidf("Code.S3Bucket is not supported: upload the package as Code.ZipFile")
	case imageURI != "":
		return nimbus.Invalidf("Code.ImageUri is not supported yet: Nimbus runs Zip packages")
	case len(layers) > 0:
		return nimbus.Invalidf("Layers are not supported yet: include dependencies in the package")
	}
	for _, a := range archs {
		if a != "x86_64" {
			return nimbus.Invalidf("Architecture %s is not supported on this node: only x86_64", a)
		}
	}
	return nil
}
