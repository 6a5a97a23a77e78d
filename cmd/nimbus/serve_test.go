package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"

	"github.com/nimbus-serverless/nimbus/internal/node/nodetest"
	"github.com/nimbus-serverless/nimbus/internal/sdkhttp"
	"github.com/nimbus-serverless/nimbus/internal/seal"
	"github.com/nimbus-serverless/nimbus/internal/testenv"
)

// nimbusBin is the nimbus binary built for these tests, with version
// testVersion.
var nimbusBin string

const testVersion = "1.2.3-test"

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "nimbus-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	nimbusBin = filepath.Join(dir, "nimbus")
	if err := testenv.BuildNimbus(nimbusBin, "-ldflags", "-X github.com/nimbus-serverless/nimbus/internal/version.Version="+testVersion); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	races := testenv.ChildRaces(dir)
	code := m.Run()
	stopBenchSetups()
	if r := races(); r != "" {
		fmt.Fprintf(os.Stderr, "FAIL: the nimbus binary these tests started reported data races:\n%s", r)
		code = 1
	}
	os.RemoveAll(dir)
	os.Exit(code)
}

// dataDir is a fresh data directory that unprivileged function users can
// traverse (t.TempDir's are private).
func dataDir(t *testing.T) string {
	t.Helper()
	d := t.TempDir()
	for _, p := range []string{d, filepath.Dir(d)} {
		if err := os.Chmod(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return d
}

func freeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// server is a `nimbus serve` child process.
type server struct {
	cmd   *exec.Cmd
	addr  string
	dir   string          // its data directory
	creds aws.Credentials // the admin key it wrote to dir/credentials
	logs  *testenv.Buffer // written while the process runs
	done  chan error
}

func startServer(t *testing.T, dataDir string, extra ...string) *server {
	t.Helper()
	addr := freeAddr(t)
	args := append([]string{"serve", "--addr", addr, "--data-dir", dataDir, "--shutdown-grace", "10s"}, extra...)
	cmd := exec.Command(nimbusBin, args...)
	logs := &testenv.Buffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &server{cmd: cmd, addr: addr, dir: dataDir, logs: logs, done: make(chan error, 1)}
	go func() { s.done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-s.done
		if t.Failed() {
			t.Logf("server log:\n%s", logs)
		}
	})
	// A start on a loaded machine (the whole suite under -race, the
	// previous node's leftover links and cgroups to clean) can take many
	// seconds; a quiet one takes well under one.
	deadline := time.Now().Add(90 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get("http://" + addr + "/healthz")
		if err == nil {
			resp.Body.Close()
			// A node that joins a cluster whose keys exist writes no
			// credentials file: its test lends it the first node's key.
			if !slices.Contains(extra, "none") && !slices.Contains(extra, "--nats-url") {
				s.creds = loadCreds(t, addr, dataDir)
			}
			return s
		}
		select {
		case err := <-s.done:
			s.done <- err
			t.Fatalf("nimbus serve exited: %v\n%s", err, logs)
		case <-time.After(20 * time.Millisecond):
		}
	}
	t.Fatalf("nimbus serve did not answer on %s\n%s", addr, logs)
	return nil
}

func (s *server) client() *lambda.Client {
	return lambda.New(lambda.Options{
		HTTPClient:   sdkhttp.Client(),
		BaseEndpoint: aws.String("http://" + s.addr),
		Region:       "us-east-1",
		Credentials:  credentials.NewStaticCredentialsProvider(s.creds.AccessKeyID, s.creds.SecretAccessKey, ""),
	})
}

func pyPackage(t *testing.T, src string) []byte {
	t.Helper()
	return nodetest.Zip(t, map[string]string{"app.py": src})
}

func create(t *testing.T, c *lambda.Client, name, src string) {
	t.Helper()
	if _, err := c.CreateFunction(t.Context(), createInput(t, name, src, nil)); err != nil {
		t.Fatalf("CreateFunction: %v", err)
	}
}

// createInput is a Python function's CreateFunction request.
func createInput(t testing.TB, name, src string, env map[string]string) *lambda.CreateFunctionInput {
	in := &lambda.CreateFunctionInput{
		FunctionName: aws.String(name), Runtime: types.RuntimePython311, Role: aws.String("r"),
		Handler: aws.String("app.handler"), Timeout: aws.Int32(30),
		Code: &types.FunctionCode{ZipFile: nodetest.Zip(t, map[string]string{"app.py": src})},
	}
	if env != nil {
		in.Environment = &types.Environment{Variables: env}
	}
	return in
}

func TestServeStateSurvivesSIGKILL(t *testing.T) {
	dir := dataDir(t)
	s := startServer(t, dir)
	c := s.client()
	for i := range 3 {
		create(t, c, fmt.Sprintf("keep-%d", i), "def handler(e, c):\n    return e\n")
	}
	if err := s.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-s.done
	s.done <- nil

	s2 := startServer(t, dir)
	c2 := s2.client()
	out, err := c2.ListFunctions(t.Context(), &lambda.ListFunctionsInput{})
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Functions) != 3 {
		t.Fatalf("after SIGKILL and restart: %d functions, want 3", len(out.Functions))
	}
	resp, err := c2.Invoke(t.Context(), &lambda.InvokeInput{FunctionName: aws.String("keep-1"), Payload: []byte(`{"k":1}`)})
	if err != nil {
		t.Fatalf("Invoke after restart: %v", err)
	}
	if resp.FunctionError != nil || string(resp.Payload) != `{"k": 1}` {
		t.Errorf("Invoke after restart = %q (error %v)", resp.Payload, aws.ToString(resp.FunctionError))
	}
}

func TestServeGracefulShutdown(t *testing.T) {
	s := startServer(t, dataDir(t))
	c := s.client()
	create(t, c, "slow", "import time\ndef handler(e, c):\n    time.sleep(1)\n    return 'done'\n")
	type result struct {
		out *lambda.InvokeOutput
		err error
	}
	res := make(chan result, 1)
	go func() {
		out, err := c.Invoke(context.Background(), &lambda.InvokeInput{FunctionName: aws.String("slow")})
		res <- result{out, err}
	}()
	time.Sleep(300 * time.Millisecond) // let the request reach the function
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	r := <-res
	if r.err != nil {
		t.Errorf("in-flight invoke during shutdown: %v", r.err)
	} else if string(r.out.Payload) != `"done"` {
		t.Errorf("in-flight invoke during shutdown = %s", r.out.Payload)
	}
	select {
	case err := <-s.done:
		s.done <- err
		if err != nil {
			t.Errorf("nimbus serve exit: %v\n%s", err, s.logs)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("nimbus serve did not exit after SIGTERM")
	}
	if !strings.Contains(s.logs.String(), "stopped") {
		t.Errorf("no clean stop in the log:\n%s", s.logs)
	}
}

// TestServeRemoteNATS runs Nimbus against the NATS server on this machine
// instead of the embedded one: state lives there across restarts.
func TestServeRemoteNATS(t *testing.T) {
	const url = nodetest.SharedNATS
	prefix := nodetest.SharedNATSPrefix(t)
	dir := dataDir(t)
	// Every node of a cluster has the same node key: the keys' secrets
	// are sealed under it.
	nodeKey := seal.Generate()
	s := startServer(t, dir, "--nats-url", url, "--nats-prefix", prefix, "--node-key", nodeKey)
	s.creds = loadCreds(t, s.addr, dir) // the cluster's first node: it made the admin key
	create(t, s.client(), "remote", "def handler(e, c):\n    return 'remote'\n")
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	<-s.done
	s.done <- nil

	// A new node with an empty data dir finds the function in NATS.
	dir2 := dataDir(t)
	s2 := startServer(t, dir2, "--nats-url", url, "--nats-prefix", prefix, "--node-key", nodeKey)
	if _, err := os.Stat(filepath.Join(dir2, "credentials")); err == nil {
		t.Error("a node joining a cluster that has keys wrote a credentials file of a new admin key")
	}
	s2.creds = s.creds
	resp, err := s2.client().Invoke(t.Context(), &lambda.InvokeInput{FunctionName: aws.String("remote")})
	if err != nil {
		t.Fatalf("Invoke on a second node: %v", err)
	}
	if string(resp.Payload) != `"remote"` {
		t.Fatalf("Invoke on a second node = %s", resp.Payload)
	}
}

func TestServeBadFlags(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"serve", "--log-format", "xml"}, "--log-format must be text or json"},
		{[]string{"serve", "--log-level", "loud"}, "--log-level"},
		{[]string{"serve", "--max-instances", "0"}, "--max-instances"},
		{[]string{"serve", "--freeze-after", "-1s"}, "--freeze-after must be 0 or more"},
		{[]string{"serve", "--prestarted-helpers", "-1"}, "--prestarted-helpers"},
		{[]string{"serve", "--memory-overcommit", "0"}, "--memory-overcommit must be a number above 0"},
		{[]string{"serve", "--memory-overcommit", "NaN"}, "--memory-overcommit must be a number above 0"},
		{[]string{"serve", "--max-memory", "-1"}, "--max-memory"},
		{[]string{"serve", "--max-upload-memory", "0"}, "--max-upload-memory"},
		{[]string{"serve", "--function-network", "bridge"}, `--function-network must be egress, none or host, not "bridge"`},
		{[]string{"serve", "--addr", "256.0.0.1:99999", "--data-dir", dataDir(t)}, "listen"},
		{[]string{"serve", "--nope"}, "unknown flag"},
		{[]string{"serve", "--metrics-addr", "garbage"}, `--metrics-addr must be host:port (e.g. 127.0.0.1:9100), or empty for none, not "garbage"`},
		{[]string{"serve", "--metrics-addr", "127.0.0.1:99999"}, "--metrics-addr must be host:port"},
		{[]string{"serve", "--metrics-addr", "256.0.0.1:9100", "--addr", "127.0.0.1:0", "--data-dir", dataDir(t)}, "--metrics-addr: listen tcp"},
	}
	for _, tt := range tests {
		cmd := exec.Command(nimbusBin, tt.args...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		err := cmd.Run()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 1 {
			t.Errorf("nimbus %v: err %v, want exit 1", tt.args, err)
		}
		lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
		if !strings.Contains(lines[len(lines)-1], tt.want) || !strings.HasPrefix(lines[len(lines)-1], "nimbus: ") {
			t.Errorf("nimbus %v: stderr %q, want a last line 'nimbus: ...%s...'", tt.args, stderr.String(), tt.want)
		}
	}
}
