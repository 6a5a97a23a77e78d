package main

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/url"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
)

// TestLogsSurviveSIGKILL: the log lines of invocations that ended more
// than the flush interval (200 ms) before a SIGKILL are all read back, by
// request, after a restart on the same data directory.
func TestLogsSurviveSIGKILL(t *testing.T) {
	dir := dataDir(t)
	s := startServer(t, dir)
	c := s.client()
	create(t, c, "kept", "def handler(e, c):\n    print('line of', c.aws_request_id)\n    return 'ok'\n")
	endLine := regexp.MustCompile(`END RequestId: (\S+)`)
	var ids []string
	for range 5 {
		var out *lambda.InvokeOutput
		var err error
		for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			out, err = c.Invoke(t.Context(), &lambda.InvokeInput{FunctionName: aws.String("kept"), LogType: types.LogTypeTail})
			var pending *types.ResourceConflictException
			if !errors.As(err, &pending) || time.Now().After(deadline) {
				break // not a function still being prepared
			}
		}
		if err != nil {
			t.Fatal(err)
		}
		tail, _ := base64.StdEncoding.DecodeString(aws.ToString(out.LogResult))
		m := endLine.FindSubmatch(tail)
		if m == nil {
			t.Fatalf("no END line in the tail %q", tail)
		}
		ids = append(ids, string(m[1]))
	}
	time.Sleep(time.Second) // well over the flush interval
	if err := s.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-s.done
	s.done <- nil

	s2 := startServer(t, dir)
	for _, id := range ids {
		a := signedDo(t, s2, s2.creds, "GET", "/nimbus/v1/functions/kept/logs?"+url.Values{"request_id": {id}}.Encode(), "")
		var lines []string
		for l := range strings.SplitSeq(strings.TrimSpace(a.Body), "\n") {
			var r struct{ Line string }
			if err := json.Unmarshal([]byte(l), &r); err != nil {
				t.Fatalf("logs of %s: %d %q", id, a.StatusCode, a.Body)
			}
			lines = append(lines, r.Line)
		}
		want := []string{"START RequestId: " + id, "line of " + id, "END RequestId: " + id, "REPORT RequestId: " + id}
		if len(lines) != len(want) {
			t.Fatalf("after SIGKILL and restart, request %s has %q, want %q...", id, lines, want)
		}
		for i := range want {
			if !strings.HasPrefix(lines[i], want[i]) {
				t.Errorf("request %s line %d: %q, want %q...", id, i, lines[i], want[i])
			}
		}
	}
}

// TestServeLogFlagErrors: the log flags' bad values are one line naming
// the flag.
func TestServeLogFlagErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--invocation-retention", "30m"}, "nimbus: --invocation-retention must be at least 1h, not 30m0s\n"},
		{[]string{"--log-max-bytes", "1000"}, "nimbus: --log-max-bytes must be at least 1048576 (1 MiB), not 1000\n"},
		{[]string{"--log-rate", "-1"}, "nimbus: --log-rate must be a number of MiB per second from 0 (no limit) up, not -1\n"},
		{[]string{"--log-rate", "fast"}, `nimbus: invalid --log-rate "fast": want a number` + "\n"},
	} {
		args := append([]string{"serve", "--addr", "127.0.0.1:0", "--data-dir", t.TempDir()}, tc.args...)
		out, err := exec.Command(nimbusBin, args...).CombinedOutput()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 1 || string(out) != tc.want {
			t.Errorf("nimbus %v: %q (%v), want %q and exit status 1", tc.args, out, err, tc.want)
		}
	}
}
