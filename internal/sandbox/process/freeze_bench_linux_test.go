package process

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nimbus-serverless/nimbus/internal/sandbox"
	"github.com/nimbus-serverless/nimbus/internal/sandbox/sandboxtest"
	"github.com/nimbus-serverless/nimbus/internal/testenv"
)

// BenchmarkThaw measures what freezing idle instances adds to a warm
// request: a round trip to a running instance (a byte through a FIFO to a
// Python loop and back), as is ("running"), and right after a thaw of the
// frozen instance ("thawed", which includes the Thaw).
func BenchmarkThaw(b *testing.B) {
	be := newAdjusted(b, Config{}, nil)
	if !be.Isolation().Freeze {
		b.Skipf("no freezer: %s", be.Describe())
	}
	var out testenv.Buffer
	code := sandboxtest.HostDir(b)
	script := `import os
os.mkfifo("/tmp/in"); os.mkfifo("/tmp/out"); print("ready", flush=True)
i = open("/tmp/in", "rb", buffering=0); o = open("/tmp/out", "wb", buffering=0)
while True:
    o.write(i.read(1))
`
	if err := os.WriteFile(filepath.Join(code, "echo.py"), []byte(script), 0o644); err != nil {
		b.Fatal(err)
	}
	spec := sandbox.Spec{ID: "thaw-bench", Path: "/usr/bin/python3", Args: []string{"python3", "echo.py"},
		CodeDir: code, Stdout: &out, Stderr: &out}
	si, err := be.Start(b.Context(), spec)
	if err != nil {
		b.Fatal(err)
	}
	inst := si.(*instance)
	defer func() { inst.Kill(); <-inst.Done() }()
	waitFor(b, "ready", func() bool { return out.String() != "" })
	in, err := os.OpenFile(filepath.Join(inst.TmpDir(), "in"), os.O_WRONLY, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer in.Close()
	echo, err := os.Open(filepath.Join(inst.TmpDir(), "out"))
	if err != nil {
		b.Fatal(err)
	}
	defer echo.Close()
	ping := func() {
		var buf [1]byte
		if _, err := in.Write([]byte{'x'}); err != nil {
			b.Fatal(err)
		}
		if _, err := echo.Read(buf[:]); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("running", func(b *testing.B) {
		for b.Loop() {
			ping()
		}
	})
	b.Run("thawed", func(b *testing.B) {
		for b.Loop() {
			b.StopTimer()
			if err := inst.Freeze(); err != nil {
				b.Fatal(err)
			}
			waitFrozen(b, inst)
			b.StartTimer()
			if err := inst.Thaw(); err != nil {
				b.Fatal(err)
			}
			ping()
		}
	})
}

// waitFrozen waits until the instance's cgroup says it is frozen.
func waitFrozen(b *testing.B, inst *instance) {
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if isFrozen(inst.cg) {
			return
		}
		time.Sleep(50 * time.Microsecond)
	}
	b.Fatal("the instance did not freeze")
}

// isFrozen reports whether the freezing of g has completed.
func isFrozen(g *cgroup) bool {
	if g.cg.version == 1 {
		data, err := os.ReadFile(g.file("freezer.state"))
		return err == nil && strings.TrimSpace(string(data)) == "FROZEN"
	}
	n, ok := readKey(g.file("cgroup.events"), "frozen")
	return ok && n == 1
}
