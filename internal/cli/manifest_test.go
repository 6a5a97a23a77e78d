package cli

import (
	"gopkg.in/yaml.v3"

	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

const sampleManifest = `# two functions
functions:
  - name: hello
    runtime: python3.11
    handler: app.handler
    code: ./hello          # dir or zip, relative to the manifest's directory
    memory: 256
    timeout: 30s
    description: greets
    environment: {GREETING: hi}
  - name: worker
    runtime: provided.al2023
    code: /abs/worker.zip
    timeout: 120
    environment:
      PORT: 8080
      DEBUG: true
    httpConcurrency: 4
    network: none
`

func TestParseManifest(t *testing.T) {
	got, err := parseManifest([]byte(sampleManifest), "/proj")
	if err != nil {
		t.Fatalf("parseManifest: %v", err)
	}
	want := []functionSpec{
		{Name: "hello", Runtime: "python3.11", Handler: "app.handler", Code: "/proj/hello", MemoryMB: 256,
			Timeout: 30, Description: "greets", Environment: map[string]string{"GREETING": "hi"}},
		{Name: "worker", Runtime: "provided.al2023", Code: "/abs/worker.zip", Timeout: 120,
			Environment: map[string]string{"PORT": "8080", "DEBUG": "true"}, HTTPConcurrency: 4, Network: "none"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
}

func TestParseManifestImages(t *testing.T) {
	const doc = `functions:
  - name: lambda-image
    image: registry.example.com:5000/app:v1
    imageEntrypoint: [/app/bootstrap]
    imageCommand: [handler, --fast]
    imageWorkdir: /app
  - name: web
    image: registry.example.com:5000/web@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
    runtime: http
    imagePort: 8080
    memory: 512
`
	got, err := parseManifest([]byte(doc), "/proj")
	if err != nil {
		t.Fatalf("parseManifest: %v", err)
	}
	want := []functionSpec{
		{Name: "lambda-image", Image: "registry.example.com:5000/app:v1", ImageEntrypoint: []string{"/app/bootstrap"},
			ImageCommand: []string{"handler", "--fast"}, ImageWorkdir: "/app"},
		{Name: "web", Runtime: "http", MemoryMB: 512, ImagePort: 8080,
			Image: "registry.example.com:5000/web@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
}

func TestParseManifestErrors(t *testing.T) {
	const base = "functions:\n  - name: hello\n    runtime: python3.11\n    handler: app.handler\n    code: .\n"
	const imageBase = "functions:\n  - name: img\n    image: 127.0.0.1:5000/app:v1\n"
	tests := []struct {
		name, doc, want string
	}{
		{"empty", "", "the manifest is empty: list functions under functions:"},
		{"comment only", "# nothing\n", "the manifest is empty: list functions under functions:"},
		{"no functions", "functions: []\n", "the manifest lists no functions: list them under functions:"},
		{"null functions", "functions:\n", "the manifest lists no functions: list them under functions:"},
		{"unknown top-level field", "function:\n  - name: x\n", `line 1: unknown field "function"`},
		{"unknown field", base + "    memroy: 256\n", `line 6: unknown field "memroy"`},
		{"two unknown fields", base + "    memroy: 256\n    env: {}\n", "line 6: unknown field \"memroy\"\nline 7: unknown field \"env\""},
		{"not a mapping", "- name: x\n", "line 1: cannot unmarshal !!seq into a manifest (a mapping with a functions list)"},
		{"functions not a list", "functions: {name: x}\n", "line 1: cannot unmarshal !!map into a list of functions"},
		{"entry not a mapping", "functions: [hello]\n", "line 1: cannot unmarshal !!str `hello` into a function (a mapping of name, runtime, ...)"},
		{"bad memory", base + "    memory: 256MB\n", "line 6: cannot unmarshal !!str `256MB` into int"},
		{"bad timeout", base + "    timeout: 30 seconds\n", `line 6: invalid timeout "30 seconds": use seconds (30) or a duration (30s, 2m)`},
		{"timeout too long", base + "    timeout: 16m\n", "line 6: timeout must be 1s to 900s (15m), not 16m"},
		{"timeout a list", base + "    timeout: [1]\n", "line 6: timeout must be seconds (30) or a duration (30s, 2m)"},
		{"environment a list", base + "    environment: [A]\n", "line 6: cannot unmarshal !!seq into map[string]string"},
		{"syntax", "functions:\n  - name: [\n", "line 2: did not find expected node content"},
		{"tab", "functions:\n\t- name: x\n", "line 2: found character that cannot start any token"},
		{"alias", "functions: *nope\n", "unknown anchor 'nope' referenced"},
		{"two documents", base + "---\nfunctions: []\n", "line 6: a manifest is one YAML document, this is a second"},
		{"missing fields", "functions:\n  - name: hello\n",
			"line 2: functions[0] (\"hello\"): runtime is required (see `nimbus runtimes`)\n" +
				"line 2: functions[0] (\"hello\"): code is required: a directory or a .zip file"},
		{"bad name", strings.Replace(base, "name: hello", "name: hello world", 1),
			`line 2: functions[0] ("hello world"): name "hello world" is invalid: use 1 to 64 letters, digits, hyphens and underscores`},
		{"no name", strings.Replace(base, "name: hello", "name: ''", 1), "line 2: functions[0]: name is required"},
		{"duplicate", base + strings.TrimPrefix(base, "functions:\n"),
			`line 6: functions[1] ("hello"): name "hello" is taken by functions[0]`},
		{"range", base + "    memory: 64\n    httpConcurrency: 1001\n    environment: {X: 1}\n",
			"line 2: functions[0] (\"hello\"): memory must be 128 to 10240 MB, not 64\n" +
				"line 2: functions[0] (\"hello\"): environment variable name \"X\" is invalid: it must start with a letter and have at least two letters, digits or underscores\n" +
				"line 2: functions[0] (\"hello\"): httpConcurrency must be 1 to 1000, not 1001"},
		{"bad network", base + "    network: bridge\n", `line 2: functions[0] ("hello"): network must be egress, none or host, not "bridge"`},
		{"image fields without an image", base + "    imageCommand: [serve]\n    imagePort: 8080\n",
			`line 2: functions[0] ("hello"): imageCommand, imageEntrypoint, imageWorkdir and imagePort need an image`},
		{"image and code", imageBase + "    code: .\n", `line 2: functions[0] ("img"): give code or an image, not both`},
		{"image and handler", imageBase + "    handler: app.handler\n",
			`line 2: functions[0] ("img"): an image has no handler: set imageCommand (the image's CMD) instead`},
		{"image with a runtime", imageBase + "    runtime: python3.11\n",
			`line 2: functions[0] ("img"): runtime of an image is none (Lambda's Runtime API) or http (an HTTP server on port 9000), not python3.11`},
		{"image port without http", imageBase + "    imagePort: 8080\n",
			`line 2: functions[0] ("img"): imagePort is for an image served over HTTP (runtime http)`},
		{"image port out of range", imageBase + "    runtime: http\n    imagePort: 70000\n",
			`line 2: functions[0] ("img"): imagePort must be 1 to 65535, not 70000`},
		{"relative workdir", imageBase + "    imageWorkdir: app\n", `line 2: functions[0] ("img"): imageWorkdir "app" must be an absolute path`},
		{"image command not a list", imageBase + "    imageCommand: serve\n", "line 4: cannot unmarshal !!str `serve` into []string"},
		{"second entry", base + "  - name: bye\n    runtime: python3.11\n    code: .\n",
			`line 6: functions[1] ("bye"): handler is required for runtime python3.11 (for example app.handler)`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			specs, err := parseManifest([]byte(tc.doc), "/proj")
			if err == nil {
				t.Fatalf("got %+v, want error %q", specs, tc.want)
			}
			if err.Error() != tc.want {
				t.Errorf("got error\n%s\nwant\n%s", err, tc.want)
			}
		})
	}
}

func TestParseManifestRelativeDir(t *testing.T) {
	doc := "functions:\n  - {name: a, runtime: provided, code: ../shared/a.zip}\n  - {name: b, runtime: provided, code: b}\n"
	specs, err := parseManifest([]byte(doc), "deploy")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := []string{specs[0].Code, specs[1].Code}, []string{filepath.Join("shared", "a.zip"), filepath.Join("deploy", "b")}; !reflect.DeepEqual(got, want) {
		t.Errorf("code paths: got %q, want %q", got, want)
	}
}

// FuzzParseManifest: the parser never panics, and what it accepts is a
// non-empty list of valid functions with distinct names and code paths
// under the manifest's directory unless absolute.
func FuzzParseManifest(f *testing.F) {
	f.Add([]byte(sampleManifest))
	f.Add([]byte("functions: [{name: a, runtime: provided, code: x}]"))
	f.Add([]byte("functions:\n  - name: a\n    timeout: 1m\n  - name: a\n"))
	f.Add([]byte("a: &x [*x, *x]\nfunctions: *x\n"))
	f.Add([]byte("---\n---\n"))
	f.Add([]byte("functions:\n  - <<: {name: a}\n    runtime: go\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		specs, err := parseManifest(data, "/m")
		if err != nil {
			if err.Error() == "" {
				t.Errorf("empty error message")
			}
			return
		}
		if len(specs) == 0 {
			t.Fatalf("accepted a manifest with no functions")
		}
		seen := map[string]bool{}
		for _, s := range specs {
			if err := s.validate(); err != nil {
				t.Errorf("accepted an invalid function %+v: %v", s, err)
			}
			if seen[s.Name] {
				t.Errorf("accepted the name %q twice", s.Name)
			}
			seen[s.Name] = true
			if !filepath.IsAbs(s.Code) {
				t.Errorf("code path %q is not resolved against the manifest's directory", s.Code)
			}
		}
	})
}

func TestManifestIdleTimeout(t *testing.T) {
	for _, tt := range []struct {
		value   string
		want    int
		wantErr bool
	}{
		{"10m", 600, false},
		{"1s", 1, false},
		{"24h", 86400, false},
		{"0s", 0, true},
		{"25h", 0, true},
		{"1.5s", 0, true},
		{"soon", 0, true},
	} {
		var m struct {
			IdleTimeout manifestIdle `yaml:"idleTimeout"`
		}
		err := yaml.Unmarshal([]byte("idleTimeout: "+tt.value), &m)
		if (err != nil) != tt.wantErr || int(m.IdleTimeout) != tt.want {
			t.Errorf("idleTimeout %s = %d, %v; want %d (error %v)", tt.value, m.IdleTimeout, err, tt.want, tt.wantErr)
		}
	}
}
