package process

import (
	"bufio"
	"errors"
	"io"
	"io/fs"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/nimbus-serverless/nimbus/internal/testenv"
)

func TestParseMountinfo(t *testing.T) {
	const data = `25 30 0:22 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
26 25 0:23 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid shared:9 - cgroup cgroup rw,cpu,cpuacct
27 25 0:24 /docker/abc /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
28 25 0:25 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw,nsdelegate
29 30 8:1 / /mnt/with\040space rw - ext4 /dev/sda1 rw
garbage line
`
	got := parseMountinfo(data)
	want := []mount{
		{root: "/", point: "/sys/fs/cgroup", fstype: "tmpfs", superOpts: []string{"rw", "mode=755"}},
		{root: "/", point: "/sys/fs/cgroup/cpu,cpuacct", fstype: "cgroup", superOpts: []string{"rw", "cpu", "cpuacct"}},
		{root: "/docker/abc", point: "/sys/fs/cgroup/memory", fstype: "cgroup", superOpts: []string{"rw", "memory"}},
		{root: "/", point: "/sys/fs/cgroup/unified", fstype: "cgroup2", superOpts: []string{"rw", "nsdelegate"}},
		{root: "/", point: "/mnt/with space", fstype: "ext4", superOpts: []string{"rw"}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("parseMountinfo:\ngot  %+v\nwant %+v", got, want)
	}
}

func TestMountDir(t *testing.T) {
	tests := []struct {
		root, cg string
		want     string
		ok       bool
	}{
		{"/", "/process_api/x", "/m/process_api/x", true},
		{"/", "/", "/m", true},
		{"/docker/abc", "/docker/abc", "/m", true},
		{"/docker/abc", "/docker/abc/sub", "/m/sub", true},
		{"/docker/abc", "/docker/abcdef", "", false},
		{"/docker/abc", "/other", "", false},
	}
	for _, tt := range tests {
		got, ok := mount{root: tt.root, point: "/m"}.dir(tt.cg)
		if got != tt.want || ok != tt.ok {
			t.Errorf("mount{root: %q}.dir(%q) = %q, %v; want %q, %v", tt.root, tt.cg, got, ok, tt.want, tt.ok)
		}
	}
}

func TestParseProcCgroup(t *testing.T) {
	const data = `9:name=systemd:/
4:memory:/process_api/x
2:cpu,cpuacct:/a
1:pids:/
0::/unified/path
bad
`
	got := parseProcCgroup(data)
	want := map[string]string{
		"name=systemd": "/", "memory": "/process_api/x", "cpu": "/a", "cpuacct": "/a",
		"pids": "/", unified: "/unified/path",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("parseProcCgroup = %v, want %v", got, want)
	}
}

func TestUnescapeOctal(t *testing.T) {
	tests := map[string]string{
		`plain`:        "plain",
		`a\040b`:       "a b",
		`tab\011x\134`: "tab\tx\\",
		`short\04`:     `short\04`,
		`bad\09x`:      `bad\09x`,
	}
	for in, want := range tests {
		if got := unescapeOctal(in); got != want {
			t.Errorf("unescapeOctal(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestParseKey(t *testing.T) {
	const oomControl = "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n"
	tests := []struct {
		data, key string
		want      int64
		ok        bool
	}{
		{oomControl, "oom_kill", 3, true},
		{oomControl, "under_oom", 0, true},
		{oomControl, "oom", 0, false},
		{"low 0\nhigh 0\nmax 12\noom 2\noom_kill 1\n", "oom_kill", 1, true},
		{"oom_kill x\n", "oom_kill", 0, false},
		{"", "oom_kill", 0, false},
	}
	for _, tt := range tests {
		got, ok := parseKey(bufio.NewScanner(strings.NewReader(tt.data)), tt.key)
		if got != tt.want || ok != tt.ok {
			t.Errorf("parseKey(%q, %q) = %d, %v; want %d, %v", tt.data, tt.key, got, ok, tt.want, tt.ok)
		}
	}
}

func TestStatusMatches(t *testing.T) {
	status := func(state, uids string) string {
		return "Name:\tsleep\nState:\t" + state + "\nTgid:\t5\nUid:\t" + uids + "\nGid:\t0\t0\t0\t0\n"
	}
	tests := []struct {
		name, status string
		want         bool
	}{
		{"running as uid", status("S (sleeping)", "7\t7\t7\t7"), true},
		{"saved uid", status("R (running)", "0\t0\t7\t0"), true},
		{"other uid", status("S (sleeping)", "8\t8\t8\t8"), false},
		{"fs uid only", status("S (sleeping)", "0\t0\t0\t7"), false},
		{"zombie", status("Z (zombie)", "7\t7\t7\t7"), false},
		{"empty", "", false},
	}
	for _, tt := range tests {
		if got := statusMatches(tt.status, 7); got != tt.want {
			t.Errorf("%s: statusMatches = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestHelperResult(t *testing.T) {
	tests := []struct {
		name    string
		status  string
		ioErr   error
		wantIs  error
		wantMsg string
	}{
		{"exec'd", "", nil, nil, ""},
		{"errno", `{"op":"exec /code/bootstrap","errno":13}`, nil, fs.ErrPermission, "exec /code/bootstrap: permission denied"},
		{"message", `{"op":"read config","msg":"unexpected EOF"}`, nil, nil, "read config: unexpected EOF"},
		{"not json", "panic: oops", nil, nil, "init helper: panic: oops"},
		{"pipe error", "", io.ErrClosedPipe, io.ErrClosedPipe, "talk to init helper"},
	}
	for _, tt := range tests {
		err := helperResult([]byte(tt.status), tt.ioErr)
		if tt.wantMsg == "" {
			if err != nil {
				t.Errorf("%s: helperResult = %v, want nil", tt.name, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tt.wantMsg) || (tt.wantIs != nil && !errors.Is(err, tt.wantIs)) {
			t.Errorf("%s: helperResult = %v, want an error containing %q matching %v", tt.name, err, tt.wantMsg, tt.wantIs)
		}
	}
}

func TestSameWriter(t *testing.T) {
	var a, b testenv.Buffer
	tests := []struct {
		name string
		x, y io.Writer
		want bool
	}{
		{"same pointer", &a, &a, true},
		{"different pointers", &a, &b, false},
		{"nil", nil, &a, false},
		{"same file", os.Stderr, os.Stderr, true},
		{"uncomparable", sliceWriter{}, sliceWriter{}, false},
	}
	for _, tt := range tests {
		if got := sameWriter(tt.x, tt.y); got != tt.want {
			t.Errorf("%s: sameWriter = %v, want %v", tt.name, got, tt.want)
		}
	}
}

type sliceWriter []byte

func (sliceWriter) Write(p []byte) (int, error) { return len(p), nil }

func TestWithEnv(t *testing.T) {
	got := withEnv([]string{"A=1", "TMPDIR=/old", "TMPDIRX=2"}, "TMPDIR", "/new")
	want := []string{"A=1", "TMPDIRX=2", "TMPDIR=/new"}
	if !slices.Equal(got, want) {
		t.Errorf("withEnv = %q, want %q", got, want)
	}
}

func TestValidID(t *testing.T) {
	for id, want := range map[string]bool{
		"fn-0a1b2c3d4e5f": true, "a.b_c": true, "": false, ".": false, "..": false,
		"a/b": false, "a b": false, strings.Repeat("x", 128): true, strings.Repeat("x", 129): false,
	} {
		if got := validID(id); got != want {
			t.Errorf("validID(%q) = %v, want %v", id, got, want)
		}
	}
}

func TestWithin(t *testing.T) {
	for _, tt := range []struct {
		p, dir string
		want   bool
	}{
		{"/a/b", "/a", true}, {"/a", "/a", true}, {"/ab", "/a", false}, {"/a/b", "/a/", true},
	} {
		if got := within(tt.p, tt.dir); got != tt.want {
			t.Errorf("within(%q, %q) = %v, want %v", tt.p, tt.dir, got, tt.want)
		}
	}
}
