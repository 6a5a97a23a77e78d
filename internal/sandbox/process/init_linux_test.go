package process

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"os"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// testSocketPair returns the parent's end of a control socket, as a helper
// holds it, and the helper's end as a descriptor.
func testSocketPair(t *testing.T) (*helper, int) {
	t.Helper()
	conn, child, err := socketPair("test")
	if err != nil {
		t.Fatal(err)
	}
	h := &helper{ctl: conn}
	t.Cleanup(func() { _ = h.ctl.Close() })
	fd, err := unix.FcntlInt(child.Fd(), unix.F_DUPFD_CLOEXEC, 0)
	_ = child.Close()
	if err != nil {
		t.Fatal(err)
	}
	return h, fd
}

func TestReadMsg(t *testing.T) {
	h, fd := testSocketPair(t)
	defer unix.Close(fd)
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	// Both queued before the first is read: each keeps its own descriptors.
	if err := h.send(prepareConfig{Mount: true, Proc: true}, nil); err != nil {
		t.Fatal(err)
	}
	if err := h.send(initConfig{Path: "/bin/true", Args: []string{"true"}, Stdio: [2]int{0, -1}}, []*os.File{w}); err != nil {
		t.Fatal(err)
	}
	_ = w.Close()

	var prep prepareConfig
	if fds, err := readMsg(fd, &prep); err != nil || len(fds) != 0 || prep != (prepareConfig{Mount: true, Proc: true}) {
		t.Errorf("first message: %+v, fds %v, %v; want mount and proc, no fds", prep, fds, err)
	}
	var ic initConfig
	fds, err := readMsg(fd, &ic)
	if err != nil || len(fds) != 1 || ic.Path != "/bin/true" || len(ic.Args) != 1 || ic.Stdio != [2]int{0, -1} {
		t.Fatalf("second message: %+v, fds %v, %v; want /bin/true, one fd, stdio [0 -1]", ic, fds, err)
	}
	if flags, err := unix.FcntlInt(uintptr(fds[0]), unix.F_GETFD, 0); err != nil || flags&unix.FD_CLOEXEC == 0 {
		t.Errorf("received fd flags %#x, %v; want close-on-exec", flags, err)
	}
	if _, err := unix.Write(fds[0], []byte("via fd")); err != nil {
		t.Fatal(err)
	}
	_ = unix.Close(fds[0])
	if got, _ := io.ReadAll(r); string(got) != "via fd" {
		t.Errorf("read through the received fd: %q, want %q", got, "via fd")
	}
}

func TestReadMsgBad(t *testing.T) {
	frame := func(n uint32, body string) []byte {
		return append(binary.BigEndian.AppendUint32(nil, n), body...)
	}
	var se *json.SyntaxError
	tests := []struct {
		name   string
		data   []byte
		wantAs any
		wantIs error
		want   string
	}{
		{"empty", nil, nil, io.ErrUnexpectedEOF, ""},
		{"short header", []byte{0, 0}, nil, io.ErrUnexpectedEOF, ""},
		{"short body", frame(100, `{"mount":true}`), nil, io.ErrUnexpectedEOF, ""},
		{"bad JSON", frame(9, "{not json"), &se, nil, ""},
		{"too large", frame(maxMsg+1, ""), nil, nil, "message of"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, fd := testSocketPair(t)
			defer unix.Close(fd)
			if _, err := h.ctl.Write(tt.data); err != nil {
				t.Fatal(err)
			}
			_ = h.ctl.CloseWrite()
			var prep prepareConfig
			_, err := readMsg(fd, &prep)
			switch {
			case err == nil:
				t.Errorf("readMsg: nil, want an error")
			case tt.wantIs != nil && !errors.Is(err, tt.wantIs):
				t.Errorf("readMsg: %v, want %v", err, tt.wantIs)
			case tt.wantAs != nil && !errors.As(err, tt.wantAs):
				t.Errorf("readMsg: %v (%T), want a %T", err, err, tt.wantAs)
			case !strings.Contains(err.Error(), tt.want):
				t.Errorf("readMsg: %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestSetStdioBadIndex(t *testing.T) {
	if err := setStdio(-1, [2]int{-1, 1}, []int{}); err == nil || !strings.Contains(err.Error(), "set stdio") {
		t.Errorf("setStdio with a missing file: %v, want a set stdio error", err)
	}
	if err := setStdio(-1, [2]int{-1, -1}, nil); err != nil {
		t.Errorf("setStdio keeping both: %v", err)
	}
}

// TestExchange plays the helper's side of the control socket.
func TestExchange(t *testing.T) {
	tests := []struct {
		name     string
		helper   func(fd int) // then the helper's end closes
		wantLost bool
		wantIs   error
		wantMsg  string
	}{
		{"exec", func(fd int) {
			_ = writeAll(fd, []byte{readyByte})
			var ic initConfig
			fds, _ := readMsg(fd, &ic)
			_ = writeAll(fd, []byte{ackByte})
			for _, f := range fds {
				_ = unix.Close(f)
			}
		}, false, nil, ""},
		{"exec fails", func(fd int) {
			_ = writeAll(fd, []byte{readyByte})
			var ic initConfig
			_, _ = readMsg(fd, &ic)
			_ = writeAll(fd, []byte{ackByte})
			_ = writeAll(fd, []byte(`{"op":"exec /x","errno":2}`))
		}, false, fs.ErrNotExist, "exec /x: no such file or directory"},
		{"dies before ready", func(int) {}, true, nil, "failed before taking its config"},
		{"prepare fails", func(fd int) {
			_ = writeAll(fd, []byte(`{"op":"make mounts private","errno":1}`))
		}, true, fs.ErrPermission, "make mounts private: operation not permitted"},
		{"dies before ack", func(fd int) {
			_ = writeAll(fd, []byte{readyByte})
		}, true, nil, "failed before taking its config"},
		{"garbage", func(fd int) {
			_ = writeAll(fd, []byte("garbage"))
		}, true, nil, "init helper: garbage"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, fd := testSocketPair(t)
			done := make(chan struct{})
			go func() {
				defer close(done)
				tt.helper(fd)
				_ = unix.Close(fd)
			}()
			r, w, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			defer w.Close()
			err = h.run(t.Context(), &initConfig{Path: "/bin/true", Stdio: [2]int{0, 0}}, []*os.File{w})
			<-done
			if tt.wantMsg == "" {
				if err != nil {
					t.Errorf("run: %v, want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantMsg) || errors.Is(err, errLost) != tt.wantLost {
				t.Errorf("run: %v; want an error containing %q, errLost %v", err, tt.wantMsg, tt.wantLost)
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("run: %v, want one matching %v", err, tt.wantIs)
			}
		})
	}
}

func TestStdioFiles(t *testing.T) {
	a, b, err := os.Pipe() // only their identity matters
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	defer b.Close()
	tests := []struct {
		name           string
		stdout, stderr *os.File
		want           []*os.File
		wantStdio      [2]int
	}{
		{"none", nil, nil, nil, [2]int{-1, -1}},
		{"both", a, b, []*os.File{a, b}, [2]int{0, 1}},
		{"same", a, a, []*os.File{a}, [2]int{0, 0}},
		{"stderr only", nil, b, []*os.File{b}, [2]int{-1, 0}},
		{"stdout only", a, nil, []*os.File{a}, [2]int{0, -1}},
	}
	for _, tt := range tests {
		ic := &initConfig{}
		got := stdioFiles(ic, tt.stdout, tt.stderr)
		if len(got) != len(tt.want) || ic.Stdio != tt.wantStdio {
			t.Errorf("%s: files %v, stdio %v; want %v, %v", tt.name, got, ic.Stdio, tt.want, tt.wantStdio)
			continue
		}
		for k := range got {
			if got[k] != tt.want[k] {
				t.Errorf("%s: file %d is %s, want %s", tt.name, k, got[k].Name(), tt.want[k].Name())
			}
		}
	}
}

func TestPoolSizeConfig(t *testing.T) {
	tests := []struct {
		size, want int
		wantErr    bool
	}{
		{0, DefaultPoolSize, false},
		{-1, 0, false},
		{5, 5, false},
		{maxPoolSize, maxPoolSize, false},
		{maxPoolSize + 1, 0, true},
	}
	for _, tt := range tests {
		cfg, err := Config{Root: "/nimbus", PoolSize: tt.size}.withDefaults()
		if (err != nil) != tt.wantErr || err == nil && cfg.PoolSize != tt.want {
			t.Errorf("PoolSize %d: got %d, %v; want %d (error: %v)", tt.size, cfg.PoolSize, err, tt.want, tt.wantErr)
		}
	}
}
