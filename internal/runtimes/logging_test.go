package runtimes

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"

	"github.com/nimbus-serverless/nimbus/internal/runtimeapi"
)

// Lambda's timestamps: ISO 8601 in UTC with milliseconds.
const isoMillis = `\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z`

// outputLines returns the lines an instance wrote.
func outputLines(in *instance) []string {
	return strings.Split(strings.TrimSuffix(in.out.String(), "\n"), "\n")
}

// checkLines checks that out has a line matching each of want (regular
// expressions, in order, other lines between them allowed) and no line
// containing any of absent.
func checkLines(t *testing.T, in *instance, want []string, absent []string) {
	t.Helper()
	lines := outputLines(in)
	i := 0
	for _, w := range want {
		re := regexp.MustCompile("^" + w + "$")
		for i < len(lines) && !re.MatchString(lines[i]) {
			i++
		}
		if i == len(lines) {
			t.Errorf("no line matching %q (in order) in output:\n%s", w, strings.Join(lines, "\n"))
			return
		}
		i++
	}
	for _, line := range lines {
		for _, a := range absent {
			if strings.Contains(line, a) {
				t.Errorf("output line %q contains %q, which must not be logged", line, a)
			}
		}
	}
}

// jsonRecords returns the output lines that are JSON objects, decoded.
func jsonRecords(t *testing.T, in *instance) []map[string]any {
	t.Helper()
	var recs []map[string]any
	for _, line := range outputLines(in) {
		var rec map[string]any
		if strings.HasPrefix(line, "{") {
			if err := json.Unmarshal([]byte(line), &rec); err != nil {
				t.Fatalf("output line %q is not JSON: %v", line, err)
			}
			recs = append(recs, rec)
		}
	}
	return recs
}

// findRecord returns the record whose field key is value.
func findRecord(t *testing.T, recs []map[string]any, key string, value any) map[string]any {
	t.Helper()
	for _, r := range recs {
		if r[key] == value {
			return r
		}
	}
	t.Fatalf("no record with %s = %v among %v", key, value, recs)
	return nil
}

const nodeLogging = `console.log('at init');
exports.handler = async (event) => {
  console.log('hello %s', 'world');
  console.info('an info');
  console.warn('a warning');
  console.error('an error');
  console.debug('a debug');
  console.trace('a trace');
  console.fatal('a fatal');
  console.log('multi\nline');
  console.error('failed:', new Error('inner'));
  console.error(new RangeError('alone'));
  process.stdout.write('raw plain\n');
  process.stdout.write('{"level":"debug","msg":"raw debug"}\n');
  process.stdout.write('{"level":"Error","msg":"raw error"}\n');
  process.stderr.write('raw stderr\n');
  if (event.fail) {
    throw new TypeError('bad input');
  }
  return 'ok';
};
`

func TestNodeLogsText(t *testing.T) {
	code := writeFiles(t, map[string]string{"index.js": nodeLogging})
	in := start(t, runtimeOf(t, KindNode), code, "index.handler", nil)
	res := in.invoke(t, runtimeapi.Invocation{RequestID: "req-1", Payload: []byte(`{"fail":true}`)})
	checkError(t, res.Err, errorCase{typ: "TypeError", message: "bad input"})
	in.waitOutput(t, "Invoke Error")
	rec := func(level, msg string) string { return isoMillis + "\treq-1\t" + level + "\t" + msg }
	checkLines(t, in, []string{
		isoMillis + "\tundefined\tINFO\tat init",
		rec("INFO", "hello world"),
		rec("INFO", "an info"),
		rec("WARN", "a warning"),
		rec("ERROR", "an error"),
		rec("DEBUG", "a debug"),
		rec("TRACE", "a trace"),
		rec("FATAL", "a fatal"),
		rec("INFO", "multi\rline"),
		rec("ERROR", `failed: Error: inner\r    at .*`),
		rec("ERROR", `RangeError: alone\r    at .*`),
		"raw plain",
		`\{"level":"debug","msg":"raw debug"\}`,
		`\{"level":"Error","msg":"raw error"\}`,
		"raw stderr",
		rec("ERROR", `Invoke Error \t\{"errorType":"TypeError","errorMessage":"bad input","stack":\["TypeError: bad input","    at exports.handler \(/var/task/index.js:.*`),
	}, nil)
}

func TestNodeLogsJSON(t *testing.T) {
	code := writeFiles(t, map[string]string{"index.js": nodeLogging})
	tests := []struct {
		level   string
		present []string // messages logged
		absent  []string // messages filtered out
	}{
		{"", []string{"at init", "hello world", "a trace", "a fatal", "raw plain", "raw debug"}, nil},
		{"TRACE", []string{"a trace", "a debug", "hello world", "raw plain", "raw debug", "raw error"}, nil},
		{"INFO", []string{"hello world", "an info", "a warning", "raw plain", "raw stderr", "raw error"}, []string{"a debug", "a trace", "raw debug"}},
		{"WARN", []string{"a warning", "an error", "a fatal", "raw error"}, []string{"at init", "hello world", "an info", "a debug", "raw plain", "raw stderr", "raw debug"}},
		{"FATAL", []string{"a fatal"}, []string{"a warning", "an error", "raw error", "Invoke Error", "bad input"}},
	}
	for _, tt := range tests {
		t.Run("level "+tt.level, func(t *testing.T) {
			env := map[string]string{"AWS_LAMBDA_LOG_FORMAT": "JSON"}
			if tt.level != "" {
				env["AWS_LAMBDA_LOG_LEVEL"] = tt.level
			}
			in := start(t, runtimeOf(t, KindNode), code, "index.handler", env)
			res := in.invoke(t, runtimeapi.Invocation{RequestID: "req-2", Payload: []byte(`{"fail":true}`)})
			checkError(t, res.Err, errorCase{typ: "TypeError", message: "bad input"})
			in.waitOutput(t, "a fatal")
			if tt.level != "FATAL" {
				in.waitOutput(t, "bad input")
			}
			out := in.out.String()
			for _, p := range tt.present {
				if !strings.Contains(out, p) {
					t.Errorf("%q not logged; output:\n%s", p, out)
				}
			}
			for _, a := range tt.absent {
				if strings.Contains(out, a) {
					t.Errorf("%q logged, want it filtered out; output:\n%s", a, out)
				}
			}
			recs := jsonRecords(t, in)
			for _, line := range outputLines(in) {
				if !strings.HasPrefix(line, "{") && line != "raw plain" && line != "raw stderr" {
					t.Errorf("output line %q is neither a JSON record nor the function's raw output", line)
				}
			}
			fatal := findRecord(t, recs, "message", "a fatal")
			if ts, _ := fatal["timestamp"].(string); !regexp.MustCompile("^"+isoMillis+"$").MatchString(ts) ||
				fatal["level"] != "FATAL" || fatal["requestId"] != "req-2" || len(fatal) != 4 {
				t.Errorf("record = %v, want timestamp, level FATAL, requestId req-2 and message", fatal)
			}
			if tt.level == "FATAL" {
				return
			}
			failed := findRecord(t, recs, "errorMessage", "inner")
			if m, _ := failed["message"].(string); failed["level"] != "ERROR" || failed["errorType"] != "Error" ||
				!strings.HasPrefix(m, "failed: Error: inner\n    at ") || len(failed["stackTrace"].([]any)) < 2 {
				t.Errorf("record of console.error('failed:', err) = %v", failed)
			}
			var alone, invoke map[string]any
			for _, r := range recs {
				if m, ok := r["message"].(map[string]any); ok {
					switch m["errorMessage"] {
					case "alone":
						alone = m
					case "bad input":
						invoke = m
					}
				}
			}
			if alone == nil || alone["errorType"] != "RangeError" || len(alone["stackTrace"].([]any)) < 2 {
				t.Errorf("record of console.error(err): message %v, want the error as an object", alone)
			}
			if invoke == nil || invoke["errorType"] != "TypeError" {
				t.Errorf("record of the invocation's error: message %v, want the error as an object", invoke)
			}
		})
	}
}

func TestNodeLogsInitError(t *testing.T) {
	code := writeFiles(t, map[string]string{"index.js": "console.log('loading');\nthrow new Error('no config');\n"})
	in := start(t, runtimeOf(t, KindNode), code, "index.handler", nil)
	checkError(t, in.initError(t), errorCase{typ: "Error", message: "no config"})
	checkLines(t, in, []string{
		isoMillis + "\tundefined\tINFO\tloading",
		isoMillis + "\tundefined\tERROR\tInit Error \t" + `\{"errorType":"Error","errorMessage":"no config","stack":\["Error: no config","    at .*/var/task/index.js.*`,
	}, nil)
}

const pythonLogging = `import logging
print("print at init")
logging.getLogger().warning("warning at init")
logger = logging.getLogger()

def handler(event, context):
    print("plain print")
    print('{"level": "debug", "msg": "printed debug"}')
    print('{"level": "error", "msg": "printed error"}')
    print("multi\nprint")
    logger.debug("a debug")
    logger.info("an info")
    logger.warning("multi\nline")
    logging.getLogger("app").error("error %s", "formatted", extra={"orderId": 7})
    logger.critical("a critical")
    try:
        1 / 0
    except ZeroDivisionError:
        logger.exception("caught")
    if event.get("fail"):
        raise KeyError("k")
    return "ok"
`

func TestPythonLogsText(t *testing.T) {
	code := writeFiles(t, map[string]string{"app.py": pythonLogging})
	in := start(t, runtimeOf(t, KindPython), code, "app.handler", nil)
	res := in.invoke(t, runtimeapi.Invocation{RequestID: "req-3", Payload: []byte(`{"fail":true}`)})
	checkError(t, res.Err, errorCase{typ: "KeyError", message: "'k'"})
	in.waitOutput(t, "[ERROR] KeyError")
	rec := func(level, msg string) string { return `\[` + level + `\]\t` + isoMillis + "\treq-3\t" + msg }
	nbsp := "\u00a0"
	// print() is written as it is; the root logger's level is Python's
	// default (WARNING) without AWS_LAMBDA_LOG_LEVEL.
	checkLines(t, in, []string{
		"print at init",
		`\[WARNING\]\t` + isoMillis + "\t\twarning at init",
		"plain print",
		`\{"level": "debug", "msg": "printed debug"\}`,
		"multi", "print",
		rec("WARNING", "multi\rline"),
		rec("ERROR", "error formatted"),
		rec("CRITICAL", "a critical"),
		rec("ERROR", `caught\rTraceback \(most recent call last\):\r  File "/var/task/app.py", line 17, in handler\r    1 / 0\r.*ZeroDivisionError: division by zero`),
		`\[ERROR\] KeyError: 'k'\rTraceback \(most recent call last\):\r` + nbsp + nbsp + `File "/var/task/app.py", line 21, in handler\r` + nbsp + nbsp + nbsp + nbsp + `raise KeyError\("k"\)`,
	}, []string{"a debug", "an info"})
}

func TestPythonLogsJSON(t *testing.T) {
	code := writeFiles(t, map[string]string{"app.py": pythonLogging})
	tests := []struct {
		level   string
		present []string
		absent  []string
	}{
		{"", []string{"plain print", "printed debug", "warning at init", "a critical"}, []string{"a debug", "an info"}},
		{"TRACE", []string{"a debug", "an info", "plain print", "printed debug"}, nil},
		{"DEBUG", []string{"a debug", "an info", "plain print", "printed debug"}, nil},
		{"INFO", []string{"an info", "plain print", "printed error", "multi"}, []string{"a debug", "printed debug"}},
		{"WARN", []string{"multi\\nline", "printed error", "a critical", "caught"}, []string{"an info", "plain print", "print at init", "printed debug"}},
		{"ERROR", []string{"printed error", "error formatted", "caught"}, []string{"multi", "plain print", "warning at init"}},
		{"FATAL", []string{"a critical"}, []string{"printed error", "error formatted", "caught"}},
	}
	for _, tt := range tests {
		t.Run("level "+tt.level, func(t *testing.T) {
			env := map[string]string{"AWS_LAMBDA_LOG_FORMAT": "JSON"}
			if tt.level != "" {
				env["AWS_LAMBDA_LOG_LEVEL"] = tt.level
			}
			in := start(t, runtimeOf(t, KindPython), code, "app.handler", env)
			res := in.invoke(t, runtimeapi.Invocation{RequestID: "req-4", Payload: []byte(`{"fail":true}`)})
			checkError(t, res.Err, errorCase{typ: "KeyError", message: "'k'"})
			in.waitOutput(t, `"errorType": "KeyError"`)
			out := in.out.String()
			for _, p := range tt.present {
				if !strings.Contains(out, p) {
					t.Errorf("%q not logged; output:\n%s", p, out)
				}
			}
			for _, a := range tt.absent {
				if strings.Contains(out, a) {
					t.Errorf("%q logged, want it filtered out; output:\n%s", a, out)
				}
			}
			recs := jsonRecords(t, in)
			crit := findRecord(t, recs, "message", "a critical")
			if ts, _ := crit["timestamp"].(string); !regexp.MustCompile("^"+isoMillis+"$").MatchString(ts) ||
				crit["level"] != "CRITICAL" || crit["logger"] != "root" || crit["requestId"] != "req-4" || len(crit) != 5 {
				t.Errorf("record = %v, want timestamp, level CRITICAL, logger root, requestId req-4 and message", crit)
			}
			// The invocation's error, as Lambda's runtime logs it.
			failed := findRecord(t, recs, "errorType", "KeyError")
			if ts, _ := failed["timestamp"].(string); !regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d$`).MatchString(ts) ||
				failed["level"] != "ERROR" || failed["errorMessage"] != "'k'" || failed["requestId"] != "req-4" ||
				!strings.Contains(failed["stackTrace"].([]any)[0].(string), `"/var/task/app.py"`) {
				t.Errorf("error record = %v", failed)
			}
			if tt.level == "FATAL" {
				return
			}
			extra := findRecord(t, recs, "message", "error formatted")
			if extra["orderId"] != 7.0 || extra["logger"] != "app" || extra["level"] != "ERROR" {
				t.Errorf("record with extra = %v, want orderId 7, logger app, level ERROR", extra)
			}
			caught := findRecord(t, recs, "message", "caught")
			if caught["errorType"] != "ZeroDivisionError" || caught["errorMessage"] != "division by zero" ||
				caught["location"] != "/var/task/app.py:handler:19" || len(caught["stackTrace"].([]any)) != 1 {
				t.Errorf("record of logger.exception = %v", caught)
			}
		})
	}
}
