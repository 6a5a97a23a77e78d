package api_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"

	"github.com/nimbus-serverless/nimbus/internal/node/nodetest"
)

// settings is the part of a FunctionConfiguration these tests look at.
type settings struct {
	tmp                    int32
	tracing                types.TracingMode
	format                 types.LogFormat
	appLevel               types.ApplicationLogLevel
	sysLevel               types.SystemLogLevel
	group, deadLetter, vpc string
}

func settingsOf(c *types.FunctionConfiguration) settings {
	var s settings
	if c.EphemeralStorage != nil {
		s.tmp = aws.ToInt32(c.EphemeralStorage.Size)
	}
	if c.TracingConfig != nil {
		s.tracing = c.TracingConfig.Mode
	}
	if l := c.LoggingConfig; l != nil {
		s.format, s.appLevel, s.sysLevel, s.group = l.LogFormat, l.ApplicationLogLevel, l.SystemLogLevel, aws.ToString(l.LogGroup)
	}
	if c.DeadLetterConfig != nil {
		s.deadLetter = aws.ToString(c.DeadLetterConfig.TargetArn)
	}
	if c.VpcConfig != nil {
		s.vpc = "set"
	}
	return s
}

// wantSettings checks what CreateFunction or UpdateFunctionConfiguration
// answered, and that GetFunction, GetFunctionConfiguration and
// ListFunctions answer the same.
func wantSettings(t *testing.T, c *lambda.Client, name string, answered settings, want settings) {
	t.Helper()
	if answered != want {
		t.Errorf("%s answered %+v, want %+v", name, answered, want)
	}
	ctx := t.Context()
	got, err := c.GetFunction(ctx, &lambda.GetFunctionInput{FunctionName: aws.String(name)})
	if err != nil {
		t.Fatal(err)
	}
	if s := settingsOf(got.Configuration); s != want {
		t.Errorf("GetFunction %s: %+v, want %+v", name, s, want)
	}
	cfg, err := c.GetFunctionConfiguration(ctx, &lambda.GetFunctionConfigurationInput{FunctionName: aws.String(name)})
	if err != nil {
		t.Fatal(err)
	}
	if s := settingsOf(configOf(cfg)); s != want {
		t.Errorf("GetFunctionConfiguration %s: %+v, want %+v", name, s, want)
	}
	list, err := c.ListFunctions(ctx, &lambda.ListFunctionsInput{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range list.Functions {
		if aws.ToString(list.Functions[i].FunctionName) == name {
			if s := settingsOf(&list.Functions[i]); s != want {
				t.Errorf("ListFunctions %s: %+v, want %+v", name, s, want)
			}
		}
	}
}

// configOf converts an operation's output to a FunctionConfiguration.
func configOf(o *lambda.GetFunctionConfigurationOutput) *types.FunctionConfiguration {
	return &types.FunctionConfiguration{EphemeralStorage: o.EphemeralStorage, TracingConfig: o.TracingConfig,
		LoggingConfig: o.LoggingConfig, DeadLetterConfig: o.DeadLetterConfig, VpcConfig: o.VpcConfig}
}

func createdSettings(o *lambda.CreateFunctionOutput) settings {
	return settingsOf(&types.FunctionConfiguration{EphemeralStorage: o.EphemeralStorage, TracingConfig: o.TracingConfig,
		LoggingConfig: o.LoggingConfig, DeadLetterConfig: o.DeadLetterConfig, VpcConfig: o.VpcConfig})
}

func updatedSettings(o *lambda.UpdateFunctionConfigurationOutput) settings {
	return settingsOf(&types.FunctionConfiguration{EphemeralStorage: o.EphemeralStorage, TracingConfig: o.TracingConfig,
		LoggingConfig: o.LoggingConfig, DeadLetterConfig: o.DeadLetterConfig, VpcConfig: o.VpcConfig})
}

// TestFunctionSettingsRoundTrip: EphemeralStorage, TracingConfig,
// LoggingConfig and DeadLetterConfig are stored and answered in Lambda's
// shapes; an empty VpcConfig is accepted and answered as no VPC.
func TestFunctionSettingsRoundTrip(t *testing.T) {
	n := nodetest.Start(t, nil)
	c := client(n)
	ctx := t.Context()
	zip := pyZip(t)

	plain := createPy(t, c, "plain", zip)
	wantSettings(t, c, "plain", createdSettings(plain), settings{tmp: 512, tracing: "PassThrough", format: "Text", group: "/aws/lambda/plain"})

	created, err := c.CreateFunction(ctx, &lambda.CreateFunctionInput{
		FunctionName: aws.String("set"), Runtime: types.RuntimePython311, Role: aws.String("r"), Handler: aws.String("app.handler"),
		Code:             &types.FunctionCode{ZipFile: zip},
		EphemeralStorage: &types.EphemeralStorage{Size: aws.Int32(2048)},
		TracingConfig:    &types.TracingConfig{Mode: types.TracingModeActive},
		LoggingConfig: &types.LoggingConfig{LogFormat: types.LogFormatJson, ApplicationLogLevel: types.ApplicationLogLevelDebug,
			SystemLogLevel: types.SystemLogLevelWarn, LogGroup: aws.String("/aws/lambda/set")},
		DeadLetterConfig: &types.DeadLetterConfig{TargetArn: aws.String("nats:set.dead")},
		VpcConfig:        &types.VpcConfig{SubnetIds: []string{}, SecurityGroupIds: []string{}},
		Architectures:    []types.Architecture{types.ArchitectureX8664},
		KMSKeyArn:        aws.String(""),
		SnapStart:        &types.SnapStart{ApplyOn: types.SnapStartApplyOnNone},
	})
	if err != nil {
		t.Fatalf("CreateFunction: %v", err)
	}
	wantSettings(t, c, "set", createdSettings(created), settings{tmp: 2048, tracing: "Active", format: "JSON", appLevel: "DEBUG",
		sysLevel: "WARN", group: "/aws/lambda/set", deadLetter: "nats:set.dead"})
	waitActive(t, c, "set")

	upd, err := c.UpdateFunctionConfiguration(ctx, &lambda.UpdateFunctionConfigurationInput{
		FunctionName:     aws.String("set"),
		EphemeralStorage: &types.EphemeralStorage{Size: aws.Int32(10240)},
		TracingConfig:    &types.TracingConfig{Mode: types.TracingModePassThrough},
		LoggingConfig:    &types.LoggingConfig{LogFormat: types.LogFormatText},
		DeadLetterConfig: &types.DeadLetterConfig{TargetArn: aws.String("arn:aws:lambda:us-east-1:000000000000:function:plain")},
		VpcConfig:        &types.VpcConfig{SubnetIds: []string{}, SecurityGroupIds: []string{}, Ipv6AllowedForDualStack: aws.Bool(false)},
	})
	if err != nil {
		t.Fatalf("UpdateFunctionConfiguration: %v", err)
	}
	wantSettings(t, c, "set", updatedSettings(upd), settings{tmp: 10240, tracing: "PassThrough", format: "Text", group: "/aws/lambda/set",
		deadLetter: "arn:aws:lambda:us-east-1:000000000000:function:plain"})

	// JSON without levels answers Lambda's default, INFO; an empty target
	// removes the dead-letter target; other settings are left alone.
	upd, err = c.UpdateFunctionConfiguration(ctx, &lambda.UpdateFunctionConfigurationInput{
		FunctionName:     aws.String("set"),
		LoggingConfig:    &types.LoggingConfig{LogFormat: types.LogFormatJson},
		DeadLetterConfig: &types.DeadLetterConfig{TargetArn: aws.String("")},
	})
	if err != nil {
		t.Fatalf("UpdateFunctionConfiguration: %v", err)
	}
	wantSettings(t, c, "set", updatedSettings(upd), settings{tmp: 10240, tracing: "PassThrough", format: "JSON", appLevel: "INFO",
		sysLevel: "INFO", group: "/aws/lambda/set"})
	upd, err = c.UpdateFunctionConfiguration(ctx, &lambda.UpdateFunctionConfigurationInput{
		FunctionName: aws.String("set"), LoggingConfig: &types.LoggingConfig{ApplicationLogLevel: types.ApplicationLogLevelError},
	})
	if err != nil {
		t.Fatalf("UpdateFunctionConfiguration: %v", err)
	}
	wantSettings(t, c, "set", updatedSettings(upd), settings{tmp: 10240, tracing: "PassThrough", format: "JSON", appLevel: "ERROR",
		sysLevel: "INFO", group: "/aws/lambda/set"})
}

// TestFunctionSettingsRefused: every setting Nimbus does not support, and
// every bad value, is refused with Lambda's error type and a message that
// names it, and changes nothing.
func TestFunctionSettingsRefused(t *testing.T) {
	n := nodetest.Start(t, nil)
	c := client(n)
	ctx := t.Context()
	zip := pyZip(t)
	before := createPy(t, c, "fixed", zip)
	name := aws.String("fixed")

	updates := []struct {
		name     string
		in       lambda.UpdateFunctionConfigurationInput
		typ, msg string
	}{
		{"tmp too small", lambda.UpdateFunctionConfigurationInput{EphemeralStorage: &types.EphemeralStorage{Size: aws.Int32(511)}},
			"ValidationException", "'ephemeralStorage.size' failed to satisfy constraint: Member must have value greater than or equal to 512"},
		{"tmp too large", lambda.UpdateFunctionConfigurationInput{EphemeralStorage: &types.EphemeralStorage{Size: aws.Int32(10241)}},
			"ValidationException", "less than or equal to 10240"},
		{"tracing mode", lambda.UpdateFunctionConfigurationInput{TracingConfig: &types.TracingConfig{Mode: "Sometimes"}},
			"ValidationException", "[Active, PassThrough]"},
		{"log format", lambda.UpdateFunctionConfigurationInput{LoggingConfig: &types.LoggingConfig{LogFormat: "XML"}},
			"ValidationException", "[JSON, Text]"},
		{"application level", lambda.UpdateFunctionConfigurationInput{LoggingConfig: &types.LoggingConfig{LogFormat: types.LogFormatJson, ApplicationLogLevel: "LOUD"}},
			"ValidationException", "[TRACE, DEBUG, INFO, WARN, ERROR, FATAL]"},
		{"system level", lambda.UpdateFunctionConfigurationInput{LoggingConfig: &types.LoggingConfig{LogFormat: types.LogFormatJson, SystemLogLevel: "ERROR"}},
			"ValidationException", "[DEBUG, INFO, WARN]"},
		{"levels with text", lambda.UpdateFunctionConfigurationInput{LoggingConfig: &types.LoggingConfig{LogFormat: types.LogFormatText, ApplicationLogLevel: types.ApplicationLogLevelDebug}},
			"InvalidParameterValueException", `LogLevel is not supported when LogFormat is set to "Text"`},
		{"log group", lambda.UpdateFunctionConfigurationInput{LoggingConfig: &types.LoggingConfig{LogGroup: aws.String("/custom/group")}},
			"InvalidParameterValueException", "LogGroup /custom/group is not supported"},
		{"SQS dead letters", lambda.UpdateFunctionConfigurationInput{DeadLetterConfig: &types.DeadLetterConfig{TargetArn: aws.String("arn:aws:sqs:us-east-1:000000000000:dlq")}},
			"InvalidParameterValueException", "is not supported: Nimbus has no SQS"},
		{"SNS dead letters", lambda.UpdateFunctionConfigurationInput{DeadLetterConfig: &types.DeadLetterConfig{TargetArn: aws.String("arn:aws:sns:us-east-1:000000000000:topic")}},
			"InvalidParameterValueException", "is not supported: Nimbus has no SNS"},
		{"dead letters elsewhere", lambda.UpdateFunctionConfigurationInput{DeadLetterConfig: &types.DeadLetterConfig{TargetArn: aws.String("arn:aws:lambda:eu-west-1:000000000000:function:plain")}},
			"InvalidParameterValueException", "this Nimbus is region us-east-1"},
		{"dead letters to nothing", lambda.UpdateFunctionConfigurationInput{DeadLetterConfig: &types.DeadLetterConfig{TargetArn: aws.String("ghost")}},
			"InvalidParameterValueException", "function ghost does not exist"},
		{"dead letters to itself", lambda.UpdateFunctionConfigurationInput{DeadLetterConfig: &types.DeadLetterConfig{TargetArn: aws.String("fixed")}},
			"InvalidParameterValueException", "itself"},
		{"VPC subnets", lambda.UpdateFunctionConfigurationInput{VpcConfig: &types.VpcConfig{SubnetIds: []string{"subnet-1"}, SecurityGroupIds: []string{"sg-1"}}},
			"InvalidParameterValueException", "VpcConfig is not supported"},
		{"VPC dual stack", lambda.UpdateFunctionConfigurationInput{VpcConfig: &types.VpcConfig{Ipv6AllowedForDualStack: aws.Bool(true)}},
			"InvalidParameterValueException", "VpcConfig is not supported"},
		{"layers", lambda.UpdateFunctionConfigurationInput{Layers: []string{"arn:aws:lambda:us-east-1:000000000000:layer:x:1"}},
			"InvalidParameterValueException", "Layer version arn:aws:lambda:us-east-1:000000000000:layer:x:1 does not exist."},
		{"KMS", lambda.UpdateFunctionConfigurationInput{KMSKeyArn: aws.String("arn:aws:kms:us-east-1:000000000000:key/k")},
			"InvalidParameterValueException", "KMSKeyArn is not supported"},
		{"file systems", lambda.UpdateFunctionConfigurationInput{FileSystemConfigs: []types.FileSystemConfig{{Arn: aws.String("arn:aws:elasticfilesystem:us-east-1:000000000000:access-point/fsap-1"), LocalMountPath: aws.String("/mnt/efs")}}},
			"InvalidParameterValueException", "FileSystemConfigs are not supported"},
		{"image config", lambda.UpdateFunctionConfigurationInput{ImageConfig: &types.ImageConfig{Command: []string{"app.handler"}}},
			"InvalidParameterValueException", "ImageConfig is only for functions of PackageType Image"},
		{"SnapStart", lambda.UpdateFunctionConfigurationInput{SnapStart: &types.SnapStart{ApplyOn: types.SnapStartApplyOnPublishedVersions}},
			"InvalidParameterValueException", "SnapStart ApplyOn PublishedVersions is not supported"},
	}
	for _, tt := range updates {
		t.Run("update "+tt.name, func(t *testing.T) {
			in := tt.in
			in.FunctionName = name
			_, err := c.UpdateFunctionConfiguration(ctx, &in)
			wantAPIError(t, err, tt.typ, tt.msg)
		})
	}

	create := func(mod func(*lambda.CreateFunctionInput)) error {
		in := &lambda.CreateFunctionInput{FunctionName: aws.String("never"), Runtime: types.RuntimePython311, Role: aws.String("r"),
			Handler: aws.String("app.handler"), Code: &types.FunctionCode{ZipFile: zip}}
		mod(in)
		_, err := c.CreateFunction(ctx, in)
		return err
	}
	creates := []struct {
		name     string
		mod      func(*lambda.CreateFunctionInput)
		typ, msg string
	}{
		{"architecture", func(in *lambda.CreateFunctionInput) { in.Architectures = []types.Architecture{types.ArchitectureArm64} },
			"InvalidParameterValueException", "Architecture arm64 is not supported on this node: it runs x86_64"},
		{"code signing", func(in *lambda.CreateFunctionInput) {
			in.CodeSigningConfigArn = aws.String("arn:aws:lambda:us-east-1:000000000000:code-signing-config:csc-1")
		},
			"InvalidParameterValueException", "CodeSigningConfigArn is not supported"},
		{"publishTo", func(in *lambda.CreateFunctionInput) {
			in.PublishTo = types.FunctionVersionLatestPublishedLatestPublished
		}, "InvalidParameterValueException", "PublishTo is not supported"},
		{"reserved tag", func(in *lambda.CreateFunctionInput) { in.Tags = map[string]string{"aws:team": "a"} }, "InvalidParameterValueException", "keys starting with aws: are reserved"},
		{"image package with a zip", func(in *lambda.CreateFunctionInput) { in.PackageType = types.PackageTypeImage }, "InvalidParameterValueException", "Code.ZipFile is only for PackageType Zip"},
		{"tmp", func(in *lambda.CreateFunctionInput) {
			in.EphemeralStorage = &types.EphemeralStorage{Size: aws.Int32(20000)}
		},
			"ValidationException", "ephemeralStorage.size"},
		{"VPC", func(in *lambda.CreateFunctionInput) { in.VpcConfig = &types.VpcConfig{SubnetIds: []string{"subnet-1"}} },
			"InvalidParameterValueException", "VpcConfig is not supported"},
		{"SQS dead letters", func(in *lambda.CreateFunctionInput) {
			in.DeadLetterConfig = &types.DeadLetterConfig{TargetArn: aws.String("arn:aws:sqs:us-east-1:000000000000:q")}
		}, "InvalidParameterValueException", "Nimbus has no SQS"},
	}
	for _, tt := range creates {
		t.Run("create "+tt.name, func(t *testing.T) {
			wantAPIError(t, create(tt.mod), tt.typ, tt.msg)
		})
	}

	codeUpdates := []struct {
		name string
		in   lambda.UpdateFunctionCodeInput
		msg  string
	}{
		{"dry run", lambda.UpdateFunctionCodeInput{ZipFile: zip, DryRun: true}, "DryRun is not supported"},
		{"publishTo", lambda.UpdateFunctionCodeInput{ZipFile: zip, PublishTo: types.FunctionVersionLatestPublishedLatestPublished}, "PublishTo is not supported"},
		{"architecture", lambda.UpdateFunctionCodeInput{ZipFile: zip, Architectures: []types.Architecture{types.ArchitectureArm64}}, "Architecture arm64"},
	}
	for _, tt := range codeUpdates {
		t.Run("code "+tt.name, func(t *testing.T) {
			in := tt.in
			in.FunctionName = name
			_, err := c.UpdateFunctionCode(ctx, &in)
			wantAPIError(t, err, "InvalidParameterValueException", tt.msg)
		})
	}

	// Fields Lambda does not have are refused, not dropped.
	base := nodetest.Endpoint(n) + "/2015-03-31/functions"
	for _, tt := range []struct{ method, path, body string }{
		{"PUT", "/fixed/configuration", `{"MemorySize":256,"EphemeralStorag":{"Size":1024}}`},
		{"PUT", "/fixed/code", `{"ZipFile":"UEsFBgAAAAAAAAAAAAAAAAAAAAAAAA==","Compress":true}`},
		{"POST", "", `{"FunctionName":"never","Runtime":"python3.11","Handler":"a.b","Code":{"ZipFile":"UEsFBgAAAAAAAAAAAAAAAAAAAAAAAA==","Bucket":"b"}}`},
	} {
		status, typ, msg := rawCall(t, tt.method, base+tt.path, tt.body)
		if status != http.StatusBadRequest || typ != "InvalidRequestContentException" || !strings.Contains(msg, "unknown field") {
			t.Errorf("%s %s %s: %d %s %q, want 400 InvalidRequestContentException naming the unknown field", tt.method, tt.path, tt.body, status, typ, msg)
		}
	}

	after, err := c.GetFunctionConfiguration(ctx, &lambda.GetFunctionConfigurationInput{FunctionName: name})
	if err != nil {
		t.Fatal(err)
	}
	if aws.ToInt32(after.MemorySize) != 128 || aws.ToString(after.CodeSha256) != aws.ToString(before.CodeSha256) ||
		settingsOf(configOf(after)) != (settings{tmp: 512, tracing: "PassThrough", format: "Text", group: "/aws/lambda/fixed"}) {
		t.Errorf("refused requests changed the function: %+v", after)
	}
	if _, err := c.GetFunction(ctx, &lambda.GetFunctionInput{FunctionName: aws.String("never")}); err == nil {
		t.Error("a refused CreateFunction created the function")
	}
}
