package main

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/service/lambda"

	"github.com/nimbus-serverless/nimbus/internal/records"
)

// sigkillBound is how long before a SIGKILL an invocation must have been
// answered for its record to survive (docs/observability.md: the 50 ms
// flush interval and one write, with room for a loaded machine).
const sigkillBound = 300 * time.Millisecond

// TestInvocationRecordsAndUsage: a real node records every invocation
// (success, function error, timeout), keeps the records of invocations
// answered before a SIGKILL, lists them with the CLI and the API, and
// meters them exactly into usage with costs.
func TestInvocationRecordsAndUsage(t *testing.T) {
	dir := dataDir(t)
	prices := []string{"--price-per-million-requests", "2", "--price-per-gb-second", "0.001",
		"--price-free-requests", "0", "--price-free-gb-seconds", "0", "--price-currency", "EUR"}
	s := startServer(t, dir, prices...)
	c := s.client()
	in := createInput(t, "meter", "import time\ndef handler(e, c):\n    if e.get('fail'):\n        raise ValueError('asked to')\n"+
		"    if e.get('sleep'):\n        time.sleep(e['sleep'])\n    return {'ok': True}\n", nil)
	in.Timeout = aws.Int32(1)
	in.MemorySize = aws.Int32(256)
	if _, err := c.CreateFunction(t.Context(), in); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{} // request id -> status
	invoke := func(payload string) {
		out, err := c.Invoke(t.Context(), &lambda.InvokeInput{FunctionName: aws.String("meter"), Payload: []byte(payload)})
		if err != nil {
			t.Fatalf("Invoke %s: %v", payload, err)
		}
		id, _ := awsmiddleware.GetRequestIDMetadata(out.ResultMetadata)
		status := records.StatusSuccess
		switch {
		case strings.Contains(payload, "fail"):
			status = records.StatusFunctionError
		case strings.Contains(payload, "sleep"):
			status = records.StatusTimeout
		}
		want[id] = status
	}
	for i := range 20 {
		switch {
		case i%5 == 1:
			invoke(`{"fail": true}`)
		case i == 7:
			invoke(`{"sleep": 3}`)
		default:
			invoke(`{}`)
		}
	}
	time.Sleep(sigkillBound)
	if err := s.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-s.done
	s.done <- nil

	s = startServer(t, dir, prices...)
	out, stderr, err := nimbusCLI(t, s, "invocations", "meter", "--all", "--limit", "7", "-o", "json")
	if err != nil {
		t.Fatalf("nimbus invocations: %v\n%s", err, stderr)
	}
	var recs []records.Record
	if err := json.Unmarshal([]byte(out), &recs); err != nil {
		t.Fatalf("invocations -o json: %v\n%s", err, out)
	}
	got := map[string]records.Record{}
	var billed, mbms int64
	for _, r := range recs {
		got[r.RequestID] = r
		billed += r.BilledDuration
		mbms += int64(r.MemorySize) * r.BilledDuration
	}
	for id, status := range want {
		r, ok := got[id]
		switch {
		case !ok:
			t.Errorf("no record of %s, answered %s before the SIGKILL", id, sigkillBound)
		case r.Status != status || r.Function != "meter" || r.Trigger != "api" || r.MemorySize != 256 || r.Qualifier != "$LATEST":
			t.Errorf("record %+v, want status %s", r, status)
		case r.BilledDuration < int64(math.Ceil(r.Duration)) || r.Node == "" || r.InstanceID == "" || r.EndTime.Before(r.StartTime):
			t.Errorf("record %+v: billed under the duration, or no node or instance", r)
		}
	}
	if len(recs) != len(want) {
		t.Errorf("%d records, want %d", len(recs), len(want))
	}
	cold := 0
	for _, r := range recs {
		if r.ColdStart {
			cold++
			if r.InitDuration <= 0 {
				t.Errorf("cold start without an init duration: %+v", r)
			}
		}
	}
	if cold < 2 { // the first invocation and the one after the timeout
		t.Errorf("%d cold starts recorded, want at least 2", cold)
	}
	// The field names are Lambda's.
	for _, f := range []string{`"RequestId"`, `"Duration"`, `"BilledDuration"`, `"MaxMemoryUsed"`, `"ColdStart"`, `"Status"`} {
		if !strings.Contains(out, f) {
			t.Errorf("invocations -o json has no %s field", f)
		}
	}
	out, _, err = nimbusCLI(t, s, "invocations", "meter", "--failed", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var failed []records.Record
	_ = json.Unmarshal([]byte(out), &failed)
	if len(failed) != 5 {
		t.Errorf("--failed listed %d, want 5 (4 errors, 1 timeout)", len(failed))
	}
	if out, _, err = nimbusCLI(t, s, "invocations", "meter", "--since", "1h"); err != nil || !strings.Contains(out, "REQUEST ID") || !strings.Contains(out, "function_error") {
		t.Errorf("invocations table: %v\n%s", err, out)
	}

	// Usage: exact against the records, with the flags' prices.
	var view struct {
		Currency string
		Rows     []struct{ Function string } `json:"Usage"`
		Total    records.UsageTotal
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		out, stderr, err = nimbusCLI(t, s, "usage", "--since", "1d", "-o", "json")
		if err != nil {
			t.Fatalf("nimbus usage: %v\n%s", err, stderr)
		}
		if err := json.Unmarshal([]byte(out), &view); err != nil {
			t.Fatalf("usage -o json: %v\n%s", err, out)
		}
		if view.Total.Requests == int64(len(recs)) || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	tot := view.Total
	if tot.Requests != int64(len(recs)) || tot.BilledMs != billed || tot.MBms != mbms || tot.Errors != 5 || int(tot.ColdStarts) != cold {
		t.Fatalf("usage total %+v; the records say %d requests, %d billed ms, %d MB-ms, 5 errors, %d cold starts", tot.Usage, len(recs), billed, mbms, cold)
	}
	wantCost := float64(len(recs))/1e6*2 + float64(mbms)/1024/1000*0.001
	if math.Abs(tot.Cost-wantCost) > 1e-12 || tot.NetCost != tot.Cost || view.Currency != "EUR" {
		t.Errorf("cost %v net %v %s, want %v EUR with no free tier", tot.Cost, tot.NetCost, view.Currency, wantCost)
	}
	if len(view.Rows) != 1 || view.Rows[0].Function != "meter" {
		t.Errorf("usage by function: %+v", view.Rows)
	}
	out, _, err = nimbusCLI(t, s, "usage", "--since", "1d", "--by", "day", "-o", "csv")
	if err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(strings.NewReader(out)).ReadAll()
	if err != nil || len(rows) != 2 || rows[0][0] != "day" || rows[1][1] != fmt.Sprint(len(recs)) {
		t.Errorf("usage -o csv: %v\n%s", err, out)
	}
	if out, _, err = nimbusCLI(t, s, "usage"); err != nil || !strings.Contains(out, "meter") || !strings.Contains(out, "COST (EUR)") || !strings.Contains(out, "TOTAL") {
		t.Errorf("usage table: %v\n%s", err, out)
	}

	// An asynchronous invocation's record names its task.
	ev, err := s.client().Invoke(t.Context(), &lambda.InvokeInput{FunctionName: aws.String("meter"), Payload: []byte(`{}`), InvocationType: "Event"})
	if err != nil {
		t.Fatal(err)
	}
	task, _ := awsmiddleware.GetRequestIDMetadata(ev.ResultMetadata)
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		out, _, err = nimbusCLI(t, s, "invocations", "meter", "--limit", "5", "-o", "json")
		var latest []records.Record
		if err == nil && json.Unmarshal([]byte(out), &latest) == nil && len(latest) > 0 && latest[0].Trigger == "async" {
			if latest[0].TaskID != task || latest[0].RequestID != task || latest[0].Status != records.StatusSuccess {
				t.Errorf("async record %+v, want task %s", latest[0], task)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no record of the async invocation %s: %s", task, out)
		}
	}

	// The scrape of the restarted node counts what it ran and wrote.
	resp, err := get("http://" + s.addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	scrape, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`faas_invocations_total{function="meter",outcome="success",qualifier="$LATEST",trigger="async"} 1`,
		"nimbus_records_written_total ", "nimbus_function_log_lines_written_total ", "faas_invoke_duration_seconds_bucket{function=\"meter\""} {
		if !strings.Contains(string(scrape), want) {
			t.Errorf("/metrics has no %s", want)
		}
	}
	if strings.Contains(string(scrape), "nimbus_records_written_total 0\n") {
		t.Error("/metrics: no record written")
	}

	// Bad input: one line on the CLI, Lambda's error shape on the API.
	for _, args := range [][]string{
		{"invocations", "meter", "--since", "yesterday"}, {"invocations", "meter", "--limit", "0"},
		{"invocations", "meter", "--failed", "--status", "timeout"}, {"usage", "--by", "week"},
		{"usage", "--since", "soon"}, {"ls", "-o", "csv"}, {"invocations", "nobody"},
	} {
		_, stderr, err := nimbusCLI(t, s, args...)
		if err == nil || strings.Count(strings.TrimSpace(stderr), "\n") != 0 || stderr == "" {
			t.Errorf("nimbus %v: %v, stderr %q; want a one-line error", args, err, stderr)
		}
	}
	for q, want := range map[string]string{
		"/nimbus/v1/functions/meter/invocations?limit=0":                         "InvalidParameterValueException",
		"/nimbus/v1/functions/meter/invocations?status=ok":                       "InvalidParameterValueException",
		"/nimbus/v1/functions/meter/invocations?cursor=zz":                       "InvalidParameterValueException",
		"/nimbus/v1/functions/meter/invocations?since=tomorrow":                  "ValidationException",
		"/nimbus/v1/functions/nobody/invocations":                                "ResourceNotFoundException",
		"/nimbus/v1/usage?granularity=week":                                      "InvalidParameterValueException",
		"/nimbus/v1/usage?since=2026-01-02T00:00:00Z&until=2026-01-01T00:00:00Z": "InvalidParameterValueException",
	} {
		resp, err := get("http://" + s.addr + q)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode/100 != 4 || resp.Header.Get("X-Amzn-ErrorType") != want || !strings.Contains(string(b), `"message"`) {
			t.Errorf("GET %s: %d %s %s, want %s", q, resp.StatusCode, resp.Header.Get("X-Amzn-ErrorType"), b, want)
		}
	}
}
