package runtimeapi

import (
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestAdmitOnlyTheInstanceUser: a process of another user cannot reach an
// instance's Runtime API, one of the instance's user can.
func TestAdmitOnlyTheInstanceUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run clients as other users")
	}
	const owner, stranger = 4242001, 4242002
	s, err := ListenPending(slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.Admit(owner)
	get := func(uid int) string {
		// /next would block, so ask for an unknown path: any HTTP answer
		// means the connection was admitted.
		cmd := exec.Command("/usr/bin/python3", "-c", `import sys, urllib.request, urllib.error
try:
    urllib.request.urlopen("http://`+s.Addr()+`/nope", timeout=5)
except urllib.error.HTTPError as e:
    print("status", e.code)
except Exception as e:
    print("refused", type(e).__name__)`)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(uid)}}
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("client as uid %d: %v\n%s", uid, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	if got := get(owner); got != "status 404" {
		t.Errorf("the instance's own user got %q, want an answer (status 404)", got)
	}
	if got := get(stranger); !strings.HasPrefix(got, "refused") {
		t.Errorf("another user got %q, want the connection refused", got)
	}
}

// TestPendingUntilAdmit: connections wait for Admit.
func TestPendingUntilAdmit(t *testing.T) {
	s, err := ListenPending(slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	done := make(chan error, 1)
	go func() {
		tr := &http.Transport{}
		defer tr.CloseIdleConnections()
		c := &http.Client{Transport: tr}
		resp, err := c.Get("http://" + s.Addr() + "/nope")
		if err == nil {
			resp.Body.Close()
		}
		done <- err
	}()
	select {
	case err := <-done:
		t.Fatalf("answered before Admit: %v", err)
	case <-time.After(100 * time.Millisecond):
	}
	s.Admit(-1)
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("after Admit: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("still waiting after Admit")
	}
}
