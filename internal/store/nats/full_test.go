package nats_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nimbus-serverless/nimbus"
	natsstore "github.com/nimbus-serverless/nimbus/internal/store/nats"
)

// smallDisk mounts a tmpfs of size MB for the test (root only).
func smallDisk(t *testing.T, mb int) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("mounting a small disk needs root")
	}
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size="+strconv.Itoa(mb)+"m"); err != nil {
		t.Fatalf("mount tmpfs: %v", err)
	}
	t.Cleanup(func() { _ = unix.Unmount(dir, unix.MNT_DETACH) })
	return dir
}

// fill writes a file until the disk is full and returns its path.
func fill(t *testing.T, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "filler")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := bytes.Repeat([]byte{1}, 64<<10)
	for {
		if _, err := f.Write(buf); err != nil {
			break
		}
	}
	return path
}

// TestFullDisk fills the embedded store's disk: writes fail with
// ErrUnavailable within a bound (they never hang), and once space returns
// the store restarts its server by itself and writes again, with its data.
func TestFullDisk(t *testing.T) {
	checkLeaks(t)
	dir := smallDisk(t, 48)
	s, err := natsstore.Open(t.Context(), natsstore.Config{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(context.Background())
	kv, err := s.KV(t.Context(), "full")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(t.Context(), "before", []byte("kept")); err != nil {
		t.Fatal(err)
	}
	filler := fill(t, dir)

	big := bytes.Repeat([]byte("x"), 256<<10)
	var failed error
	for i := 0; i < 20 && failed == nil; i++ {
		begin := time.Now()
		_, failed = kv.Put(t.Context(), "k"+strconv.Itoa(i), big)
		if d := time.Since(begin); d > 15*time.Second {
			t.Fatalf("a write on a full disk took %s", d)
		}
	}
	if !errors.Is(failed, nimbus.ErrUnavailable) {
		t.Fatalf("writes on a full disk: %v, want ErrUnavailable", failed)
	}
	waitHealth(t, s, func(err error) bool { return err != nil })
	begin := time.Now()
	if _, err := kv.Put(t.Context(), "fast", []byte("x")); !errors.Is(err, nimbus.ErrUnavailable) {
		t.Fatalf("a write while the store knows it cannot write: %v", err)
	} else if d := time.Since(begin); d > time.Second {
		t.Errorf("it took %s to fail; it should fail at once", d)
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	waitHealth(t, s, func(err error) bool { return err == nil })
	deadline := time.Now().Add(20 * time.Second)
	for {
		_, err := kv.Put(t.Context(), "after", []byte("ok"))
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the store does not write again once space returned: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if e, err := kv.Get(t.Context(), "before"); err != nil || string(e.Value) != "kept" {
		t.Errorf("data written before the disk filled: %q, %v", e.Value, err)
	}
}

func waitHealth(t *testing.T, s *natsstore.Store, cond func(error) bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond(s.Healthy()) {
		if time.Now().After(deadline) {
			t.Fatalf("store health stays %v", s.Healthy())
		}
		time.Sleep(50 * time.Millisecond)
	}
}
