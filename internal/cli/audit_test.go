package cli

import (
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/nimbus-serverless/nimbus/internal/api"
	"github.com/nimbus-serverless/nimbus/internal/audit"
	auditmem "github.com/nimbus-serverless/nimbus/internal/audit/mem"
)

// TestAudit runs `nimbus audit` against the API's audit route over a trail
// in memory: the table, JSON, filters, pages and bad flags.
func TestAudit(t *testing.T) {
	log := auditmem.New()
	old := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	recent := time.Now().Add(-10 * time.Minute).UTC().Truncate(time.Second)
	events := []audit.Event{
		{Time: old, Key: "admin", AccessKeyID: "NIMBADMIN", Role: "admin", Source: "10.0.0.1", Action: "CreateFunction", Function: "resize", Status: 201},
		{Time: old.Add(time.Minute), AccessKeyID: "NIMBFORGED", Source: "10.0.0.9", Action: "DeleteKey", Resource: "admin", Status: 403, ErrorType: "UnrecognizedClientException"},
		{Time: recent, Key: "ci", AccessKeyID: "NIMBCI", Role: "developer", Source: "10.0.0.2", Action: "UpdateTrigger", Function: "resize", Resource: "orders", Status: 200},
	}
	for _, e := range events {
		if err := log.Record(t.Context(), e); err != nil {
			t.Fatal(err)
		}
	}
	srv := httptest.NewServer(api.New(api.Config{Audit: log}))
	t.Cleanup(srv.Close)

	r := runCmd(t, srv.URL, "", "audit")
	if r.err != nil {
		t.Fatalf("nimbus audit: %v %s", r.err, r.stderr)
	}
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	want := [][]string{
		{"TIME", "KEY", "SOURCE", "ACTION", "RESOURCE", "STATUS"},
		{recent.Local().Format(time.DateTime), "ci", "10.0.0.2", "UpdateTrigger", "resize/orders", "200"},
		{old.Add(time.Minute).Local().Format(time.DateTime), "(NIMBFORGED)", "10.0.0.9", "DeleteKey", "admin", "403 UnrecognizedClientException"},
		{old.Local().Format(time.DateTime), "admin", "10.0.0.1", "CreateFunction", "resize", "201"},
	}
	if len(lines) != len(want) {
		t.Fatalf("table =\n%s\nwant %d lines", r.stdout, len(want))
	}
	for i, w := range want {
		if got := strings.Join(strings.Fields(lines[i]), " "); got != strings.Join(strings.Fields(strings.Join(w, " ")), " ") {
			t.Errorf("line %d = %q, want %q", i, got, w)
		}
	}

	r = runCmd(t, srv.URL, "", "audit", "--function", "resize", "--since", "1h", "-o", "json")
	var page auditPage
	if r.err != nil || json.Unmarshal([]byte(r.stdout), &page) != nil || len(page.Events) != 1 || page.Events[0].Resource != "orders" {
		t.Errorf("audit --function resize --since 1h -o json = %v %q %q, want the UpdateTrigger", r.err, r.stdout, r.stderr)
	}
	r = runCmd(t, srv.URL, "", "audit", "--key", "admin", "--until", "2026-03-01T12:30:00Z")
	if r.err != nil || !strings.Contains(r.stdout, "CreateFunction") || strings.Contains(r.stdout, "UpdateTrigger") {
		t.Errorf("audit --key admin --until = %v %q", r.err, r.stdout)
	}
	r = runCmd(t, srv.URL, "", "audit", "--limit", "1")
	if r.err != nil || strings.Count(r.stdout, "\n") != 2 || !strings.Contains(r.stderr, "--marker s3 shows the next page") {
		t.Errorf("audit --limit 1 = %v %q %q, want one event and the next page's marker", r.err, r.stdout, r.stderr)
	}
	r = runCmd(t, srv.URL, "", "audit", "--limit", "1", "--all", "-o", "json")
	if r.err != nil || json.Unmarshal([]byte(r.stdout), &page) != nil || len(page.Events) != 3 {
		t.Errorf("audit --limit 1 --all = %v %q, want all 3 events", r.err, r.stdout)
	}
	r = runCmd(t, srv.URL, "", "audit", "--key", "nobody")
	if r.err != nil || r.stdout != "" || !strings.Contains(r.stderr, "No audit events.") {
		t.Errorf("audit --key nobody = %v %q %q, want no events", r.err, r.stdout, r.stderr)
	}
	for _, bad := range []struct {
		args []string
		want string
	}{
		{[]string{"--since", "yesterday"}, `invalid --since "yesterday"`},
		{[]string{"--limit", "0"}, "--limit must be 1 to 1000, not 0"},
		{[]string{"--limit", "5000"}, "--limit must be 1 to 1000, not 5000"},
		{[]string{"--since", "1h", "--until", "2h"}, "must be before --until"},
		{[]string{"--marker", "bogus"}, "is not one this API gave"},
	} {
		r := runCmd(t, srv.URL, "", append([]string{"audit"}, bad.args...)...)
		if r.err == nil || !strings.Contains(r.err.Error(), bad.want) || strings.Contains(r.err.Error(), "\n") {
			t.Errorf("audit %v = %v, want one line with %q", bad.args, r.err, bad.want)
		}
	}
}
