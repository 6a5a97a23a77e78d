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
