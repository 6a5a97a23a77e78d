package engine

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nimbus-serverless/nimbus"
)

// envOf returns the values of name in env, in order.
func envOf(env []string, name string) []string {
	var vals []string
	for _, kv := range env {
		if k, v, _ := strings.Cut(kv, "="); k == name {
			vals = append(vals, v)
		}
	}
	return vals
}

// TestInstanceSettings: the ephemeral storage sizes /tmp, and the logging
// config reaches the runtime as AWS_LAMBDA_LOG_FORMAT and
// AWS_LAMBDA_LOG_LEVEL, over a function's own variables of those names.
func TestInstanceSettings(t *testing.T) {
	h := newHarness(t, nil)
	h.ok(t, h.fn, `{}`)
	spec := h.sb.lastSpec()
	if spec.TmpMB != nimbus.DefaultEphemeralMB {
		t.Errorf("default /tmp = %d MB, want %d", spec.TmpMB, nimbus.DefaultEphemeralMB)
	}
	if got := envOf(spec.Env, "AWS_LAMBDA_LOG_FORMAT"); !slices.Equal(got, []string{"Text"}) {
		t.Errorf("AWS_LAMBDA_LOG_FORMAT = %q, want [Text]", got)
	}
	if got := envOf(spec.Env, "AWS_LAMBDA_LOG_LEVEL"); got != nil {
		t.Errorf("text logs: AWS_LAMBDA_LOG_LEVEL = %q, want unset", got)
	}

	fn := *h.fn
	fn.EphemeralStorageMB = 2048
	fn.Logging = &nimbus.LoggingConfig{LogFormat: nimbus.LogFormatJSON, ApplicationLogLevel: "DEBUG"}
	fn.Environment = map[string]string{"AWS_LAMBDA_LOG_FORMAT": "Text", "AWS_LAMBDA_LOG_LEVEL": "ERROR"}
	h.ok(t, &fn, `{}`)
	spec = h.sb.lastSpec()
	if spec.TmpMB != 2048 {
		t.Errorf("/tmp = %d MB, want the function's 2048", spec.TmpMB)
	}
	if got := envOf(spec.Env, "AWS_LAMBDA_LOG_FORMAT"); !slices.Equal(got, []string{"JSON"}) {
		t.Errorf("AWS_LAMBDA_LOG_FORMAT = %q, want [JSON]", got)
	}
	if got := envOf(spec.Env, "AWS_LAMBDA_LOG_LEVEL"); !slices.Equal(got, []string{"DEBUG"}) {
		t.Errorf("AWS_LAMBDA_LOG_LEVEL = %q, want [DEBUG]", got)
	}
	noLevel := fn
	noLevel.Environment = nil
	noLevel.Logging = &nimbus.LoggingConfig{LogFormat: nimbus.LogFormatJSON}
	h.ok(t, &noLevel, `{}`)
	if got := envOf(h.sb.lastSpec().Env, "AWS_LAMBDA_LOG_LEVEL"); !slices.Equal(got, []string{"INFO"}) {
		t.Errorf("JSON logs, no level: AWS_LAMBDA_LOG_LEVEL = %q, want [INFO]", got)
	}
}

// TestSettingsMakeNewInstances: a change of the ephemeral storage or of the
// logging config starts new instances; an equivalent spelling does not.
func TestSettingsMakeNewInstances(t *testing.T) {
	h := newHarness(t, nil)
	pid, _ := h.ok(t, h.fn, `{}`)
	same := *h.fn
	same.EphemeralStorageMB = nimbus.DefaultEphemeralMB
	same.Logging = &nimbus.LoggingConfig{LogFormat: nimbus.LogFormatText}
	if got, _ := h.ok(t, &same, `{}`); got != pid {
		t.Errorf("the default settings spelt out moved the function to a new instance")
	}
	for _, change := range []func(*nimbus.Function){
		func(f *nimbus.Function) { f.EphemeralStorageMB = 1024 },
		func(f *nimbus.Function) { f.Logging = &nimbus.LoggingConfig{LogFormat: nimbus.LogFormatJSON} },
		func(f *nimbus.Function) {
			f.Logging = &nimbus.LoggingConfig{LogFormat: nimbus.LogFormatJSON, SystemLogLevel: "WARN"}
		},
		func(f *nimbus.Function) {
			f.Logging = &nimbus.LoggingConfig{LogFormat: nimbus.LogFormatJSON, SystemLogLevel: "WARN", ApplicationLogLevel: "ERROR"}
		},
	} {
		fn := *h.fn
		change(&fn)
		got, _ := h.ok(t, &fn, `{}`)
		if got == pid {
			t.Errorf("%+v, %+v ran on the old instance", fn.EphemeralStorageMB, fn.Logging)
		}
		pid = got
	}
}

// platformRecord is a JSON system log record.
type platformRecord struct {
	Time   string         `json:"time"`
	Type   string         `json:"type"`
	Record map[string]any `json:"record"`
}

// platformRecords parses the JSON platform records of a log tail; other
// lines are returned as they are.
func platformRecords(t *testing.T, tail []byte) (recs []platformRecord, other []string) {
	t.Helper()
	for _, line := range strings.Split(strings.TrimSuffix(string(tail), "\n"), "\n") {
		if !strings.HasPrefix(line, `{"time"`) {
			other = append(other, line)
			continue
		}
		var r platformRecord
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("platform line %q: %v", line, err)
		}
		recs = append(recs, r)
	}
	return recs, other
}

func types(recs []platformRecord) []string {
	var out []string
	for _, r := range recs {
		out = append(out, r.Type)
	}
	return out
}

func TestJSONLogs(t *testing.T) {
	h := newHarness(t, nil)
	fn := *h.fn
	fn.Logging = &nimbus.LoggingConfig{LogFormat: nimbus.LogFormatJSON}
	res, err := h.e.Invoke(t.Context(), &fn, nimbus.Invocation{RequestID: "json-1", Payload: []byte(`{}`)})
	if err != nil || res.Err != nil {
		t.Fatal(err, res.Err)
	}
	recs, other := platformRecords(t, res.LogTail)
	if want := []string{"platform.start", "platform.runtimeDone", "platform.report"}; !slices.Equal(types(recs), want) {
		t.Fatalf("platform records %q, want %q:\n%s", types(recs), want, res.LogTail)
	}
	if len(other) != 1 || !strings.HasPrefix(other[0], "handling in pid") {
		t.Errorf("the function's own lines = %q, want its one line unchanged", other)
	}
	start, done, report := recs[0].Record, recs[1].Record, recs[2].Record
	if start["requestId"] != "json-1" || start["version"] != "$LATEST" ||
		start["functionArn"] != "arn:aws:lambda:us-east-1:000000000000:function:behave" {
		t.Errorf("platform.start record = %v", start)
	}
	if done["requestId"] != "json-1" || done["status"] != "success" {
		t.Errorf("platform.runtimeDone record = %v", done)
	}
	metrics, _ := report["metrics"].(map[string]any)
	for _, k := range []string{"durationMs", "billedDurationMs", "memorySizeMB", "maxMemoryUsedMB", "initDurationMs"} {
		if _, ok := metrics[k].(float64); !ok {
			t.Errorf("platform.report metrics lack %s: %v", k, metrics)
		}
	}
	if report["requestId"] != "json-1" || report["status"] != "success" || metrics["memorySizeMB"] != 128.0 {
		t.Errorf("platform.report record = %v", report)
	}
	if _, err := time.Parse(time.RFC3339, recs[0].Time); err != nil {
		t.Errorf("record time %q: %v", recs[0].Time, err)
	}
	// The node's log has the same lines.
	var stored []string
	for _, r := range h.e.cfg.Logs.Read("behave", -1) {
		stored = append(stored, r.Line)
	}
	if got := strings.Join(stored, "\n") + "\n"; got != string(res.LogTail) {
		t.Errorf("stored log:\n%s\nwant the tail:\n%s", got, res.LogTail)
	}
	// A warm invoke reports no init.
	res, _ = h.e.Invoke(t.Context(), &fn, nimbus.Invocation{RequestID: "json-2", Payload: []byte(`{}`)})
	recs, _ = platformRecords(t, res.LogTail)
	if m := recs[len(recs)-1].Record["metrics"].(map[string]any); m["initDurationMs"] != nil {
		t.Errorf("a warm invoke's report has initDurationMs: %v", m)
	}
}

// TestSystemLogLevel: WARN drops the records of successful invocations
// (INFO) and keeps those of failed ones.
func TestSystemLogLevel(t *testing.T) {
	h := newHarness(t, nil)
	fn := *h.fn
	fn.Timeout = 1
	fn.Logging = &nimbus.LoggingConfig{LogFormat: nimbus.LogFormatJSON, SystemLogLevel: "WARN"}
	res, err := h.invoke(t, &fn, `{}`)
	if err != nil || res.Err != nil {
		t.Fatal(err, res.Err)
	}
	if recs, other := platformRecords(t, res.LogTail); len(recs) != 0 || len(other) != 1 {
		t.Errorf("WARN: a successful invoke logged %q and %q, want the function's line only", types(recs), other)
	}
	res, err = h.invoke(t, &fn, `{"sleep_ms":3000}`)
	if err != nil {
		t.Fatal(err)
	}
	recs, other := platformRecords(t, res.LogTail)
	if want := []string{"platform.runtimeDone", "platform.report"}; !slices.Equal(types(recs), want) {
		t.Fatalf("WARN: a timed-out invoke logged %q, want %q", types(recs), want)
	}
	for _, r := range recs {
		if r.Record["status"] != "timeout" || r.Record["errorType"] != "Sandbox.Timedout" {
			t.Errorf("%s record = %v, want status timeout", r.Type, r.Record)
		}
	}
	for _, line := range other {
		if strings.Contains(line, "Task timed out") {
			t.Errorf("JSON logs have the text timeout line %q", line)
		}
	}

	debug := *h.fn
	debug.Logging = &nimbus.LoggingConfig{LogFormat: nimbus.LogFormatJSON, SystemLogLevel: "DEBUG"}
	res, _ = h.invoke(t, &debug, `{}`)
	if recs, _ := platformRecords(t, res.LogTail); len(recs) != 3 {
		t.Errorf("DEBUG: %q, want START, runtimeDone and REPORT records", types(recs))
	}
	// Levels are for JSON logs only.
	text := *h.fn
	text.Logging = &nimbus.LoggingConfig{SystemLogLevel: "WARN"}
	res, _ = h.invoke(t, &text, `{}`)
	if !strings.HasPrefix(string(res.LogTail), "START RequestId: ") || !strings.Contains(string(res.LogTail), "\nREPORT RequestId: ") {
		t.Errorf("text logs with a system level:\n%s\nwant the START and REPORT lines", res.LogTail)
	}
}

// TestInitFailureLogs: a failed init's tail ends with Lambda's INIT_REPORT
// line (text) or a platform.initReport record (JSON).
func TestInitFailureLogs(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "bootstrap"), []byte("#!/bin/sh\necho init failing >&2\nexit 2\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	const crashDigest = "3333333333333333333333333333333333333333333333333333333333333333"
	h := newHarness(t, func(c *Config) { c.Code = dirCache{dirs: map[string]string{crashDigest: dir}} })
	h.fn.CodeSHA256 = crashDigest

	res, err := h.invoke(t, h.fn, `{}`)
	if err != nil {
		t.Fatal(err)
	}
	if tail := string(res.LogTail); !strings.Contains(tail, "init failing\nINIT_REPORT Status: error Error Type: Runtime.ExitError\n{") {
		t.Errorf("text tail of a failed init:\n%s", tail)
	}

	fn := *h.fn
	fn.Logging = &nimbus.LoggingConfig{LogFormat: nimbus.LogFormatJSON}
	res, err = h.invoke(t, &fn, `{}`)
	if err != nil {
		t.Fatal(err)
	}
	recs, other := platformRecords(t, res.LogTail)
	if !slices.Equal(other, []string{"init failing"}) || len(recs) != 1 || recs[0].Type != "platform.initReport" {
		t.Fatalf("JSON tail of a failed init:\n%s", res.LogTail)
	}
	if r := recs[0].Record; r["status"] != "error" || r["errorType"] != "Runtime.ExitError" || r["phase"] != "init" {
		t.Errorf("platform.initReport record = %v", r)
	}
}
