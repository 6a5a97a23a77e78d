package main

// End-to-end tests of what goes wrong around a node: a second node on the
// same data directory, a SIGKILL with work queued, a full disk, a function
// deleted while its events wait across a restart.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"golang.org/x/sys/unix"
)

// TestServeDataDirLocked: a second node on a data directory in use stops
// at once with one line naming the holder's pid, and the first keeps
// running.
func TestServeDataDirLocked(t *testing.T) {
	dir := dataDir(t)
	s := startServer(t, dir)
	cmd := exec.Command(nimbusBin, "serve", "--addr", freeAddr(t), "--data-dir", dir)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() == 0 {
			t.Fatalf("second node on the same data dir: %v, want a failure\n%s", err, out.String())
		}
	case <-time.After(20 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatalf("second node on the same data dir did not stop\n%s", out.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	last := lines[len(lines)-1]
	want := "pid " + strconv.Itoa(s.cmd.Process.Pid)
	if !strings.Contains(last, "in use") || !strings.Contains(last, want) {
		t.Errorf("error = %q, want one line saying the dir is in use by %s", last, want)
	}
	if resp, err := http.Get("http://" + s.addr + "/healthz"); err != nil {
		t.Fatalf("the first node stopped answering: %v", err)
	} else {
		resp.Body.Close()
	}
	// Once the first node is gone, the directory is free again.
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	<-s.done
	s.done <- nil
	startServer(t, dir)
}

// TestAsyncResumesAfterSIGKILL: a node killed with work running and queued
// takes it up again as soon as it is back, not after the claim's lifetime
// (a minute here).
func TestAsyncResumesAfterSIGKILL(t *testing.T) {
	dir := dataDir(t)
	flags := []string{"--async-ack-wait", "60s", "--async-concurrency", "1"}
	s := startServer(t, dir, flags...)
	create(t, s.client(), "steady", "import time\ndef handler(e, c):\n    time.sleep(0.5)\n    return e\n")
	var ids []string
	for i := range 4 {
		id := fmt.Sprintf("resume-%d", i)
		if !submitAsync(s.addr, "steady", id) {
			t.Fatalf("submit %s", id)
		}
		ids = append(ids, id)
	}
	waitStatus(t, s.addr, "steady", ids[0], "Running", "Succeeded")
	if err := s.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-s.done
	s.done <- nil

	s2 := startServer(t, dir, flags...)
	ready := time.Now()
	for _, id := range ids {
		waitStatus(t, s2.addr, "steady", id, "Succeeded")
	}
	// Four half-second events one at a time, a cold start: a few seconds.
	// Waiting for the claims to lapse would take a minute.
	if d := time.Since(ready); d > 30*time.Second {
		t.Errorf("the queued events took %s after the restart; they waited for the claims to lapse", d)
	}
}

// TestAsyncDeletedFunctionAcrossRestart: the event of a function deleted
// while it waited ends Failed, also when the node restarted in between.
func TestAsyncDeletedFunctionAcrossRestart(t *testing.T) {
	dir := dataDir(t)
	s := startServer(t, dir)
	c := s.client()
	create(t, c, "held", "def handler(e, c):\n    return e\n")
	if _, err := c.PutFunctionConcurrency(t.Context(), &lambda.PutFunctionConcurrencyInput{
		FunctionName: aws.String("held"), ReservedConcurrentExecutions: aws.Int32(0)}); err != nil {
		t.Fatal(err)
	}
	if !submitAsync(s.addr, "held", "orphan") {
		t.Fatal("submit")
	}
	if err := s.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-s.done
	s.done <- nil
	s2 := startServer(t, dir)
	if _, err := s2.client().DeleteFunction(t.Context(), &lambda.DeleteFunctionInput{FunctionName: aws.String("held")}); err != nil {
		t.Fatal(err)
	}
	task := waitStatus(t, s2.addr, "held", "orphan", "Failed")
	if !strings.Contains(task["error"].(string), "deleted") {
		t.Errorf("task = %v, want it failed because its function was deleted", task)
	}
}

// TestServeFullDisk fills the data directory's disk (a small tmpfs):
// asynchronous submits answer 503 within seconds instead of hanging, the
// node recovers by itself once space returns, and SIGTERM ends within the
// grace all along.
func TestServeFullDisk(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a small disk needs root")
	}
	dir := dataDir(t)
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size=96m,mode=0755"); err != nil {
		t.Fatalf("mount tmpfs: %v", err)
	}
	t.Cleanup(func() { _ = unix.Unmount(dir, unix.MNT_DETACH) })
	s := startServer(t, dir, "--shutdown-grace", "5s")
	create(t, s.client(), "echo", "def handler(e, c):\n    return e\n")
	waitStatus(t, s.addr, "echo", submitted(t, s.addr, "echo", "before"), "Succeeded")

	filler := filepath.Join(dir, "filler")
	fillDisk(t, filler)
	var status int
	var body string
	for i := range 10 {
		begin := time.Now()
		status, body = submitStatus(s.addr, "echo", fmt.Sprintf("full-%d", i))
		if d := time.Since(begin); d > 15*time.Second {
			t.Fatalf("a submit on a full disk took %s", d)
		}
		if status == http.StatusServiceUnavailable && strings.Contains(body, "disk") {
			break // the first may time out; once the node knows, it says why at once
		}
	}
	if status != http.StatusServiceUnavailable || !strings.HasPrefix(body, "ServiceException ") || !strings.Contains(body, "disk") {
		t.Fatalf("submit on a full disk: %d %s, want 503 ServiceException saying the disk is full", status, body)
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	var id string
	for id == "" {
		if st, _ := submitStatus(s.addr, "echo", "after"); st == http.StatusAccepted {
			id = "after"
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the node does not take submits again once space returned\n%s", s.logs)
		}
		time.Sleep(200 * time.Millisecond)
	}
	waitStatus(t, s.addr, "echo", id, "Succeeded")

	fillDisk(t, filler)
	begin := time.Now()
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-s.done:
		s.done <- err
		if d := time.Since(begin); d > 15*time.Second {
			t.Errorf("SIGTERM on a full disk took %s with a 5 s grace", d)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("nimbus serve did not exit after SIGTERM on a full disk\n%s", s.logs)
	}
}

// fillDisk writes path until its disk is full.
func fillDisk(t *testing.T, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := bytes.Repeat([]byte{1}, 1<<20)
	for {
		if _, err := f.Write(buf); err != nil {
			return
		}
	}
}

// submitStatus submits an event with a task id and returns the answer's
// status and its error type and body.
func submitStatus(addr, fn, id string) (int, string) {
	req, _ := http.NewRequest("POST", "http://"+addr+"/2015-03-31/functions/"+fn+"/invocations",
		strings.NewReader(`{"id":"`+id+`"}`))
	req.Header.Set("X-Amz-Invocation-Type", "Event")
	req.Header.Set("X-Nimbus-Task-Id", id)
	resp, err := do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("X-Amzn-ErrorType") + " " + string(b)
}

func submitted(t *testing.T, addr, fn, id string) string {
	t.Helper()
	if st, body := submitStatus(addr, fn, id); st != http.StatusAccepted {
		t.Fatalf("submit %s: %d %s", id, st, body)
	}
	return id
}

// waitStatus polls a task until it is in one of statuses and returns it.
func waitStatus(t *testing.T, addr, fn, id string, statuses ...string) map[string]any {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	var task map[string]any
	for {
		resp, err := get("http://" + addr + "/nimbus/v1/functions/" + fn + "/tasks/" + id)
		if err == nil {
			task = nil
			_ = json.NewDecoder(resp.Body).Decode(&task)
			resp.Body.Close()
			for _, st := range statuses {
				if task["status"] == st {
					return task
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("task %s of %s: %v, want %v", id, fn, task, statuses)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
