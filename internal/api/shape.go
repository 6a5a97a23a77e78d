package api

import (
	"cmp"
	"encoding/base64"
	"encoding/hex"
	"time"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/registry"
)

// lambdaTime is the time format Lambda uses for LastModified.
const lambdaTime = "2006-01-02T15:04:05.000-0700"

// functionConfiguration is Lambda's FunctionConfiguration shape.
type functionConfiguration struct {
	FunctionName               string               `json:"FunctionName"`
	FunctionArn                string               `json:"FunctionArn"`
	Runtime                    string               `json:"Runtime,omitempty"`
	Role                       string               `json:"Role"`
	Handler                    string               `json:"Handler,omitempty"`
	CodeSize                   int64                `json:"CodeSize"`
	Description                string               `json:"Description"`
	Timeout                    int                  `json:"Timeout"`
	MemorySize                 int                  `json:"MemorySize"`
	LastModified               string               `json:"LastModified"`
	CodeSha256                 string               `json:"CodeSha256"`
	Version                    string               `json:"Version"`
	Environment                *environment         `json:"Environment,omitempty"`
	TracingConfig              tracingConfig        `json:"TracingConfig"`
	RevisionId                 string               `json:"RevisionId"`
	State                      string               `json:"State"`
	StateReason                string               `json:"StateReason,omitempty"`
	StateReasonCode            string               `json:"StateReasonCode,omitempty"`
	LastUpdateStatus           string               `json:"LastUpdateStatus"`
	LastUpdateStatusReason     string               `json:"LastUpdateStatusReason,omitempty"`
	LastUpdateStatusReasonCode string               `json:"LastUpdateStatusReasonCode,omitempty"`
	PackageType                string               `json:"PackageType"`
	Architectures              []string             `json:"Architectures"`
	EphemeralStorage           ephemeralStorage     `json:"EphemeralStorage"`
	LoggingConfig              loggingConfig        `json:"LoggingConfig"`
	DeadLetterConfig           *deadLetterConfig    `json:"DeadLetterConfig,omitempty"`
	Layers                     []functionLayer      `json:"Layers,omitempty"`
	ImageConfigResponse        *imageConfigResponse `json:"ImageConfigResponse,omitempty"`
	// Nimbus's extensions; Lambda clients ignore them.
	NimbusHttpConcurrency    int `json:"NimbusHttpConcurrency,omitempty"`
	NimbusIdleTimeoutSeconds int `json:"NimbusIdleTimeoutSeconds,omitempty"`
	// NimbusNetwork is the function's own network, if it chose one.
	NimbusNetwork string `json:"NimbusNetwork,omitempty"`
	// NimbusImagePort is the port of an image function of Runtime http.
	NimbusImagePort int `json:"NimbusImagePort,omitempty"`
}

// imageConfigResponse is Lambda's ImageConfigResponse.
type imageConfigResponse struct {
	ImageConfig imageConfig `json:"ImageConfig"`
}

// imageConfig is Lambda's ImageConfig shape.
type imageConfig struct {
	EntryPoint       []string `json:"EntryPoint,omitempty"`
	Command          []string `json:"Command,omitempty"`
	WorkingDirectory string   `json:"WorkingDirectory,omitempty"`
}

type environment struct {
	Variables map[string]string `json:"Variables"`
}

// Lambda's TracingConfigResponse, EphemeralStorage, LoggingConfig and
// DeadLetterConfig shapes.
type (
	tracingConfig struct {
		Mode string `json:"Mode"`
	}
	ephemeralStorage struct {
		Size int `json:"Size"`
	}
	loggingConfig struct {
		LogFormat           string `json:"LogFormat"`
		ApplicationLogLevel string `json:"ApplicationLogLevel,omitempty"`
		SystemLogLevel      string `json:"SystemLogLevel,omitempty"`
		LogGroup            string `json:"LogGroup"`
	}
	deadLetterConfig struct {
		TargetArn string `json:"TargetArn"`
	}
)

// logging is fn's LoggingConfig as Lambda shows it: Text, or JSON with
// both levels (INFO when not set).
func logging(fn *nimbus.Function) loggingConfig {
	c := loggingConfig{LogFormat: nimbus.LogFormatText, LogGroup: registry.DefaultLogGroup(fn.Name)}
	if fn.JSONLogs() {
		c.LogFormat = nimbus.LogFormatJSON
		c.ApplicationLogLevel = cmp.Or(fn.Logging.ApplicationLogLevel, "INFO")
		c.SystemLogLevel = cmp.Or(fn.Logging.SystemLogLevel, "INFO")
	}
	return c
}

// lambdaSHA converts a hex digest to Lambda's CodeSha256 (base64 of the sum).
func lambdaSHA(hexDigest string) string {
	b, err := hex.DecodeString(hexDigest)
	if err != nil {
		return ""
	}
	return base64.StdEncoding.EncodeToString(b)
}

func (s *Server) configuration(fn *nimbus.Function) functionConfiguration {
	c := functionConfiguration{
		FunctionName:     fn.Name,
		FunctionArn:      s.qualifiedArn(fn),
		Runtime:          fn.Runtime,
		Role:             fn.Role,
		Handler:          fn.Handler,
		CodeSize:         fn.CodeSize,
		Description:      fn.Description,
		Timeout:          fn.Timeout,
		MemorySize:       fn.MemoryMB,
		LastModified:     fn.LastModified.UTC().Format(lambdaTime),
		CodeSha256:       lambdaSHA(fn.CodeSHA256),
		Version:          fn.Qualifier(),
		TracingConfig:    tracingConfig{Mode: cmp.Or(fn.TracingMode, nimbus.TracingPassThrough)},
		RevisionId:       fn.RevisionID,
		State:            fn.State,
		StateReason:      fn.StateReason,
		StateReasonCode:  fn.StateReasonCode,
		LastUpdateStatus: fn.LastUpdateStatus,
		PackageType:      "Zip",
		Architectures:    []string{hostArchitecture()},
		EphemeralStorage: ephemeralStorage{Size: fn.TmpMB()},
		LoggingConfig:    logging(fn),

		NimbusHttpConcurrency:    fn.HTTPConcurrency,
		NimbusIdleTimeoutSeconds: int(fn.IdleTimeout / time.Second),
		NimbusNetwork:            fn.NimbusNetwork,
	}
	if fn.LastUpdateStatus == nimbus.UpdateFailed {
		c.LastUpdateStatusReason, c.LastUpdateStatusReasonCode = fn.StateReason, fn.StateReasonCode
	}
	if fn.Environment != nil {
		c.Environment = &environment{Variables: fn.Environment}
	}
	c.Layers = s.layersOf(fn)
	if fn.IsImage() && fn.Image != nil {
		// Lambda shows an image's digest in hex, and its ImageConfig.
		c.PackageType, c.CodeSha256 = nimbus.PackageImage, fn.CodeSHA256
		c.NimbusImagePort = fn.Image.Port
		c.ImageConfigResponse = &imageConfigResponse{ImageConfig: imageConfig{
			EntryPoint: fn.Image.EntryPoint, Command: fn.Image.Command, WorkingDirectory: fn.Image.WorkingDirectory}}
	}
	if fn.DeadLetterTarget != "" {
		c.DeadLetterConfig = &deadLetterConfig{TargetArn: fn.DeadLetterTarget}
	}
	return c
}

// qualifiedArn is fn's ARN as Lambda shows it in a configuration: with
// the version's number for a version, bare for $LATEST.
func (s *Server) qualifiedArn(fn *nimbus.Function) string {
	return s.arnQualified(fn.Name, fn.Version)
}

// arnQualified is function name's ARN qualified by a version or alias q
// (bare when q is "").
func (s *Server) arnQualified(name, q string) string {
	if q != "" {
		return s.arn(name) + ":" + q
	}
	return s.arn(name)
}

func (s *Server) arn(name string) string {
	return "arn:aws:lambda:" + s.cfg.Region + ":" + s.cfg.Account + ":function:" + name
}
