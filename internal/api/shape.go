package api

import (
	"encoding/base64"
	"encoding/hex"
	"time"

	"github.com/nimbus-serverless/nimbus"
)

// lambdaTime is the time format Lambda uses for LastModified.
const lambdaTime = "2006-01-02T15:04:05.000-0700"

// functionConfiguration is Lambda's FunctionConfiguration shape.
type functionConfiguration struct {
	FunctionName               string            `json:"FunctionName"`
	FunctionArn                string            `json:"FunctionArn"`
	Runtime                    string            `json:"Runtime,omitempty"`
	Role                       string            `json:"Role"`
	Handler                    string            `json:"Handler,omitempty"`
	CodeSize                   int64             `json:"CodeSize"`
	Description                string            `json:"Description"`
	Timeout                    int               `json:"Timeout"`
	MemorySize                 int               `json:"MemorySize"`
	LastModified               string            `json:"LastModified"`
	CodeSha256                 string            `json:"CodeSha256"`
	Version                    string            `json:"Version"`
	Environment                *environment      `json:"Environment,omitempty"`
	TracingConfig              map[string]string `json:"TracingConfig"`
	RevisionId                 string            `json:"RevisionId"`
	State                      string            `json:"State"`
	StateReason                string            `json:"StateReason,omitempty"`
	StateReasonCode            string            `json:"StateReasonCode,omitempty"`
	LastUpdateStatus           string            `json:"LastUpdateStatus"`
	LastUpdateStatusReason     string            `json:"LastUpdateStatusReason,omitempty"`
	LastUpdateStatusReasonCode string            `json:"LastUpdateStatusReasonCode,omitempty"`
	PackageType                string            `json:"PackageType"`
	Architectures              []string          `json:"Architectures"`
	EphemeralStorage           map[string]int    `json:"EphemeralStorage"`
	LoggingConfig              map[string]string `json:"LoggingConfig"`
	// Nimbus's extensions; Lambda clients ignore them.
	NimbusHttpConcurrency    int `json:"NimbusHttpConcurrency,omitempty"`
	NimbusIdleTimeoutSeconds int `json:"NimbusIdleTimeoutSeconds,omitempty"`
}

type environment struct {
	Variables map[string]string `json:"Variables"`
}

// ephemeralMB is the size of an instance's /tmp.
const ephemeralMB = 512

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
		FunctionArn:      s.arn(fn.Name),
		Runtime:          fn.Runtime,
		Role:             fn.Role,
		Handler:          fn.Handler,
		CodeSize:         fn.CodeSize,
		Description:      fn.Description,
		Timeout:          fn.Timeout,
		MemorySize:       fn.MemoryMB,
		LastModified:     fn.LastModified.UTC().Format(lambdaTime),
		CodeSha256:       lambdaSHA(fn.CodeSHA256),
		Version:          "$LATEST",
		TracingConfig:    map[string]string{"Mode": "PassThrough"},
		RevisionId:       fn.RevisionID,
		State:            fn.State,
		StateReason:      fn.StateReason,
		StateReasonCode:  fn.StateReasonCode,
		LastUpdateStatus: fn.LastUpdateStatus,
		PackageType:      "Zip",
		Architectures:    []string{"x86_64"},
		EphemeralStorage: map[string]int{"Size": ephemeralMB},
		LoggingConfig:    map[string]string{"LogFormat": "Text", "LogGroup": "/aws/lambda/" + fn.Name},

		NimbusHttpConcurrency:    fn.HTTPConcurrency,
		NimbusIdleTimeoutSeconds: int(fn.IdleTimeout / time.Second),
	}
	if fn.LastUpdateStatus == nimbus.UpdateFailed {
		c.LastUpdateStatusReason, c.LastUpdateStatusReasonCode = fn.StateReason, fn.StateReasonCode
	}
	if fn.Environment != nil {
		c.Environment = &environment{Variables: fn.Environment}
	}
	return c
}

func (s *Server) arn(name string) string {
	return "arn:aws:lambda:" + s.cfg.Region + ":" + s.cfg.Account + ":function:" + name
}
