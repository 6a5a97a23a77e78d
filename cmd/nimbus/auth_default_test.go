package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// runCLI runs the nimbus CLI against s with env added to a clean environment
// (no AWS or NIMBUS credentials of the machine's own).
func runCLI(t *testing.T, s *server, env []string, args ...string) (string, string, error) {
	t.Helper()
	cmd := exec.Command(nimbusBin, args...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir(), "NIMBUS_ENDPOINT=http://" + s.addr}, env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	return stdout.String(), stderr.String(), err
}

// TestServeAuthDefault: a default node refuses anonymous requests with
// Lambda's error, and the CLI finds the node's admin key in the data
// directory's credentials file by itself (the README's quick start).
func TestServeAuthDefault(t *testing.T) {
	dir := dataDir(t)
	s := startServer(t, dir)
	resp, err := http.Get("http://" + s.addr + "/2015-03-31/functions")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 403 || resp.Header.Get("X-Amzn-ErrorType") != "MissingAuthenticationTokenException" {
		t.Fatalf("anonymous ListFunctions: %d %s, want 403 MissingAuthenticationTokenException", resp.StatusCode, resp.Header.Get("X-Amzn-ErrorType"))
	}
	if resp, err := http.Get("http://" + s.addr + "/healthz"); err != nil || resp.StatusCode != 200 {
		t.Fatalf("/healthz must stay open: %v %v", resp, err)
	}
	local := []string{"NIMBUS_DATA_DIR=" + dir}
	if out, stderr, err := runCLI(t, s, local, "ls"); err != nil {
		t.Fatalf("nimbus ls with the local credentials file: %v\n%s%s", err, out, stderr)
	}
	// The AWS CLI's way (the README's export) works for the nimbus CLI too.
	awsEnv := []string{"NIMBUS_DATA_DIR=" + t.TempDir(), "AWS_SHARED_CREDENTIALS_FILE=" + filepath.Join(dir, "credentials"), "AWS_PROFILE=nimbus"}
	if out, stderr, err := runCLI(t, s, awsEnv, "ls"); err != nil {
		t.Fatalf("nimbus ls with AWS_SHARED_CREDENTIALS_FILE and AWS_PROFILE: %v\n%s%s", err, out, stderr)
	}
	// Without the file, the CLI's request is unsigned and refused, and it
	// says where it looked.
	_, stderr, err := runCLI(t, s, []string{"NIMBUS_DATA_DIR=" + t.TempDir()}, "ls")
	if err == nil || !strings.Contains(stderr, "MissingAuthenticationTokenException") || !strings.Contains(stderr, "not signed") {
		t.Fatalf("nimbus ls without credentials: %v %q", err, stderr)
	}
	if n := strings.Count(strings.TrimSpace(stderr), "\n"); n != 0 {
		t.Errorf("error is %d lines, want one: %q", n+1, stderr)
	}

	// keys create -o json: one object with the secret; the new key works
	// from the environment, and is refused after keys rm.
	out, stderr, err := runCLI(t, s, local, "keys", "create", "ci", "--role", "invoker", "--functions", "team-a-*", "-o", "json")
	if err != nil {
		t.Fatalf("keys create: %v %s", err, stderr)
	}
	var key struct{ AccessKeyId, SecretAccessKey, Role, Functions string }
	if err := json.Unmarshal([]byte(out), &key); err != nil || key.AccessKeyId == "" || key.SecretAccessKey == "" || key.Role != "invoker" {
		t.Fatalf("keys create -o json = %q (%v)", out, err)
	}
	inv := []string{"NIMBUS_ACCESS_KEY_ID=" + key.AccessKeyId, "NIMBUS_SECRET_ACCESS_KEY=" + key.SecretAccessKey, "NIMBUS_DATA_DIR=" + dir}
	_, stderr, err = runCLI(t, s, inv, "ls")
	if err == nil || !strings.Contains(stderr, "AccessDeniedException") {
		t.Fatalf("an invoker key listed functions: %v %q", err, stderr)
	}
	_, stderr, err = runCLI(t, s, inv, "keys", "create", "x", "--role", "admin")
	if err == nil || !strings.Contains(stderr, "AccessDeniedException") {
		t.Fatalf("an invoker key created a key: %v %q", err, stderr)
	}
	out, _, err = runCLI(t, s, local, "keys", "ls")
	if err != nil || !strings.Contains(out, "ci") || strings.Contains(out, key.SecretAccessKey) {
		t.Fatalf("keys ls = %q, %v (want ci, and no secret)", out, err)
	}
	if _, stderr, err := runCLI(t, s, local, "keys", "rm", "ci"); err != nil {
		t.Fatalf("keys rm: %v %s", err, stderr)
	}
	_, stderr, err = runCLI(t, s, inv, "ls")
	if err == nil || !strings.Contains(stderr, "UnrecognizedClientException") {
		t.Fatalf("a deleted key: %v %q", err, stderr)
	}
	_, stderr, err = runCLI(t, s, local, "keys", "rm", "admin")
	if err == nil || !strings.Contains(stderr, "last admin key") {
		t.Fatalf("deleting the last admin key: %v %q", err, stderr)
	}

	// Rotating the admin key rewrites the credentials file: the CLI keeps
	// working with it, and the old secret is refused.
	old := s.creds
	if _, stderr, err := runCLI(t, s, local, "keys", "rotate", "admin", "-o", "json"); err != nil {
		t.Fatalf("keys rotate: %v %s", err, stderr)
	}
	if _, stderr, err := runCLI(t, s, local, "ls"); err != nil {
		t.Fatalf("ls after rotating the file's key: %v %s", err, stderr)
	}
	oldEnv := []string{"NIMBUS_ACCESS_KEY_ID=" + old.AccessKeyID, "NIMBUS_SECRET_ACCESS_KEY=" + old.SecretAccessKey}
	if _, stderr, err := runCLI(t, s, oldEnv, "ls"); err == nil || !strings.Contains(stderr, "UnrecognizedClientException") {
		t.Fatalf("old admin key after rotate: %v %q", err, stderr)
	}
	b, _ := os.ReadFile(filepath.Join(dir, "node.key"))
	if strings.TrimSpace(string(b)) == "" {
		t.Fatal("no node key in the data dir")
	}
}

// TestServeAuthNone: --auth none serves anonymous requests on loopback,
// with a warning, and is refused on other addresses unless asked twice.
func TestServeAuthNone(t *testing.T) {
	s := startServer(t, dataDir(t), "--auth", "none")
	resp, err := http.Get("http://" + s.addr + "/2015-03-31/functions")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("anonymous ListFunctions with --auth none: %d", resp.StatusCode)
	}
	if !strings.Contains(s.logs.String(), "authentication is OFF") {
		t.Errorf("no warning in the log:\n%s", s.logs)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--auth", "none", "--addr", "0.0.0.0:0"}, "--auth none on 0.0.0.0:0"},
		{[]string{"--auth", "basic"}, "--auth must be sigv4 or none"},
	} {
		cmd := exec.Command(nimbusBin, append([]string{"serve", "--data-dir", dataDir(t)}, tc.args...)...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		err := cmd.Run()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || !strings.Contains(stderr.String(), tc.want) {
			t.Errorf("serve %v: %v %q, want exit with %q", tc.args, err, stderr.String(), tc.want)
		}
	}
}
