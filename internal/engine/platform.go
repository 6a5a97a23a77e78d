package engine

import (
	"encoding/json"
	"strconv"
	"strings"
	"time"

	"github.com/nimbus-serverless/nimbus"
)

// System log levels (LoggingConfig.SystemLogLevel), least detail last.
const (
	levelDebug = iota
	levelInfo
	levelWarn
)

// timeFormat is the time of the platform's lines and records.
const timeFormat = "2006-01-02T15:04:05.000Z"

// Invocation statuses of the JSON platform records.
const (
	statusSuccess = "success"
	statusError   = "error"
	statusTimeout = "timeout"
)

// sysLog writes the platform's own lines of a function's log (START, END,
// REPORT, the timeout and init failure messages): Lambda's text lines, or,
// with LogFormat JSON, Lambda's JSON records of its system logs
// (platform.start, platform.runtimeDone, platform.report,
// platform.initReport), kept from SystemLogLevel up. A record of a
// successful invocation or start is at INFO, one of a failure (an error or
// timeout) at WARN. The function's own lines are not touched here.
type sysLog struct {
	json    bool
	level   int // the least level written (JSON only)
	arn     string
	version string // $LATEST or a version's number
}

func newSysLog(fn *nimbus.Function, arn string) sysLog {
	s := sysLog{json: fn.JSONLogs(), level: levelInfo, arn: arn, version: fn.Qualifier()}
	if fn.Logging != nil {
		switch strings.ToUpper(fn.Logging.SystemLogLevel) {
		case "DEBUG":
			s.level = levelDebug
		case "WARN":
			s.level = levelWarn
		}
	}
	return s
}

// invokeReport is what the END and REPORT lines say of an invocation.
type invokeReport struct {
	status    string // statusSuccess, statusError or statusTimeout
	errorType string
	duration  time.Duration
	memoryMB  int
	maxUsedMB int64
	init      time.Duration // a cold start's init; 0 on a warm one
}

// reportOf describes an invocation's outcome.
func reportOf(fe *nimbus.FunctionError, d time.Duration) invokeReport {
	r := invokeReport{status: statusSuccess, duration: d}
	if fe != nil {
		r.status, r.errorType = statusError, fe.Type
		if fe.Type == "Sandbox.Timedout" {
			r.status = statusTimeout
		}
	}
	return r
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// billed is an invocation's billed duration in milliseconds: its run and,
// on a cold start, its init (as Lambda bills every runtime's init since
// August 2025), rounded up to the millisecond.
func (r invokeReport) billed() int64 { return billedMS(r.duration + r.init) }

// billedMS is d in started milliseconds (at least 1).
func billedMS(d time.Duration) int64 {
	billed := int64(d / time.Millisecond)
	if d%time.Millisecond != 0 || billed == 0 {
		billed++
	}
	return billed
}

// record is a JSON platform record, or "" if its level is filtered out.
func (s sysLog) record(level int, typ string, rec any) string {
	if level < s.level {
		return ""
	}
	b, _ := json.Marshal(struct { // plain structs: no error
		Time   string `json:"time"`
		Type   string `json:"type"`
		Record any    `json:"record"`
	}{time.Now().UTC().Format(timeFormat), typ, rec})
	return string(b)
}

// levelOf is the level of a record of an outcome.
func levelOf(status string) int {
	if status == statusSuccess {
		return levelInfo
	}
	return levelWarn
}

// start is the START line ("" if filtered out).
func (s sysLog) start(requestID string) string {
	if !s.json {
		return "START RequestId: " + requestID + " Version: " + s.version
	}
	return s.record(levelInfo, "platform.start", struct {
		RequestID   string `json:"requestId"`
		FunctionARN string `json:"functionArn"`
		Version     string `json:"version"`
	}{requestID, s.arn, s.version})
}

// timedOut is the line of a request that ran out of time; JSON records say
// it in the status of platform.runtimeDone and platform.report instead.
func (s sysLog) timedOut(requestID string, timeout int) string {
	if s.json {
		return ""
	}
	return time.Now().UTC().Format(timeFormat) + " " + requestID +
		" Task timed out after " + strconv.Itoa(timeout) + ".00 seconds"
}

// end is the END line.
func (s sysLog) end(requestID string, r invokeReport) string {
	if !s.json {
		return "END RequestId: " + requestID
	}
	return s.record(levelOf(r.status), "platform.runtimeDone", struct {
		RequestID string          `json:"requestId"`
		Status    string          `json:"status"`
		ErrorType string          `json:"errorType,omitempty"`
		Metrics   durationMetrics `json:"metrics"`
	}{requestID, r.status, r.errorType, durationMetrics{ms(r.duration)}})
}

// durationMetrics are the metrics of platform.runtimeDone and
// platform.initReport.
type durationMetrics struct {
	DurationMs float64 `json:"durationMs"`
}

// reportMetrics are platform.report's metrics.
type reportMetrics struct {
	DurationMs       float64  `json:"durationMs"`
	BilledDurationMs int64    `json:"billedDurationMs"`
	MemorySizeMB     int      `json:"memorySizeMB"`
	MaxMemoryUsedMB  int64    `json:"maxMemoryUsedMB"`
	InitDurationMs   *float64 `json:"initDurationMs,omitempty"`
}

// report is the REPORT line.
func (s sysLog) report(requestID string, r invokeReport) string {
	if !s.json {
		// Appended rather than formatted: one line per invocation.
		b := make([]byte, 0, 192)
		b = append(append(b, "REPORT RequestId: "...), requestID...)
		b = strconv.AppendFloat(append(b, "\tDuration: "...), ms(r.duration), 'f', 2, 64)
		b = strconv.AppendInt(append(b, " ms\tBilled Duration: "...), r.billed(), 10)
		b = strconv.AppendInt(append(b, " ms\tMemory Size: "...), int64(r.memoryMB), 10)
		b = strconv.AppendInt(append(b, " MB\tMax Memory Used: "...), r.maxUsedMB, 10)
		b = append(b, " MB"...)
		if r.init > 0 {
			b = append(strconv.AppendFloat(append(b, "\tInit Duration: "...), ms(r.init), 'f', 2, 64), " ms"...)
		}
		return string(b)
	}
	m := reportMetrics{DurationMs: ms(r.duration), BilledDurationMs: r.billed(),
		MemorySizeMB: r.memoryMB, MaxMemoryUsedMB: r.maxUsedMB}
	if r.init > 0 {
		init := ms(r.init)
		m.InitDurationMs = &init
	}
	return s.record(levelOf(r.status), "platform.report", struct {
		RequestID string        `json:"requestId"`
		Status    string        `json:"status"`
		ErrorType string        `json:"errorType,omitempty"`
		Metrics   reportMetrics `json:"metrics"`
	}{requestID, r.status, r.errorType, m})
}

// initFailed is what a failed init adds to the log tail of the requests
// that waited for it: Lambda's INIT_REPORT line and the error, or a
// platform.initReport record.
func (s sysLog) initFailed(fe *nimbus.FunctionError, d time.Duration) string {
	if !s.json {
		b, _ := json.Marshal(fe)
		return "INIT_REPORT Status: error Error Type: " + fe.Type + "\n" + string(b)
	}
	return s.record(levelWarn, "platform.initReport", struct {
		InitializationType string          `json:"initializationType"`
		Phase              string          `json:"phase"`
		Status             string          `json:"status"`
		ErrorType          string          `json:"errorType"`
		Metrics            durationMetrics `json:"metrics"`
	}{"on-demand", "init", statusError, fe.Type, durationMetrics{ms(d)}})
}
