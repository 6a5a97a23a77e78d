package main

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os/exec"
	"testing"
)

// TestVersion: --version prints the version set at build time, and GET
// /healthz shows it after its "ok" line (as JSON when asked).
func TestVersion(t *testing.T) {
	out, err := exec.Command(nimbusBin, "--version").CombinedOutput()
	if err != nil || string(out) != "nimbus version "+testVersion+"\n" {
		t.Errorf("nimbus --version: %q, %v", out, err)
	}

	s := startServer(t, dataDir(t))
	get := func(url, accept string) (string, http.Header) {
		t.Helper()
		req, _ := http.NewRequestWithContext(t.Context(), "GET", url, nil)
		if accept != "" {
			req.Header.Set("Accept", accept)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			t.Errorf("GET %s: %d %s", url, resp.StatusCode, b)
		}
		return string(b), resp.Header
	}
	body, h := get("http://"+s.addr+"/healthz", "")
	if body != "ok\nversion "+testVersion+"\n" || h.Get("X-Nimbus-Version") != testVersion {
		t.Errorf("GET /healthz: %q, X-Nimbus-Version %q", body, h.Get("X-Nimbus-Version"))
	}
	for _, tc := range []struct{ url, accept string }{
		{"http://" + s.addr + "/healthz", "application/json"},
		{"http://" + s.addr + "/healthz?format=json", ""},
	} {
		body, _ := get(tc.url, tc.accept)
		var v struct{ Status, Version string }
		if err := json.Unmarshal([]byte(body), &v); err != nil || v.Status != "ok" || v.Version != testVersion {
			t.Errorf("GET %s (Accept %q): %q (%v)", tc.url, tc.accept, body, err)
		}
	}
}

// TestServeFlagErrors: a bad number or duration given to serve is one line
// naming the flag, and the exit status is 1.
func TestServeFlagErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"serve", "--max-instances", "lots"}, `nimbus: invalid --max-instances "lots": want a whole number` + "\n"},
		{[]string{"serve", "--queue-timeout", "10"}, `nimbus: invalid --queue-timeout "10": want a duration such as 30s, 5m or 1h` + "\n"},
		{[]string{"serve", "--cpu-queue", "lots"}, `nimbus: invalid --cpu-queue "lots": want a whole number` + "\n"},
		{[]string{"serve", "--cpu-queue-wait", "20"}, `nimbus: invalid --cpu-queue-wait "20": want a duration such as 30s, 5m or 1h` + "\n"},
		{[]string{"serve", "--cpu-queue", "0", "--cpu-queue-wait", "20ms"}, "nimbus: --cpu-queue-wait is the wait of the queue that --cpu-queue 0 turns off: give one or the other\n"},
		{[]string{"serve", "--memory-overcommit", "lots"}, `nimbus: invalid --memory-overcommit "lots": want a number` + "\n"},
		{[]string{"deploy", "x", "--memory", "abc"}, `nimbus: invalid --memory "abc": want a whole number` + "\n"},
	} {
		cmd := exec.Command(nimbusBin, tc.args...)
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 1 || string(out) != tc.want {
			t.Errorf("nimbus %v: %q (%v), want %q and exit status 1", tc.args, out, err, tc.want)
		}
	}
}
