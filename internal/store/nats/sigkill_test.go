//go:build linux

package nats_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nimbus-serverless/nimbus"
	natsstore "github.com/nimbus-serverless/nimbus/internal/store/nats"
)

// helperDirEnv marks the helper process and names its data dir.
const helperDirEnv = "NIMBUS_STORE_HELPER_DIR"

// TestHelperWriter is not a test: TestSIGKILL runs it in a child process,
// where it writes keys until killed and prints each one after its write was
// acknowledged.
func TestHelperWriter(t *testing.T) {
	dir := os.Getenv(helperDirEnv)
	if dir == "" {
		t.Skip("helper process for TestSIGKILL")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := natsstore.Open(ctx, natsstore.Config{DataDir: dir})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	kv, err := s.KV(ctx, "sigkill")
	if err != nil {
		t.Fatalf("KV: %v", err)
	}
	for i := 0; ctx.Err() == nil; i++ {
		key := fmt.Sprintf("k%06d", i)
		if _, err := kv.Create(ctx, key, []byte(key)); err != nil {
			t.Fatalf("Create: %v", err)
		}
		if _, err := fmt.Fprintf(os.Stdout, "ack %s\n", key); err != nil {
			return // the parent is gone
		}
	}
}

// TestSIGKILL checks that every write acknowledged before a SIGKILL is
// there when the data dir is opened again.
func TestSIGKILL(t *testing.T) {
	if os.Getenv(helperDirEnv) != "" {
		t.Skip("in the helper process")
	}
	checkLeaks(t)
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperWriter$", "-test.count=1")
	cmd.Env = append(os.Environ(), helperDirEnv+"="+dir)
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })

	const before = 200 // acknowledged writes to see before the kill
	var acked []string
	sc := bufio.NewScanner(out)
	for len(acked) < before && sc.Scan() {
		acked = append(acked, sc.Text())
	}
	if len(acked) < before {
		t.Fatalf("helper printed %d lines, want %d (scan error %v)", len(acked), before, sc.Err())
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatalf("kill: %v", err)
	}
	// Lines the helper printed before it died were acknowledged too.
	for sc.Scan() {
		acked = append(acked, sc.Text())
	}
	err = cmd.Wait()
	var exitErr *exec.ExitError
	if !errors.As(err, &exitErr) || exitErr.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("helper exit = %v, want killed by SIGKILL", err)
	}

	s := openEmbedded(t, dir)
	kv, err := s.KV(t.Context(), "sigkill")
	if err != nil {
		t.Fatalf("KV: %v", err)
	}
	for _, line := range acked {
		key, ok := strings.CutPrefix(line, "ack ")
		if !ok {
			t.Fatalf("helper printed %q, want \"ack <key>\"", line)
		}
		e, err := kv.Get(t.Context(), key)
		if errors.Is(err, nimbus.ErrNotFound) {
			t.Errorf("acknowledged key %s lost", key)
			continue
		}
		if err != nil || string(e.Value) != key {
			t.Errorf("Get(%s) = %q, %v; want %q", key, e.Value, err, key)
		}
	}
	keys, err := kv.Keys(t.Context())
	if err != nil {
		t.Fatalf("Keys: %v", err)
	}
	if len(keys) < len(acked) {
		t.Errorf("%d keys after restart, want at least the %d acknowledged", len(keys), len(acked))
	}
	t.Logf("%d acknowledged writes, %d keys after restart", len(acked), len(keys))
}
