package registry

import (
	"errors"
	"strings"
	"testing"

	"github.com/nimbus-serverless/nimbus"
)

func TestParseName(t *testing.T) {
	tests := []struct {
		in, want string
		wantErr  error
	}{
		{"hello", "hello", nil},
		{"Hello_World-2", "Hello_World-2", nil},
		{"hello:$LATEST", "hello", nil},
		{"arn:aws:lambda:us-east-1:123456789012:function:hello", "hello", nil},
		{"arn:aws:lambda:eu-west-3:123456789012:function:hello:$LATEST", "hello", nil},
		{"123456789012:function:hello", "hello", nil},
		{"arn:aws:lambda:us-east-1:123456789012:function:hello:7", "", nimbus.ErrNotFound},
		{"", "", nimbus.ErrValidation},
		{"bad name", "", nimbus.ErrValidation},
		{"hello/../x", "", nimbus.ErrValidation},
		{strings.Repeat("a", 65), "", nimbus.ErrValidation},
		{"arn:aws:s3:::bucket", "", nimbus.ErrValidation},
	}
	for _, tt := range tests {
		got, err := ParseName(tt.in)
		if got != tt.want || !errors.Is(err, tt.wantErr) && (err != nil || tt.wantErr != nil) {
			t.Errorf("ParseName(%q) = %q, %v; want %q, %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

func FuzzParseName(f *testing.F) {
	for _, s := range []string{"hello", "arn:aws:lambda:us-east-1:123456789012:function:hello:$LATEST", "123456789012:function:x", "a:b:c", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		name, err := ParseName(s)
		if err != nil {
			if !errors.Is(err, nimbus.ErrValidation) && !errors.Is(err, nimbus.ErrNotFound) {
				t.Fatalf("ParseName(%q): unexpected error kind %v", s, err)
			}
			return
		}
		if ValidateName(name) != nil || !strings.Contains(s, name) {
			t.Fatalf("ParseName(%q) = %q, not a valid name within the input", s, name)
		}
	})
}

func TestApplyValidation(t *testing.T) {
	rts := []string{"python3.11", "provided.al2023"}
	ptr := func(v int) *int { return &v }
	str := func(v string) *string { return &v }
	env := func(m map[string]string) *map[string]string { return &m }
	tests := []struct {
		name string
		in   FunctionInput
		want error
	}{
		{"ok", FunctionInput{Runtime: str("python3.11"), Handler: str("a.b"), MemoryMB: ptr(512), Timeout: ptr(900)}, nil},
		{"provided needs no handler", FunctionInput{Runtime: str("provided.al2023")}, nil},
		{"python needs a handler", FunctionInput{Runtime: str("python3.11")}, nimbus.ErrInvalid},
		{"unknown runtime", FunctionInput{Runtime: str("java8"), Handler: str("a.b")}, nimbus.ErrInvalid},
		{"memory low", FunctionInput{MemoryMB: ptr(127)}, nimbus.ErrValidation},
		{"memory high", FunctionInput{MemoryMB: ptr(10241)}, nimbus.ErrValidation},
		{"timeout low", FunctionInput{Timeout: ptr(0)}, nimbus.ErrValidation},
		{"timeout high", FunctionInput{Timeout: ptr(901)}, nimbus.ErrValidation},
		{"handler with space", FunctionInput{Handler: str("a b")}, nimbus.ErrValidation},
		{"reserved env", FunctionInput{Environment: env(map[string]string{"AWS_REGION": "x"})}, nimbus.ErrInvalid},
		{"bad env key", FunctionInput{Environment: env(map[string]string{"1X": "x"})}, nimbus.ErrInvalid},
		{"env too big", FunctionInput{Environment: env(map[string]string{"BIG": strings.Repeat("x", 5000)})}, nimbus.ErrInvalid},
		{"description too long", FunctionInput{Description: str(strings.Repeat("d", 257))}, nimbus.ErrValidation},
		{"http concurrency", FunctionInput{HTTPConcurrency: ptr(0)}, nimbus.ErrValidation},
		{"idle timeout", FunctionInput{IdleTimeoutSeconds: ptr(600)}, nil},
		{"idle timeout negative", FunctionInput{IdleTimeoutSeconds: ptr(-1)}, nimbus.ErrValidation},
		{"idle timeout too long", FunctionInput{IdleTimeoutSeconds: ptr(86401)}, nimbus.ErrValidation},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fn := &nimbus.Function{Runtime: "provided.al2023"}
			err := tt.in.apply(fn, rts)
			if tt.want == nil && err != nil || tt.want != nil && !errors.Is(err, tt.want) {
				t.Errorf("apply = %v, want %v", err, tt.want)
			}
		})
	}
}

// TestApplyRuntimeSettings: EphemeralStorage, TracingConfig, LoggingConfig
// and DeadLetterConfig are validated as Lambda does and stored.
func TestApplyRuntimeSettings(t *testing.T) {
	ptr := func(v int) *int { return &v }
	str := func(v string) *string { return &v }
	logIn := func(format, app, sys, group *string) *LoggingInput {
		return &LoggingInput{LogFormat: format, ApplicationLogLevel: app, SystemLogLevel: sys, LogGroup: group}
	}
	jsonLogs := &nimbus.LoggingConfig{LogFormat: nimbus.LogFormatJSON}
	tests := []struct {
		name   string
		before nimbus.Function
		in     FunctionInput
		want   error
		msg    string
		check  func(*nimbus.Function) bool
	}{
		{name: "tmp 512", in: FunctionInput{EphemeralStorageMB: ptr(512)}, check: func(f *nimbus.Function) bool { return f.TmpMB() == 512 }},
		{name: "tmp 10240", in: FunctionInput{EphemeralStorageMB: ptr(10240)}, check: func(f *nimbus.Function) bool { return f.EphemeralStorageMB == 10240 }},
		{name: "tmp 511", in: FunctionInput{EphemeralStorageMB: ptr(511)}, want: nimbus.ErrValidation,
			msg: "Value '511' at 'ephemeralStorage.size' failed to satisfy constraint: Member must have value greater than or equal to 512"},
		{name: "tmp 10241", in: FunctionInput{EphemeralStorageMB: ptr(10241)}, want: nimbus.ErrValidation, msg: "less than or equal to 10240"},
		{name: "tracing active", in: FunctionInput{TracingMode: str("Active")}, check: func(f *nimbus.Function) bool { return f.TracingMode == nimbus.TracingActive }},
		{name: "tracing pass-through", before: nimbus.Function{TracingMode: nimbus.TracingActive}, in: FunctionInput{TracingMode: str("PassThrough")},
			check: func(f *nimbus.Function) bool { return f.TracingMode == "" }},
		{name: "tracing bad", in: FunctionInput{TracingMode: str("active")}, want: nimbus.ErrValidation, msg: "'tracingConfig.mode' failed to satisfy constraint: Member must satisfy enum value set: [Active, PassThrough]"},
		{name: "JSON logs", in: FunctionInput{Logging: logIn(str("JSON"), nil, nil, nil)},
			check: func(f *nimbus.Function) bool { return f.JSONLogs() && f.Logging.ApplicationLogLevel == "" }},
		{name: "JSON logs with levels", in: FunctionInput{Logging: logIn(str("JSON"), str("DEBUG"), str("WARN"), str("/aws/lambda/f"))},
			check: func(f *nimbus.Function) bool {
				return *f.Logging == nimbus.LoggingConfig{LogFormat: "JSON", ApplicationLogLevel: "DEBUG", SystemLogLevel: "WARN"}
			}},
		{name: "levels keep JSON", before: nimbus.Function{Logging: jsonLogs}, in: FunctionInput{Logging: logIn(nil, str("ERROR"), nil, nil)},
			check: func(f *nimbus.Function) bool { return f.JSONLogs() && f.Logging.ApplicationLogLevel == "ERROR" }},
		{name: "back to text drops levels", before: nimbus.Function{Logging: &nimbus.LoggingConfig{LogFormat: "JSON", SystemLogLevel: "WARN"}},
			in: FunctionInput{Logging: logIn(str("Text"), nil, nil, nil)}, check: func(f *nimbus.Function) bool { return f.Logging == nil }},
		{name: "levels need JSON", in: FunctionInput{Logging: logIn(nil, str("DEBUG"), nil, nil)}, want: nimbus.ErrInvalid, msg: `LogLevel is not supported when LogFormat is set to "Text"`},
		{name: "levels with text", in: FunctionInput{Logging: logIn(str("Text"), nil, str("INFO"), nil)}, want: nimbus.ErrInvalid, msg: "LogLevel is not supported"},
		{name: "bad format", in: FunctionInput{Logging: logIn(str("json"), nil, nil, nil)}, want: nimbus.ErrValidation, msg: "[JSON, Text]"},
		{name: "bad app level", in: FunctionInput{Logging: logIn(str("JSON"), str("VERBOSE"), nil, nil)}, want: nimbus.ErrValidation,
			msg: "'loggingConfig.applicationLogLevel' failed to satisfy constraint: Member must satisfy enum value set: [TRACE, DEBUG, INFO, WARN, ERROR, FATAL]"},
		{name: "bad system level", in: FunctionInput{Logging: logIn(str("JSON"), nil, str("TRACE"), nil)}, want: nimbus.ErrValidation, msg: "[DEBUG, INFO, WARN]"},
		{name: "other log group", in: FunctionInput{Logging: logIn(nil, nil, nil, str("/my/group"))}, want: nimbus.ErrInvalid, msg: "LogGroup /my/group is not supported"},
		{name: "dead letter function", in: FunctionInput{DeadLetterTarget: str("arn:aws:lambda:us-east-1:000000000000:function:dlq")},
			check: func(f *nimbus.Function) bool {
				return f.DeadLetterTarget == "arn:aws:lambda:us-east-1:000000000000:function:dlq"
			}},
		{name: "dead letter webhook", in: FunctionInput{DeadLetterTarget: str("https://hooks.example/dlq")}, check: func(f *nimbus.Function) bool { return f.DeadLetterTarget != "" }},
		{name: "dead letter nats", in: FunctionInput{DeadLetterTarget: str("nats:orders.dead")}, check: func(f *nimbus.Function) bool { return f.DeadLetterTarget == "nats:orders.dead" }},
		{name: "dead letter removed", before: nimbus.Function{DeadLetterTarget: "nats:x"}, in: FunctionInput{DeadLetterTarget: str("")},
			check: func(f *nimbus.Function) bool { return f.DeadLetterTarget == "" }},
		{name: "dead letter sqs", in: FunctionInput{DeadLetterTarget: str("arn:aws:sqs:us-east-1:000000000000:dlq")}, want: nimbus.ErrInvalid, msg: "is not supported: Nimbus has no SQS"},
		{name: "dead letter sns", in: FunctionInput{DeadLetterTarget: str("arn:aws:sns:us-east-1:000000000000:topic")}, want: nimbus.ErrInvalid, msg: "Nimbus has no SNS"},
		{name: "dead letter self", in: FunctionInput{DeadLetterTarget: str("f")}, want: nimbus.ErrInvalid, msg: "its own dead-letter target"},
		{name: "dead letter garbage", in: FunctionInput{DeadLetterTarget: str("ftp://x")}, want: nimbus.ErrInvalid, msg: "DeadLetterConfig.TargetArn: The destination ftp://x is invalid"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fn := tt.before
			fn.Name, fn.Runtime = "f", "provided.al2023"
			err := tt.in.apply(&fn, []string{"provided.al2023"})
			if tt.want == nil && err != nil || tt.want != nil && (!errors.Is(err, tt.want) || !strings.Contains(err.Error(), tt.msg)) {
				t.Fatalf("apply = %v, want %v containing %q", err, tt.want, tt.msg)
			}
			if tt.check != nil && !tt.check(&fn) {
				t.Errorf("after apply: %+v (logging %+v)", fn, fn.Logging)
			}
		})
	}
}
