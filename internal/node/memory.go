package node

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// Memory admission: the engine admits instances while the sum of their
// memory limits stays within Config.MaxMemoryMB, or, when that is 0, within
// the host's memory (the smaller of MemTotal and the memory limit of the
// node's own cgroup) times Config.MemoryOvercommit. An overcommit above 1
// counts on instances using less than their limit, as most do; the kernel's
// per-instance cgroup limit still holds each one to its own.

// memoryBudgetMB is the sum of instances' memory limits the node admits.
func (c *Config) memoryBudgetMB() (int, error) {
	if c.MaxMemoryMB > 0 {
		return c.MaxMemoryMB, nil
	}
	host, err := hostMemoryMB("/proc", "/sys/fs/cgroup")
	if err != nil {
		return 0, fmt.Errorf("host memory (set --max-memory instead): %w", err)
	}
	return max(int(float64(host)*c.MemoryOvercommit), 1), nil
}

// hostMemoryMB returns the memory this process may use: MemTotal of
// proc/meminfo, or less when its cgroup (v2 memory.max, v1
// memory.limit_in_bytes) has a lower limit.
func hostMemoryMB(proc, cgroupRoot string) (int, error) {
	total, err := memTotal(filepath.Join(proc, "meminfo"))
	if err != nil {
		return 0, err
	}
	if lim, ok := cgroupLimit(filepath.Join(proc, "self", "cgroup"), cgroupRoot); ok && lim < total {
		total = lim
	}
	return int(total >> 20), nil
}

// memTotal reads MemTotal, in bytes, from a meminfo file.
func memTotal(path string) (int64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "MemTotal:")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) == 2 && f[1] == "kB" {
			if kb, err := strconv.ParseInt(f[0], 10, 64); err == nil && kb > 0 {
				return kb << 10, nil
			}
		}
		return 0, fmt.Errorf("%s: cannot read %q", path, sc.Text())
	}
	return 0, errors.New(path + ": no MemTotal")
}

// cgroupLimit returns the memory limit of this process's cgroup, when it
// has one it can read.
func cgroupLimit(selfCgroup, root string) (int64, bool) {
	b, err := os.ReadFile(selfCgroup)
	if err != nil {
		return 0, false
	}
	for line := range strings.Lines(string(b)) {
		f := strings.SplitN(strings.TrimSpace(line), ":", 3)
		if len(f) != 3 {
			continue
		}
		var candidates []string
		switch {
		case f[0] == "0" && f[1] == "": // v2
			candidates = []string{filepath.Join(root, f[2], "memory.max"), filepath.Join(root, "memory.max")}
		case slices.Contains(strings.Split(f[1], ","), "memory"): // v1
			candidates = []string{filepath.Join(root, "memory", f[2], "memory.limit_in_bytes"),
				filepath.Join(root, "memory", "memory.limit_in_bytes")}
		}
		for _, c := range candidates {
			if lim, ok := readLimit(c); ok {
				return lim, true
			}
		}
	}
	return 0, false
}

// readLimit reads a cgroup memory limit; "max" and v1's "unlimited"
// (close to 2^63) are no limit.
func readLimit(path string) (int64, bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, false
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil || n <= 0 || n >= 1<<62 {
		return 0, false
	}
	return n, true
}
