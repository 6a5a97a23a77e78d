package cli

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestParseTimeout(t *testing.T) {
	tests := []struct {
		in      string
		want    int
		wantErr string
	}{
		{"30", 30, ""},
		{"1", 1, ""},
		{"900", 900, ""},
		{" 45 ", 45, ""},
		{"30s", 30, ""},
		{"2m", 120, ""},
		{"1m30s", 90, ""},
		{"15m", 900, ""},
		{"0", 0, "timeout must be 1s to 900s (15m), not 0s"},
		{"-5", 0, "timeout must be 1s to 900s (15m), not -5s"},
		{"901", 0, "timeout must be 1s to 900s (15m), not 901s"},
		{"15m1s", 0, "timeout must be 1s to 900s (15m), not 15m1s"},
		{"500ms", 0, "timeout 500ms is not a whole number of seconds"},
		{"0s", 0, "timeout must be 1s to 900s (15m), not 0s"},
		{"", 0, `invalid timeout "": use seconds (30) or a duration (30s, 2m)`},
		{"30 s", 0, `invalid timeout "30 s": use seconds (30) or a duration (30s, 2m)`},
		{"1h", 0, "timeout must be 1s to 900s (15m), not 1h"},
		{"99999999999999999999", 0, `invalid timeout "99999999999999999999": use seconds (30) or a duration (30s, 2m)`},
	}
	for _, tc := range tests {
		got, err := parseTimeout(tc.in)
		if tc.wantErr != "" {
			if err == nil || err.Error() != tc.wantErr {
				t.Errorf("parseTimeout(%q): got %d, %v; want error %q", tc.in, got, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("parseTimeout(%q): got %d, %v; want %d", tc.in, got, err, tc.want)
		}
	}
}

func TestParseEnv(t *testing.T) {
	tests := []struct {
		in      []string
		want    map[string]string
		wantErr string
	}{
		{nil, nil, ""},
		{[]string{"AB=1", "C_D=x=y", "EMPTY="}, map[string]string{"AB": "1", "C_D": "x=y", "EMPTY": ""}, ""},
		{[]string{"AB"}, nil, `invalid --env "AB": want KEY=VALUE`},
		{[]string{"=x"}, nil, `invalid --env "=x": environment variable name "" is invalid`},
		{[]string{"A=x"}, nil, `invalid --env "A=x": environment variable name "A" is invalid`},
		{[]string{"A-B=x"}, nil, `invalid --env "A-B=x": environment variable name "A-B" is invalid`},
		{[]string{"AB=1", "AB=2"}, nil, "invalid --env: AB is given twice"},
	}
	for _, tc := range tests {
		got, err := parseEnv(tc.in)
		if tc.wantErr != "" {
			if err == nil || !strings.HasPrefix(err.Error(), tc.wantErr) {
				t.Errorf("parseEnv(%q): got %v, %v; want error %q", tc.in, got, err, tc.wantErr)
			}
			continue
		}
		if err != nil || !mapsEqual(got, tc.want) || (got == nil) != (tc.want == nil) {
			t.Errorf("parseEnv(%q): got %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
}

func TestSpecValidate(t *testing.T) {
	ok := functionSpec{Name: "hello", Runtime: "python3.11", Handler: "app.handler", Code: "."}
	tests := []struct {
		name   string
		modify func(*functionSpec)
		want   string
	}{
		{"ok", func(*functionSpec) {}, ""},
		{"provided needs no handler", func(s *functionSpec) { s.Runtime, s.Handler = "provided.al2023", "" }, ""},
		{"http needs no handler", func(s *functionSpec) { s.Runtime, s.Handler = "http", "" }, ""},
		{"limits", func(s *functionSpec) { s.MemoryMB, s.Timeout, s.HTTPConcurrency = 10240, 900, 1000 }, ""},
		{"no name", func(s *functionSpec) { s.Name = "" }, "name is required"},
		{"long name", func(s *functionSpec) { s.Name = strings.Repeat("a", 65) }, `name "` + strings.Repeat("a", 65) + `" is invalid: use 1 to 64 letters, digits, hyphens and underscores`},
		{"arn", func(s *functionSpec) { s.Name = "arn:aws:lambda:us-east-1:000000000000:function:x" }, `name "arn:aws:lambda:us-east-1:000000000000:function:x" is invalid: use 1 to 64 letters, digits, hyphens and underscores`},
		{"no runtime", func(s *functionSpec) { s.Runtime = "" }, "runtime is required (see `nimbus runtimes`)"},
		{"runtime space", func(s *functionSpec) { s.Runtime = "python 3" }, `runtime "python 3" must not contain spaces or control characters`},
		{"no handler", func(s *functionSpec) { s.Handler = "" }, "handler is required for runtime python3.11 (for example app.handler)"},
		{"handler space", func(s *functionSpec) { s.Handler = "app handler" }, `handler "app handler" must be 1 to 128 characters without spaces`},
		{"no code", func(s *functionSpec) { s.Code = "" }, "code is required: a directory or a .zip file"},
		{"memory low", func(s *functionSpec) { s.MemoryMB = 127 }, "memory must be 128 to 10240 MB, not 127"},
		{"memory high", func(s *functionSpec) { s.MemoryMB = 10241 }, "memory must be 128 to 10240 MB, not 10241"},
		{"timeout", func(s *functionSpec) { s.Timeout = 901 }, "timeout must be 1s to 900s, not 901s"},
		{"description", func(s *functionSpec) { s.Description = strings.Repeat("é", 257) }, "description is 257 characters long, more than 256"},
		{"env", func(s *functionSpec) { s.Environment = map[string]string{"OK": "1", "9X": "2"} }, `environment variable name "9X" is invalid: it must start with a letter and have at least two letters, digits or underscores`},
		{"concurrency", func(s *functionSpec) { s.HTTPConcurrency = -1 }, "httpConcurrency must be 1 to 1000, not -1"},
		{"several", func(s *functionSpec) { s.Name, s.Code = "", "" }, "name is required\ncode is required: a directory or a .zip file"},
	}
	for _, tc := range tests {
		s := ok
		tc.modify(&s)
		got := ""
		if err := s.validate(); err != nil {
			got = err.Error()
		}
		if got != tc.want {
			t.Errorf("%s: got %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestPackageCode(t *testing.T) {
	dir := writeApp(t)
	if err := os.Mkdir(filepath.Join(dir, ".git"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, ".git", "HEAD"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	zipped, err := packageCode(dir)
	if err != nil {
		t.Fatalf("package a directory: %v", err)
	}
	if got := zipEntries(t, zipped); !slices.Equal(got, []string{"app.py"}) {
		t.Errorf("entries: got %q, want [app.py]", got)
	}
	zipPath := filepath.Join(t.TempDir(), "CODE.ZIP")
	if err := os.WriteFile(zipPath, zipped, 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := packageCode(zipPath)
	if err != nil || !bytes.Equal(got, zipped) {
		t.Errorf("package a .zip file: got %d bytes, %v; want the file as it is", len(got), err)
	}

	tmp := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(tmp, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	notZip := write("fake.zip", "hello")
	text := write("app.py", appPy)
	emptyDir := filepath.Join(tmp, "empty")
	if err := os.Mkdir(emptyDir, 0o755); err != nil {
		t.Fatal(err)
	}
	bad := []struct{ path, want string }{
		{notZip, "code " + notZip + " is not a zip archive"},
		{text, "code " + text + " must be a directory or a .zip file"},
		{emptyDir, "code directory " + emptyDir + " is empty"},
		{filepath.Join(tmp, "none"), "code: stat " + filepath.Join(tmp, "none") + ": no such file or directory"},
	}
	for _, tc := range bad {
		if _, err := packageCode(tc.path); err == nil || err.Error() != tc.want {
			t.Errorf("packageCode(%s): got %v, want %q", tc.path, err, tc.want)
		}
	}
}

func TestHumanBytes(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 1536: "1.5 KiB", 5 << 20: "5.0 MiB", 3 << 30: "3.0 GiB"} {
		if got := humanBytes(n); got != want {
			t.Errorf("humanBytes(%d): got %q, want %q", n, got, want)
		}
	}
}
