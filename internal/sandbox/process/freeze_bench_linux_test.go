package process

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

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
	spec := sh(b, "exec /usr/bin/python3 echo.py", &out)
	spec.CodeDir = code
	inst := startPooled(b, be, spec)
	waitFor(b, "ready", func() bool { return len(out.String()) > 0 })
	in, err := os.OpenFile(filepath.Join(inst.TmpDir(), "in"), os.O_WRONLY, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer in.Close()
	outF, err := os.Open(filepath.Join(inst.TmpDir(), "out"))
	if err != nil {
		b.Fatal(err)
	}
	defer outF.Close()
	ping := func() {
		var buf [1]byte
		if _, err := in.Write([]byte{'x'}); err != nil {
			b.Fatal(err)
		}
		if _, err := outF.Read(buf[:]); err != nil {
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

// waitFrozen waits until the instance's first process is stopped by the
// freezer (state D or T in /proc on v1 and v2 alike).
func waitFrozen(b *testing.B, inst *instance) {
	pid := inst.h.cmd.Process.Pid
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if frozenState(pid) {
			return
		}
		time.Sleep(100 * time.Microsecond)
	}
	b.Fatal("the instance did not freeze")
}

func frozenState(pid int) bool {
	data, err := os.ReadFile("/proc/" + itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	// "pid (comm) S ...": the state follows the last ')'.
	for i := len(data) - 1; i >= 0; i-- {
		if data[i] == ')' && i+2 < len(data) {
			s := data[i+2]
			return s == 'D' || s == 'T' || s == 't'
		}
	}
	return false
}

var _ = syscall.Getpid
