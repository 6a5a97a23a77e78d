package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nimbus-serverless/nimbus/internal/node/nodetest"
)

// deployedSettings runs `get -o json` and returns the settings it shows.
func deployedSettings(t *testing.T, endpoint, name string) functionView {
	t.Helper()
	r := runCmd(t, endpoint, "", "get", name, "-o", "json")
	if r.err != nil {
		t.Fatal(OneLine(r.err))
	}
	var v functionView
	if err := json.Unmarshal([]byte(r.stdout), &v); err != nil {
		t.Fatalf("get -o json: %v: %s", err, r.stdout)
	}
	return v
}

// settingsLine summarizes a view's settings for comparison.
func settingsLine(v functionView) string {
	var b strings.Builder
	if v.EphemeralStorage != nil {
		b.WriteString("tmp=" + itoa(int(v.EphemeralStorage.Size)))
	}
	if v.TracingConfig != nil {
		b.WriteString(" tracing=" + v.TracingConfig.Mode)
	}
	if l := v.LoggingConfig; l != nil {
		b.WriteString(" logs=" + l.LogFormat + "/" + l.ApplicationLogLevel + "/" + l.SystemLogLevel + " group=" + l.LogGroup)
	}
	if d := v.DeadLetterConfig; d != nil {
		b.WriteString(" dlq=" + d.TargetArn)
	}
	return b.String()
}

// TestDeploySettings: deploy's flags and a manifest's fields set the
// function's /tmp, tracing, logging and dead-letter target; a deploy that
// leaves them out puts them back to their defaults.
func TestDeploySettings(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a node")
	}
	n := nodetest.Start(t, nil)
	endpoint := nodetest.Endpoint(n)
	app := writeApp(t)
	deploy := func(args ...string) result {
		t.Helper()
		r := runCmd(t, endpoint, "", append([]string{"deploy", "cfg", "--runtime", "python3.11", "--handler", "app.handler", "--code", app}, args...)...)
		if r.err != nil {
			t.Fatalf("deploy %v: %s", args, OneLine(r.err))
		}
		return r
	}
	const defaults = "tmp=512 tracing=PassThrough logs=Text// group=/aws/lambda/cfg"
	r := deploy("--ephemeral-storage", "2048", "--tracing", "active", "--log-format", "json", "--log-level", "debug", "--dead-letter", "nats:cfg.dead")
	const set = "tmp=2048 tracing=Active logs=JSON/DEBUG/INFO group=/aws/lambda/cfg dlq=nats:cfg.dead"
	if got := settingsLine(deployedSettings(t, endpoint, "cfg")); got != set {
		t.Errorf("after create: %s\nwant %s", got, set)
	}
	for _, want := range []string{"Ephemeral storage: 2048MB\n", "Tracing:           Active\n", "Logs:              JSON (application DEBUG, system INFO)\n", "Dead letters:      nats:cfg.dead\n"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("deploy output lacks %q:\n%s", want, r.stdout)
		}
	}
	deploy()
	if got := settingsLine(deployedSettings(t, endpoint, "cfg")); got != defaults {
		t.Errorf("after a deploy without the flags: %s\nwant %s", got, defaults)
	}
	deploy("--ephemeral-storage", "10240", "--log-format", "JSON", "--system-log-level", "warn")
	if got, want := settingsLine(deployedSettings(t, endpoint, "cfg")), "tmp=10240 tracing=PassThrough logs=JSON/INFO/WARN group=/aws/lambda/cfg"; got != want {
		t.Errorf("after an update: %s\nwant %s", got, want)
	}

	doc := "functions:\n  - name: cfg\n    runtime: python3.11\n    handler: app.handler\n    code: " + app + "\n" +
		"    ephemeralStorage: 1024\n    tracing: Active\n    logging: {format: json, applicationLogLevel: error}\n    deadLetter: https://hooks.example/dlq\n"
	path := filepath.Join(t.TempDir(), "nimbus.yaml")
	if err := os.WriteFile(path, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	if r := runCmd(t, endpoint, "", "deploy", "-f", path); r.err != nil {
		t.Fatal(OneLine(r.err))
	}
	if got, want := settingsLine(deployedSettings(t, endpoint, "cfg")), "tmp=1024 tracing=Active logs=JSON/ERROR/INFO group=/aws/lambda/cfg dlq=https://hooks.example/dlq"; got != want {
		t.Errorf("after deploy -f: %s\nwant %s", got, want)
	}

	// The node refuses what it does not support, in one line.
	r = runCmd(t, endpoint, "", "deploy", "cfg", "--runtime", "python3.11", "--handler", "app.handler", "--code", app,
		"--dead-letter", "arn:aws:sqs:us-east-1:000000000000:dlq")
	if got := OneLine(r.err); !strings.Contains(got, "InvalidParameterValueException: DeadLetterConfig.TargetArn arn:aws:sqs:us-east-1:000000000000:dlq is not supported: Nimbus has no SQS") {
		t.Errorf("SQS dead-letter target: %q", got)
	}
}

// TestDeploySettingsBadInput: bad settings are refused before anything is
// sent, naming the flag or the manifest line.
func TestDeploySettingsBadInput(t *testing.T) {
	f := newFake(t)
	app := writeApp(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--ephemeral-storage", "100"}, "ephemeralStorage must be 512 to 10240 MB, not 100"},
		{[]string{"--ephemeral-storage", "0"}, "ephemeral-storage must be 512 to 10240 MB, not 0"},
		{[]string{"--tracing", "sometimes"}, `tracing must be Active or PassThrough, not "sometimes"`},
		{[]string{"--log-format", "xml"}, `logging format must be JSON or Text, not "xml"`},
		{[]string{"--log-level", "debug"}, "log levels need logging format JSON (Lambda filters by level only in JSON logs)"},
		{[]string{"--log-format", "json", "--log-level", "loud"}, `logging applicationLogLevel must be one of TRACE, DEBUG, INFO, WARN, ERROR, FATAL, not "LOUD"`},
		{[]string{"--log-format", "json", "--system-log-level", "error"}, `logging systemLogLevel must be one of DEBUG, INFO, WARN, not "ERROR"`},
	} {
		r := runCmd(t, f.URL, "", append([]string{"deploy", "x", "--runtime", "python3.11", "--handler", "app.handler", "--code", app}, tc.args...)...)
		if got := OneLine(r.err); got != tc.want {
			t.Errorf("deploy %v: %q, want %q", tc.args, got, tc.want)
		}
	}
	doc := "functions:\n  - name: x\n    runtime: python3.11\n    handler: app.handler\n    code: " + app + "\n" +
		"    ephemeralStorage: 20000\n    logging: {format: text, systemLogLevel: WARN}\n    tracing: on\n"
	_, err := parseManifest([]byte(doc), "/")
	want := `line 2: functions[0] ("x"): ephemeralStorage must be 512 to 10240 MB, not 20000` + "\n" +
		`line 2: functions[0] ("x"): tracing must be Active or PassThrough, not "on"` + "\n" +
		`line 2: functions[0] ("x"): log levels need logging format JSON (Lambda filters by level only in JSON logs)`
	if err == nil || err.Error() != want {
		t.Errorf("manifest: got\n%v\nwant\n%s", err, want)
	}
	if _, err := parseManifest([]byte(strings.Replace(doc, "logging: {format: text, systemLogLevel: WARN}", "logging: json", 1)), "/"); err == nil ||
		!strings.Contains(err.Error(), "logging settings (a mapping of format, applicationLogLevel, systemLogLevel)") {
		t.Errorf("logging as a string: %v", err)
	}
	if n := len(f.requests()); n != 0 {
		t.Errorf("bad settings sent %d requests", n)
	}
}
