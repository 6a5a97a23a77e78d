package engine

import (
	"bufio"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
)

// gate measures how many requests of a test function run at once, and on
// how many instances: a request with {"gate": addr} says "in PID" when it
// starts, waits until the gate is opened, and says "out PID" before it
// returns (see testdata/behave and testdata/webgate). Counting happens
// before the request is let in and before it is let out, so the figures
// can only overstate what ran at once, never understate it.
type gate struct {
	ln   net.Listener
	open chan struct{}
	once sync.Once
	wg   sync.WaitGroup

	mu       sync.Mutex
	running  int         // requests between in and out
	pids     map[int]int // running requests per instance
	maxRun   int
	maxPids  int
	finished int
}

// newGate starts a closed gate; the test's cleanup opens and stops it.
func newGate(t *testing.T) *gate {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := &gate{ln: ln, open: make(chan struct{}), pids: map[int]int{}}
	g.wg.Add(1)
	go g.accept()
	t.Cleanup(func() {
		g.Open()
		ln.Close()
		g.wg.Wait()
	})
	return g
}

// payload is an invoke payload that passes the gate.
func (g *gate) payload() string { return fmt.Sprintf(`{"gate":%q}`, g.ln.Addr().String()) }

// Open lets every waiting and future request through.
func (g *gate) Open() { g.once.Do(func() { close(g.open) }) }

func (g *gate) accept() {
	defer g.wg.Done()
	for {
		c, err := g.ln.Accept()
		if err != nil {
			return
		}
		g.wg.Add(1)
		go g.serve(c)
	}
}

func (g *gate) serve(c net.Conn) {
	defer g.wg.Done()
	defer c.Close()
	r := bufio.NewReader(c)
	var pid int
	if _, err := fmt.Fscanf(r, "in %d\n", &pid); err != nil {
		return
	}
	g.enter(pid)
	out := false
	defer func() {
		if !out { // the request died at the gate
			g.leave(pid, false)
		}
	}()
	<-g.open
	if _, err := c.Write([]byte("ok\n")); err != nil {
		return
	}
	if line, err := r.ReadString('\n'); err != nil || !strings.HasPrefix(line, "out ") {
		return
	}
	out = true
	g.leave(pid, true)
	_, _ = c.Write([]byte("ok\n"))
}

func (g *gate) enter(pid int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.running++
	g.pids[pid]++
	g.maxRun = max(g.maxRun, g.running)
	g.maxPids = max(g.maxPids, len(g.pids))
}

// leave undoes enter; finished counts a request that got through.
func (g *gate) leave(pid int, finished bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.running--
	if g.pids[pid]--; g.pids[pid] == 0 {
		delete(g.pids, pid)
	}
	if finished {
		g.finished++
	}
}

// Stats returns the requests running now, the instances running them, the
// most requests and instances seen at once, and the requests finished.
func (g *gate) Stats() (running, instances, maxRunning, maxInstances, finished int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.running, len(g.pids), g.maxRun, g.maxPids, g.finished
}
