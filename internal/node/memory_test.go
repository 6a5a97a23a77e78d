package node

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestHostMemory(t *testing.T) {
	const meminfo = "MemTotal:       24683748 kB\nMemFree:        1000 kB\n"
	tests := []struct {
		name   string
		cgroup string            // /proc/self/cgroup
		files  map[string]string // under the cgroup root
		want   int
	}{
		{"no cgroup limit", "0::/\n", map[string]string{"memory.max": "max\n"}, 24105},
		{"v2 limit", "0::/a/b\n", map[string]string{"a/b/memory.max": "2147483648\n"}, 2048},
		{"v2 limit above host", "0::/a\n", map[string]string{"a/memory.max": "99999999999999\n"}, 24105},
		{"v1 limit", "4:memory:/p/q\n1:cpu:/\n", map[string]string{"memory/p/q/memory.limit_in_bytes": "1073741824\n"}, 1024},
		{"v1 unlimited", "4:memory:/p\n", map[string]string{"memory/memory.limit_in_bytes": "9223372036854771712\n"}, 24105},
		{"v1 namespaced root", "4:memory:/p\n", map[string]string{"memory/memory.limit_in_bytes": "536870912\n"}, 512},
		{"unreadable cgroup", "garbage", nil, 24105},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			proc, root := t.TempDir(), t.TempDir()
			write(t, filepath.Join(proc, "meminfo"), meminfo)
			write(t, filepath.Join(proc, "self", "cgroup"), tt.cgroup)
			for p, v := range tt.files {
				write(t, filepath.Join(root, p), v)
			}
			got, err := hostMemoryMB(proc, root)
			if err != nil || got != tt.want {
				t.Fatalf("hostMemoryMB = %d, %v; want %d", got, err, tt.want)
			}
		})
	}
	proc := t.TempDir()
	write(t, filepath.Join(proc, "meminfo"), "MemFree: 1 kB\n")
	if _, err := hostMemoryMB(proc, t.TempDir()); err == nil || !strings.Contains(err.Error(), "MemTotal") {
		t.Fatalf("meminfo without MemTotal: %v", err)
	}
}

func TestMemoryBudget(t *testing.T) {
	c := Defaults()
	c.MaxMemoryMB = 3000
	if got, _ := c.memoryBudgetMB(); got != 3000 {
		t.Errorf("budget with --max-memory 3000 = %d", got)
	}
	c.MaxMemoryMB, c.MemoryOvercommit = 0, 2
	host, err := hostMemoryMB("/proc", "/sys/fs/cgroup")
	if err != nil {
		t.Skipf("host memory: %v", err)
	}
	if got, _ := c.memoryBudgetMB(); got != 2*host {
		t.Errorf("budget at overcommit 2 = %d, want %d", got, 2*host)
	}
}

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}
