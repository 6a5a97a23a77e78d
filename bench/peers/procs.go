package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// proc is a process the benchmark started, in a process group of its own,
// so that stopping it stops what it started too (of-watchdog's function,
// RIE's runtime). It is reaped only by stop, after its group was killed:
// until then its pid, and so its group's id, cannot be reused by a process
// the benchmark did not start.
type proc struct {
	name   string
	cmd    *exec.Cmd
	since  int64         // the size of its log file when it started
	exited chan struct{} // closed when the process has exited (not reaped)
	reaped chan struct{} // closed by the first stop, once it is reaped
}

// start runs argv with env added to a clean environment, its output added
// to a file of dir named after it (kept across restarts, so that a crash's
// output stays).
func start(dir, name string, env []string, argv ...string) (*proc, error) {
	log, err := os.OpenFile(filepath.Join(dir, name+".log"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer log.Close()
	fi, err := log.Stat()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append([]string{"PATH=/usr/local/bin:/usr/bin:/bin", "HOME=" + dir}, env...)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, since: fi.Size(), exited: make(chan struct{}), reaped: make(chan struct{})}
	go func() {
		var info unix.Siginfo
		for unix.Waitid(unix.P_PID, cmd.Process.Pid, &info, unix.WEXITED|unix.WNOWAIT, nil) == unix.EINTR {
		}
		close(p.exited)
	}()
	return p, nil
}

// alive tells whether the process is still running.
func (p *proc) alive() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// stop sends SIGTERM to the process group, and SIGKILL after grace, then
// reaps the process. Stopping a stopped process does nothing.
func (p *proc) stop(grace time.Duration) {
	select {
	case <-p.reaped:
		return
	default:
	}
	pgid := -p.cmd.Process.Pid
	_ = syscall.Kill(pgid, syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(grace):
	}
	_ = syscall.Kill(pgid, syscall.SIGKILL)
	<-p.exited
	_ = p.cmd.Wait()
	close(p.reaped)
}

// output is the process's output so far.
func (p *proc) output() []byte {
	b, _ := os.ReadFile(filepath.Join(p.cmd.Dir, p.name+".log"))
	if int64(len(b)) < p.since {
		return nil
	}
	return b[p.since:]
}

// firstLine waits until the process has printed a first line and returns
// it (the address echo and proxy listen on).
func (p *proc) firstLine(ctx context.Context) (string, error) {
	for {
		if line, _, ok := bytes.Cut(p.output(), []byte("\n")); ok {
			return string(line), nil
		}
		if err := p.wait(ctx); err != nil {
			return "", err
		}
	}
}

// wait pauses between polls of a process, failing when it has exited or ctx
// is done.
func (p *proc) wait(ctx context.Context) error {
	select {
	case <-p.exited:
		return fmt.Errorf("%s exited: %s", p.name, lastLines(p.output(), 10))
	case <-ctx.Done():
		return fmt.Errorf("%s: %w", p.name, ctx.Err())
	case <-time.After(100 * time.Microsecond):
		return nil
	}
}

// answered polls the process with POSTs of body to url until one is
// answered with a 2xx; it returns the time from since until then.
func (p *proc) answered(ctx context.Context, url string, body []byte, since time.Time) (time.Duration, error) {
	hc := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
		if err != nil {
			return 0, err
		}
		if ok, _ := do(hc, req); ok {
			return time.Since(since), nil
		}
		if err := p.wait(ctx); err != nil {
			return 0, err
		}
	}
}

// lastLines is the last n lines of b.
func lastLines(b []byte, n int) string {
	lines := bytes.Split(bytes.TrimSpace(b), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}

// freePorts are n distinct ports of 127.0.0.1 that were free a moment ago,
// for the servers that take a port but cannot report one they chose (the
// echo server as a function, RIE, of-watchdog).
func freePorts(n int) ([]string, error) {
	var ports []string
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		defer ln.Close() // held until all are chosen, so they differ
		ports = append(ports, strconv.Itoa(ln.Addr().(*net.TCPAddr).Port))
	}
	return ports, nil
}
