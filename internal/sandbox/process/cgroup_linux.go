package process

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nimbus-serverless/nimbus"
)

// Controllers an instance is limited by.
const (
	ctlMemory = "memory"
	ctlCPU    = "cpu"
	ctlPids   = "pids"
	// ctlFreezer is v1's freezer hierarchy (v2 has cgroup.freeze in every
	// cgroup).
	ctlFreezer = "freezer"
)

var controllers = []string{ctlMemory, ctlCPU, ctlPids}

// v1Controllers are the v1 hierarchies an instance cgroup is made in.
var v1Controllers = []string{ctlMemory, ctlCPU, ctlPids, ctlFreezer}

// unified is the key of the only hierarchy of cgroup v2.
const unified = ""

// Timeouts of the kill and removal loops.
const (
	drainTimeout = 5 * time.Second
	drainPoll    = 5 * time.Millisecond
)

// cgroups is what New found usable: version 1 (one hierarchy per controller)
// or 2 (one unified hierarchy), and the directories instance cgroups are
// created in, below this process's own cgroups.
type cgroups struct {
	version int
	// parents maps a v1 controller, or unified on v2, to the parent
	// directory of instance cgroups.
	parents map[string]string
	// enabled lists the controllers in force.
	enabled []string
	swap    bool // memory.memsw.limit_in_bytes (v1) or memory.swap.max (v2)
	kill    bool // cgroup.kill (v2, Linux 5.14)
	freeze  bool // cgroup.freeze (v2, Linux 5.2) or the v1 freezer
	// missing says what could not be used, for Describe.
	missing []string
}

// limits are the values an instance cgroup is created with; zero means
// unlimited (and, for memory, the default CPU weight).
type limits struct {
	memoryMB int
	pids     int
	// initCPU: the CPU weight is at least one CPU's until setCPU (the
	// instance initialises; see sandbox.Initializer).
	initCPU bool
}

// cpuShares is the v1 cpu.shares of an instance with memoryMB of memory:
// 1024 (one CPU's worth) at nimbus.MemoryPerCPU.
func cpuShares(memoryMB int) int {
	return max(2, 1024*memoryMB/nimbus.MemoryPerCPU)
}

// cpuWeight is the v2 cpu.weight matching cpuShares (100 is the default
// weight, as 1024 is the default share).
func cpuWeight(memoryMB int) int {
	return min(10000, max(1, cpuShares(memoryMB)*100/1024))
}

// mount is one line of /proc/self/mountinfo.
type mount struct {
	root, point, fstype string
	superOpts           []string
}

// dir returns the directory of cgroup path cg (from /proc/self/cgroup) under
// the mount, or false if the mount does not show it.
func (m mount) dir(cg string) (string, bool) {
	if m.root == "/" {
		return filepath.Join(m.point, cg), true
	}
	if rel, ok := strings.CutPrefix(cg, m.root); ok && (rel == "" || rel[0] == '/') {
		return filepath.Join(m.point, rel), true
	}
	return "", false
}

// parseMountinfo parses /proc/self/mountinfo (proc(5)).
func parseMountinfo(data string) []mount {
	var ms []mount
	for line := range strings.Lines(data) {
		pre, post, ok := strings.Cut(strings.TrimSpace(line), " - ")
		f, g := strings.Fields(pre), strings.Fields(post)
		if !ok || len(f) < 5 || len(g) < 3 {
			continue
		}
		ms = append(ms, mount{
			root:      unescapeOctal(f[3]),
			point:     unescapeOctal(f[4]),
			fstype:    g[0],
			superOpts: strings.Split(g[2], ","),
		})
	}
	return ms
}

// unescapeOctal undoes mountinfo's \ooo escapes of spaces and other bytes.
func unescapeOctal(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// parseProcCgroup parses /proc/self/cgroup into a map from controller (or
// unified for the v2 line) to cgroup path.
func parseProcCgroup(data string) map[string]string {
	own := make(map[string]string)
	for line := range strings.Lines(data) {
		parts := strings.SplitN(strings.TrimSpace(line), ":", 3)
		if len(parts) != 3 {
			continue
		}
		if parts[1] == "" {
			own[unified] = parts[2]
			continue
		}
		for _, c := range strings.Split(parts[1], ",") {
			own[c] = parts[2]
		}
	}
	return own
}

// detectCgroups finds this process's cgroups and checks, by creating a probe
// cgroup named probe and writing limits into it, what can be used. It never
// fails: what does not work is listed in missing.
func detectCgroups(probe string) *cgroups {
	mi, err1 := os.ReadFile("/proc/self/mountinfo")
	pc, err2 := os.ReadFile("/proc/self/cgroup")
	if err := errors.Join(err1, err2); err != nil {
		return &cgroups{missing: []string{"cgroups (" + err.Error() + ")"}}
	}
	mounts, own := parseMountinfo(string(mi)), parseProcCgroup(string(pc))
	cg := detectV2(mounts, own, probe)
	if cg == nil {
		cg = detectV1(mounts, own, probe)
	}
	if cg.version != 0 {
		if err := cg.nest(); err != nil {
			cg.missing = append(cg.missing, "a parent cgroup for instances ("+shortErr(err)+")")
		}
	}
	return cg
}

// nestName is the cgroup, below this process's own, that instance cgroups
// are made in: one for every Nimbus process that shares its cgroup. With
// the default CPU weight, it takes one share of the host's CPU, which the
// instances divide among themselves by their weights (memory-proportional),
// instead of each competing with every process on the host.
const nestName = "nimbus"

// nest moves the parents of instance cgroups into nestName below them,
// made if need be (and on v2 with the controllers enabled for its
// children). On error the parents stay as they were.
func (cg *cgroups) nest() error {
	nested := make(map[string]string, len(cg.parents))
	for k, parent := range cg.parents {
		dir := filepath.Join(parent, nestName)
		if err := makeCgroupDir(dir); err != nil && !errors.Is(err, fs.ErrExist) {
			return err
		}
		if cg.version == 2 {
			for _, c := range cg.enabled {
				if err := writeFile(filepath.Join(dir, "cgroup.subtree_control"), "+"+c); err != nil {
					return err
				}
			}
		}
		nested[k] = dir
	}
	cg.parents = nested
	return nil
}

// detectV2 returns the v2 setup if a cgroup2 hierarchy has the memory
// controller, else nil.
func detectV2(mounts []mount, own map[string]string, probe string) *cgroups {
	path, ok := own[unified]
	if !ok {
		return nil
	}
	for _, m := range mounts {
		if m.fstype != "cgroup2" {
			continue
		}
		parent, ok := m.dir(path)
		if !ok {
			continue
		}
		avail, err := os.ReadFile(filepath.Join(parent, "cgroup.controllers"))
		if err != nil || !slices.Contains(strings.Fields(string(avail)), ctlMemory) {
			continue
		}
		cg := &cgroups{version: 2, parents: map[string]string{unified: parent}}
		if err := enableControllers(parent, strings.Fields(string(avail))); err != nil {
			cg.version = 0
			cg.missing = append(cg.missing, "cgroups (v2: "+err.Error()+")")
			return cg
		}
		cg.probeV2(probe)
		return cg
	}
	return nil
}

// enableControllers enables memory, cpu and pids for the children of parent.
// A cgroup with processes of its own cannot do that (the "no internal
// processes" rule); when this process is alone in it, it moves itself into a
// leaf child, as the cgroup v2 documentation recommends for delegated
// subtrees. Only failing to enable memory is an error.
func enableControllers(parent string, avail []string) error {
	control := filepath.Join(parent, "cgroup.subtree_control")
	enable := func() (err error) {
		for _, c := range controllers {
			if slices.Contains(avail, c) {
				if werr := writeFile(control, "+"+c); c == ctlMemory || errors.Is(werr, syscall.EBUSY) {
					err = errors.Join(err, werr)
				}
			}
		}
		return err
	}
	err := enable()
	if !errors.Is(err, syscall.EBUSY) {
		return err
	}
	procs, perr := readPids(filepath.Join(parent, "cgroup.procs"))
	if perr != nil || !slices.Equal(procs, []int{os.Getpid()}) {
		return fmt.Errorf("cannot enable controllers in %s: it holds other processes", parent)
	}
	leaf := filepath.Join(parent, "nimbus-supervisor")
	if err := makeCgroupDir(leaf); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	if err := writeFile(filepath.Join(leaf, "cgroup.procs"), strconv.Itoa(os.Getpid())); err != nil {
		return err
	}
	return enable()
}

// probeV2 creates a probe cgroup, writes a limit for each controller and
// records what worked.
func (cg *cgroups) probeV2(probe string) {
	dir := filepath.Join(cg.parents[unified], probe)
	if err := makeCgroupDir(dir); err != nil {
		cg.version = 0
		cg.missing = append(cg.missing, "cgroups (v2: "+err.Error()+")")
		return
	}
	defer os.Remove(dir)
	tests := map[string][2]string{
		ctlMemory: {"memory.max", "1073741824"},
		ctlCPU:    {"cpu.weight", "100"},
		ctlPids:   {"pids.max", "1024"},
	}
	for _, c := range controllers {
		t := tests[c]
		if err := writeFile(filepath.Join(dir, t[0]), t[1]); err != nil {
			cg.missing = append(cg.missing, "cgroup "+c+" controller ("+shortErr(err)+")")
			continue
		}
		cg.enabled = append(cg.enabled, c)
	}
	if !slices.Contains(cg.enabled, ctlMemory) {
		cg.version = 0
		return
	}
	cg.swap = writeFile(filepath.Join(dir, "memory.swap.max"), "0") == nil
	_, err := os.Stat(filepath.Join(dir, "cgroup.kill"))
	cg.kill = err == nil
	_, err = os.Stat(filepath.Join(dir, "cgroup.freeze"))
	cg.freeze = err == nil
}

// detectV1 returns the v1 setup: one hierarchy per controller.
func detectV1(mounts []mount, own map[string]string, probe string) *cgroups {
	cg := &cgroups{version: 1, parents: make(map[string]string)}
	tests := map[string][2]string{
		ctlMemory:  {"memory.limit_in_bytes", "1073741824"},
		ctlCPU:     {"cpu.shares", "1024"},
		ctlPids:    {"pids.max", "1024"},
		ctlFreezer: {"freezer.state", "THAWED"},
	}
	for _, c := range v1Controllers {
		parent, err := v1Parent(mounts, own, c)
		if err == nil {
			err = probeV1(filepath.Join(parent, probe), tests[c][0], tests[c][1])
		}
		if err != nil {
			cg.missing = append(cg.missing, "cgroup "+c+" controller ("+shortErr(err)+")")
			continue
		}
		cg.parents[c] = parent
		cg.enabled = append(cg.enabled, c)
		cg.freeze = cg.freeze || c == ctlFreezer
		if c == ctlMemory {
			cg.swap = probeV1(filepath.Join(parent, probe),
				"memory.limit_in_bytes", "1073741824", "memory.memsw.limit_in_bytes", "1073741824") == nil
		}
	}
	if len(cg.enabled) == 0 {
		cg.version = 0
	}
	return cg
}

// v1Parent returns the directory of this process's cgroup in the v1
// hierarchy of controller c.
func v1Parent(mounts []mount, own map[string]string, c string) (string, error) {
	path, ok := own[c]
	if !ok {
		return "", errors.New("not in /proc/self/cgroup")
	}
	for _, m := range mounts {
		if m.fstype != "cgroup" || !slices.Contains(m.superOpts, c) {
			continue
		}
		if dir, ok := m.dir(path); ok {
			return dir, nil
		}
	}
	return "", errors.New("not mounted")
}

// probeV1 creates dir, writes each value into its file (pairs of file name
// and value) and removes dir.
func probeV1(dir string, fileValues ...string) error {
	if err := makeCgroupDir(dir); err != nil {
		return err
	}
	var err error
	for i := 0; i+1 < len(fileValues) && err == nil; i += 2 {
		err = writeFile(filepath.Join(dir, fileValues[i]), fileValues[i+1])
	}
	return errors.Join(err, os.Remove(dir))
}

// sweep removes the instance cgroups of Nimbus processes that are gone
// ("nimbus.<pid>.<id>" where no process <pid> exists), killing what is left
// in them, and returns how many it removed. It looks in the parents and,
// for the cgroups of a Nimbus from before nestName, the directories above.
func (cg *cgroups) sweep() int {
	// A cgroup of cgroup v1 is a directory in each controller's
	// hierarchy: gather them by path, so that killing its processes can
	// thaw them in the freezer's (a frozen process dies only once thawed).
	stale := map[string]map[string]string{} // [legacy] name -> controller -> dir
	for k, parent := range cg.parents {
		for i, dir := range []string{parent, filepath.Dir(parent)} {
			ents, err := os.ReadDir(dir)
			if err != nil {
				continue
			}
			for _, e := range ents {
				rest, ok := strings.CutPrefix(e.Name(), "nimbus.")
				pidStr, _, ok2 := strings.Cut(rest, ".")
				pid, err := strconv.Atoi(pidStr)
				if !ok || !ok2 || err != nil || !e.IsDir() || pid == os.Getpid() || syscall.Kill(pid, 0) != syscall.ESRCH {
					continue
				}
				key := strings.Repeat("legacy ", i) + e.Name()
				if stale[key] == nil {
					stale[key] = map[string]string{}
				}
				stale[key][k] = filepath.Join(dir, e.Name())
			}
		}
	}
	removed := 0
	for _, dirs := range stale {
		g := &cgroup{cg: cg, dirs: dirs}
		g.frozen.Store(true) // it may be: killAll thaws it
		g.killAll()
		if g.remove() == nil {
			removed++
		}
	}
	return removed
}

// describe says which cgroup features are in force.
func (cg *cgroups) describe() string {
	if cg == nil || cg.version == 0 {
		return "no cgroups"
	}
	var parts []string
	for _, c := range cg.enabled {
		if c == ctlFreezer {
			continue // said by Describe
		}
		if c == ctlMemory && cg.swap {
			c += " without swap"
		}
		parts = append(parts, c)
	}
	return fmt.Sprintf("cgroup v%d (%s)", cg.version, strings.Join(parts, ", "))
}

// has reports whether controller c is in force.
func (cg *cgroups) has(c string) bool { return slices.Contains(cg.enabled, c) }

// cgroup is one instance's cgroup: one directory per hierarchy, keyed by
// controller on v1 and by unified on v2.
type cgroup struct {
	cg   *cgroups
	dirs map[string]string
	// peakFile stays open: the peak is read on every invocation (for its
	// REPORT line), and pread on an open file is a third of open+read+close.
	peakFile *os.File
	peakBuf  [32]byte
	// frozen: setFrozen(true) was the last call that succeeded.
	frozen atomic.Bool
}

// create makes the cgroup named name with limits lim.
func (cg *cgroups) create(name string, lim limits) (*cgroup, error) {
	g := &cgroup{cg: cg, dirs: make(map[string]string)}
	keys := cg.enabled
	if cg.version == 2 {
		keys = []string{unified}
	}
	for _, k := range keys {
		dir := filepath.Join(cg.parents[k], name)
		err := makeCgroupDir(dir)
		if errors.Is(err, fs.ErrExist) {
			// Left by an earlier process with our pid: empty it and start over.
			old := &cgroup{cg: cg, dirs: map[string]string{k: dir}}
			old.killAll()
			err = errors.Join(old.remove(), makeCgroupDir(dir))
		}
		if err != nil {
			return nil, errors.Join(err, g.remove())
		}
		g.dirs[k] = dir
	}
	if err := g.setLimits(lim); err != nil {
		return nil, errors.Join(err, g.remove())
	}
	return g, nil
}

// setLimits writes lim into the cgroup's files, in order (memsw may not be
// set below the memory limit).
func (g *cgroup) setLimits(lim limits) error {
	var w []string // pairs of file, value
	if lim.memoryMB > 0 {
		bytes := strconv.FormatInt(int64(lim.memoryMB)<<20, 10)
		if g.cg.version == 1 {
			w = append(w, "memory.limit_in_bytes", bytes)
			if g.cg.swap {
				w = append(w, "memory.memsw.limit_in_bytes", bytes)
			}
		} else {
			w = append(w, "memory.max", bytes)
			if g.cg.swap {
				w = append(w, "memory.swap.max", "0")
			}
		}
		if g.cg.has(ctlCPU) {
			f, v := cpuFile(g.cg.version, lim.cpuMemoryMB())
			w = append(w, f, v)
		}
	}
	if lim.pids > 0 && g.cg.has(ctlPids) {
		w = append(w, "pids.max", strconv.Itoa(lim.pids))
	}
	for i := 0; i < len(w); i += 2 {
		if err := writeFile(g.file(w[i]), w[i+1]); err != nil {
			return err
		}
	}
	return nil
}

// cpuMemoryMB is the memory the CPU weight is made from.
func (lim limits) cpuMemoryMB() int {
	if lim.initCPU {
		return max(lim.memoryMB, nimbus.MemoryPerCPU)
	}
	return lim.memoryMB
}

// cpuFile returns the CPU weight file of cgroup version v and its value
// for memoryMB of memory.
func cpuFile(v, memoryMB int) (file, value string) {
	if v == 1 {
		return "cpu.shares", strconv.Itoa(cpuShares(memoryMB))
	}
	return "cpu.weight", strconv.Itoa(cpuWeight(memoryMB))
}

// setCPU sets the CPU weight for memoryMB of memory (nothing without the
// cpu controller).
func (g *cgroup) setCPU(memoryMB int) error {
	if !g.cg.has(ctlCPU) {
		return nil
	}
	f, v := cpuFile(g.cg.version, memoryMB)
	return writeFile(g.file(f), v)
}

// assign sets the limits of a pre-started helper's cgroup (created with no
// limits) for the instance it is given and, on v1, restarts the peak memory
// count from the helper's current use, so that MaxMemoryBytes is the
// instance's. (v2's memory.peak cannot be reset for every reader; there the
// peak includes the idle helper's few MB.)
func (g *cgroup) assign(lim limits) error {
	if err := g.setLimits(lim); err != nil {
		return err
	}
	if g.cg.version == 1 && g.cg.has(ctlMemory) {
		return writeFile(g.file("memory.max_usage_in_bytes"), "0")
	}
	return nil
}

// file returns the path of a controller file ("memory.max", "pids.max"),
// in the hierarchy of its controller on v1.
func (g *cgroup) file(name string) string {
	if g.cg.version == 2 {
		return filepath.Join(g.dirs[unified], name)
	}
	c, _, _ := strings.Cut(name, ".")
	return filepath.Join(g.dirs[c], name)
}

// add moves process pid (all its threads) into the cgroup.
func (g *cgroup) add(pid int) error {
	for _, dir := range g.dirs {
		if err := writeFile(filepath.Join(dir, "cgroup.procs"), strconv.Itoa(pid)); err != nil {
			return err
		}
	}
	return nil
}

// procs lists the processes in the cgroup.
func (g *cgroup) procs() []int {
	var all []int
	for _, dir := range g.dirs {
		pids, _ := readPids(filepath.Join(dir, "cgroup.procs"))
		for _, p := range pids {
			if !slices.Contains(all, p) {
				all = append(all, p)
			}
		}
	}
	return all
}

// signal sends SIGKILL to every process in the cgroup, once: through
// cgroup.kill where there is one, else pid by pid; then it thaws the
// cgroup, for a v1 frozen process dies only once thawed.
func (g *cgroup) signal() {
	if !g.cg.kill || writeFile(g.file("cgroup.kill"), "1") != nil {
		for _, pid := range g.procs() {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	if g.frozen.Load() {
		_ = g.thaw()
	}
}

// thaw thaws the cgroup, in whichever hierarchy it has a freezer.
func (g *cgroup) thaw() error {
	if _, v1 := g.dirs[ctlFreezer]; v1 {
		return writeFile(g.file("freezer.state"), "THAWED")
	}
	if _, v2 := g.dirs[unified]; v2 && g.cg.freeze {
		return writeFile(g.file("cgroup.freeze"), "0")
	}
	return nil
}

// setFrozen freezes or thaws every process of the cgroup. Freezing is
// asynchronous: the processes stop within moments, and none runs again
// until thawed.
func (g *cgroup) setFrozen(frozen bool) error {
	if !g.cg.freeze {
		return errors.ErrUnsupported
	}
	file, value := "cgroup.freeze", map[bool]string{true: "1", false: "0"}[frozen]
	if g.cg.version == 1 {
		file, value = "freezer.state", map[bool]string{true: "FROZEN", false: "THAWED"}[frozen]
	}
	if err := writeFile(g.file(file), value); err != nil {
		return err
	}
	g.frozen.Store(frozen)
	return nil
}

// killAll kills the cgroup's processes until none is left (or drainTimeout
// passes, which it reports as false): a process may fork while it is being
// killed.
func (g *cgroup) killAll() bool {
	deadline := time.Now().Add(drainTimeout)
	for {
		g.signal()
		if len(g.procs()) == 0 {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(drainPoll)
	}
}

// oomKilled reports whether the kernel killed a process of the cgroup for
// exceeding its memory limit. sigkill says the instance died of SIGKILL; it
// backs the v1 memory.failcnt guess on kernels without an oom_kill count.
func (g *cgroup) oomKilled(sigkill bool) bool {
	if !g.cg.has(ctlMemory) {
		return false
	}
	if g.cg.version == 2 {
		n, ok := readKey(g.file("memory.events"), "oom_kill")
		return ok && n > 0
	}
	if n, ok := readKey(g.file("memory.oom_control"), "oom_kill"); ok {
		return n > 0
	}
	n, err := readInt(g.file("memory.failcnt"))
	return err == nil && n > 0 && sigkill
}

// peak returns the most memory the cgroup has used, or 0 if unknown.
func (g *cgroup) peak() int64 {
	if !g.cg.has(ctlMemory) {
		return 0
	}
	if g.peakFile == nil {
		name := "memory.max_usage_in_bytes"
		if g.cg.version == 2 {
			name = "memory.peak" // Linux 5.19
		}
		f, err := os.Open(g.file(name))
		if err != nil {
			return 0
		}
		g.peakFile = f
	}
	n, err := g.peakFile.ReadAt(g.peakBuf[:], 0)
	if n == 0 && err != nil {
		return 0
	}
	v, _ := strconv.ParseInt(strings.TrimSpace(string(g.peakBuf[:n])), 10, 64)
	return v
}

// remove removes the cgroup's directories, retrying while the last
// processes drain.
func (g *cgroup) remove() error {
	if g.peakFile != nil {
		g.peakFile.Close()
		g.peakFile = nil
	}
	var errs []error
	for _, dir := range g.dirs {
		deadline := time.Now().Add(drainTimeout)
		for {
			err := os.Remove(dir)
			if err == nil || errors.Is(err, fs.ErrNotExist) {
				break
			}
			if !errors.Is(err, syscall.EBUSY) || time.Now().After(deadline) {
				errs = append(errs, err)
				break
			}
			time.Sleep(drainPoll)
		}
	}
	return errors.Join(errs...)
}

// makeCgroupDir creates one cgroup directory.
func makeCgroupDir(dir string) error {
	return os.Mkdir(dir, 0o755)
}

// writeFile writes value to an existing (cgroup or proc) file.
func writeFile(path, value string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteString(value)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// readPids reads a cgroup.procs file.
func readPids(path string) ([]int, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, f := range strings.Fields(string(data)) {
		if pid, err := strconv.Atoi(f); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

// readInt reads a file holding one integer.
func readInt(path string) (int64, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(strings.TrimSpace(string(data)), 10, 64)
}

// readKey reads the value of key from a flat-keyed file ("key value" lines,
// as memory.events and memory.oom_control are).
func readKey(path, key string) (int64, bool) {
	f, err := os.Open(path)
	if err != nil {
		return 0, false
	}
	defer f.Close()
	return parseKey(bufio.NewScanner(f), key)
}

// parseKey scans "key value" lines for key.
func parseKey(s *bufio.Scanner, key string) (int64, bool) {
	for s.Scan() {
		k, v, ok := strings.Cut(s.Text(), " ")
		if ok && k == key {
			n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			return n, err == nil
		}
	}
	return 0, false
}

// shortErr drops the path from a *fs.PathError, for Describe.
func shortErr(err error) string {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Op + ": " + pe.Err.Error()
	}
	return err.Error()
}
