package api

import (
	"bytes"
	"encoding/json"
	"runtime"

	"github.com/nimbus-serverless/nimbus"
)

// unsupportedFields are the fields of CreateFunction and
// UpdateFunctionConfiguration that Nimbus does not have: accepted only when
// empty (what clients send to clear them), refused by name otherwise.
type unsupportedFields struct {
	VpcConfig *struct {
		SubnetIds               []string
		SecurityGroupIds        []string
		Ipv6AllowedForDualStack *bool
	}
	KMSKeyArn              *string
	FileSystemConfigs      []json.RawMessage
	SnapStart              *struct{ ApplyOn *string }
	CapacityProviderConfig json.RawMessage
	DurableConfig          json.RawMessage
	TenancyConfig          json.RawMessage
}

// createOnlyFields are the fields only CreateFunction has.
type createOnlyFields struct {
	PackageType          string
	Architectures        []string
	CodeSigningConfigArn string
	Publish              bool
	PublishTo            string
	Tags                 map[string]string // kept (tags_routes.go)
}

// check refuses the unsupported fields that are set.
func (f *unsupportedFields) check() error {
	if v := f.VpcConfig; v != nil && (len(v.SubnetIds) > 0 || len(v.SecurityGroupIds) > 0 || v.Ipv6AllowedForDualStack != nil && *v.Ipv6AllowedForDualStack) {
		return nimbus.Invalidf("VpcConfig is not supported: Nimbus runs functions on its node's own network. Leave VpcConfig out, or send it empty to clear it")
	}
	switch {
	case f.KMSKeyArn != nil && *f.KMSKeyArn != "":
		return nimbus.Invalidf("KMSKeyArn is not supported: Nimbus has no AWS KMS; leave KMSKeyArn out")
	case len(f.FileSystemConfigs) > 0:
		return nimbus.Invalidf("FileSystemConfigs are not supported: Nimbus cannot mount EFS file systems; an instance has its own /tmp (EphemeralStorage)")
	case f.SnapStart != nil && f.SnapStart.ApplyOn != nil && *f.SnapStart.ApplyOn != "None":
		return nimbus.Invalidf("SnapStart ApplyOn %s is not supported: Nimbus publishes no versions; use None", *f.SnapStart.ApplyOn)
	case !emptyJSON(f.CapacityProviderConfig):
		return nimbus.Invalidf("CapacityProviderConfig is not supported: Nimbus runs functions on its own nodes")
	case !emptyJSON(f.DurableConfig):
		return nimbus.Invalidf("DurableConfig is not supported: Nimbus has no durable functions")
	case !emptyJSON(f.TenancyConfig):
		return nimbus.Invalidf("TenancyConfig is not supported yet")
	}
	return nil
}

// check refuses the create-only fields that ask for what Nimbus lacks.
func (f *createOnlyFields) check() error {
	switch {
	case f.PackageType != "" && f.PackageType != nimbus.PackageZip && f.PackageType != nimbus.PackageImage:
		return nimbus.Errorf(nimbus.ErrValidation, "1 validation error detected: Value '%s' at 'packageType' failed to satisfy constraint: Member must satisfy enum value set: [Zip, Image]", f.PackageType)
	case f.CodeSigningConfigArn != "":
		return nimbus.Invalidf("CodeSigningConfigArn is not supported: Nimbus does not verify code signatures")
	}
	if err := checkPublish(f.Publish, f.PublishTo); err != nil {
		return err
	}
	return checkArchitectures(f.Architectures)
}

// unsupported refuses what CreateFunction asks for and Nimbus lacks.
func (req *createFunctionRequest) unsupported() error {
	c := req.Code
	switch {
	case c.S3Bucket != "" || c.S3Key != "" || c.S3ObjectVersion != "":
		return nimbus.Invalidf("Code.S3Bucket is not supported: upload the package as Code.ZipFile")
	case c.ImageUri != "" && req.PackageType != nimbus.PackageImage:
		return nimbus.Invalidf("Code.ImageUri is only for PackageType Image")
	case req.PackageType == nimbus.PackageImage && len(c.ZipFile) > 0:
		return nimbus.Invalidf("Code.ZipFile is only for PackageType Zip: give an image function Code.ImageUri")
	case c.SourceKMSKeyArn != "":
		return nimbus.Invalidf("Code.SourceKMSKeyArn is not supported: Nimbus has no AWS KMS")
	}
	if err := req.createOnlyFields.check(); err != nil {
		return err
	}
	return req.unsupportedFields.check()
}

// checkPublish refuses PublishTo (SnapStart's LATEST_PUBLISHED): Publish
// itself is taken.
func checkPublish(_ bool, publishTo string) error {
	if publishTo != "" {
		return nimbus.Invalidf("PublishTo is not supported: Nimbus has no SnapStart; use Publish")
	}
	return nil
}

// hostArchitecture is this node's architecture as Lambda names it.
func hostArchitecture() string {
	switch runtime.GOARCH {
	case "amd64":
		return "x86_64"
	case "arm64":
		return "arm64"
	}
	return runtime.GOARCH
}

// checkArchitectures accepts only this node's architecture.
func checkArchitectures(archs []string) error {
	if len(archs) > 1 {
		return nimbus.Errorf(nimbus.ErrValidation, "1 validation error detected: Value '%v' at 'architectures' failed to satisfy constraint: Member must have length less than or equal to 1", archs)
	}
	for _, a := range archs {
		if a != hostArchitecture() {
			return nimbus.Invalidf("Architecture %s is not supported on this node: it runs %s", a, hostArchitecture())
		}
	}
	return nil
}

// emptyJSON reports whether raw is absent, null or an object whose members
// are all null, empty strings, empty arrays or empty objects.
func emptyJSON(raw json.RawMessage) bool {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return true
	}
	var m map[string]json.RawMessage
	if json.Unmarshal(raw, &m) != nil {
		return false
	}
	for _, v := range m {
		switch string(bytes.TrimSpace(v)) {
		case "null", `""`, "[]", "{}":
		default:
			return false
		}
	}
	return true
}
