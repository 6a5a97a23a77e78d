package runtimeapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/nimbus-serverless/nimbus"
)

// buildGoFn builds testdata/gofn, a function made with aws-lambda-go, and
// returns the path of its bootstrap.
func buildGoFn(t *testing.T) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go tool is needed to build the test function: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "bootstrap")
	cmd := exec.CommandContext(t.Context(), goBin, "build", "-o", bin, "./testdata/gofn")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build testdata/gofn: %v\n%s", err, out)
	}
	return bin
}

// proc is a function process run by a test.
type proc struct {
	done chan struct{} // closed when it has exited
	err  error         // its exit status, once done is closed
	out  bytes.Buffer  // its stdout and stderr, to read once done is closed
}

// startFn runs bin as the runtime of s; it is killed at the end of the test.
func startFn(t *testing.T, bin string, s *Server) *proc {
	t.Helper()
	p := &proc{done: make(chan struct{})}
	cmd := exec.Command(bin)
	cmd.Env = []string{
		"AWS_LAMBDA_RUNTIME_API=" + s.Addr(),
		"AWS_LAMBDA_FUNCTION_NAME=gofn",
		"AWS_LAMBDA_FUNCTION_VERSION=$LATEST",
		"AWS_LAMBDA_FUNCTION_MEMORY_SIZE=256",
		"_HANDLER=bootstrap",
		"PATH=/usr/bin:/bin",
		"TZ=:UTC",
	}
	cmd.Stdout, cmd.Stderr = &p.out, &p.out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			t.Logf("function output:\n%s", p.out.String())
		}
	})
	return p
}

func TestAWSLambdaGo(t *testing.T) {
	bin := buildGoFn(t)
	s := newServer(t)
	p := startFn(t, bin, s)

	select {
	case <-s.Ready():
	case <-p.done:
		t.Fatalf("function exited during init: %v", p.err)
	case <-time.After(10 * time.Second):
		t.Fatal("function never polled /invocation/next")
	}

	deadline := time.Now().Add(30 * time.Second).Truncate(time.Millisecond)
	const arn = "arn:aws:lambda:us-east-1:000000000000:function:gofn"
	res, err := s.Invoke(t.Context(), Invocation{
		RequestID: "0b5b4c1e-echo", FunctionARN: arn, TraceID: "Root=1-5e1b4151-5ac6c58f5b5dbd6a0c6e2a5c",
		Deadline: deadline, Payload: []byte(`{"echo":{"a":[1,2,3]}}`),
	})
	if err != nil || res.Err != nil {
		t.Fatalf("echo Invoke = %v, %v", res.Err, err)
	}
	var got struct {
		Echo         json.RawMessage `json:"echo"`
		RequestID    string          `json:"requestId"`
		FunctionARN  string          `json:"functionArn"`
		FunctionName string          `json:"functionName"`
		MemoryMB     int             `json:"memoryMB"`
		DeadlineMs   int64           `json:"deadlineMs"`
		TraceID      string          `json:"traceId"`
	}
	if err := json.Unmarshal(res.Payload, &got); err != nil {
		t.Fatalf("echo payload %q: %v", res.Payload, err)
	}
	checks := []struct{ name, got, want string }{
		{"echo", string(got.Echo), `{"a":[1,2,3]}`},
		{"request id", got.RequestID, "0b5b4c1e-echo"},
		{"function arn", got.FunctionARN, arn},
		{"function name", got.FunctionName, "gofn"},
		{"memory", strconv.Itoa(got.MemoryMB), "256"},
		{"deadline", strconv.FormatInt(got.DeadlineMs, 10), strconv.FormatInt(deadline.UnixMilli(), 10)},
		{"trace id", got.TraceID, "Root=1-5e1b4151-5ac6c58f5b5dbd6a0c6e2a5c"},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %q, want %q", c.name, c.got, c.want)
		}
	}

	errCases := []struct {
		name    string
		payload string
		want    nimbus.FunctionError
	}{
		{"errors.New", `{"fail":"boom"}`, nimbus.FunctionError{Type: "errorString", Message: "boom"}},
		{"custom error type", `{"failCustom":"bad input"}`, nimbus.FunctionError{Type: "CustomError", Message: "bad input"}},
	}
	for i, tt := range errCases {
		t.Run(tt.name, func(t *testing.T) {
			res, err := s.Invoke(t.Context(), Invocation{
				RequestID: "err-" + strconv.Itoa(i), Deadline: deadline, Payload: []byte(tt.payload),
			})
			if err != nil {
				t.Fatalf("Invoke: %v", err)
			}
			if res.Err == nil || res.Err.Type != tt.want.Type || res.Err.Message != tt.want.Message {
				t.Errorf("function error = %+v, want %s: %s", res.Err, tt.want.Type, tt.want.Message)
			}
		})
	}

	// A response over 6 MiB is refused; aws-lambda-go then exits.
	_, err = s.Invoke(t.Context(), Invocation{
		RequestID: "big", Deadline: deadline, Payload: []byte(`{"big":` + strconv.Itoa(MaxResponse+10) + `}`),
	})
	if !errors.Is(err, nimbus.ErrTooLarge) {
		t.Errorf("oversized Invoke error = %v, want ErrTooLarge", err)
	}
	select {
	case <-p.done:
		var ee *exec.ExitError
		if !errors.As(p.err, &ee) {
			t.Errorf("function exit = %v, want a non-zero exit", p.err)
		}
	case <-time.After(10 * time.Second):
		t.Error("function did not exit after its response was refused")
	}
}
