package cli

import (
	"encoding/json"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/nimbus-serverless/nimbus"
)

func TestDLQLs(t *testing.T) {
	f := newFakeAsync(t)
	f.addSamples()
	for _, tc := range []struct{ args, golden string }{
		{"dlq ls resize", "dlq-ls.golden"},
		{"dlq ls resize -o json", "dlq-ls.json.golden"},
	} {
		t.Run(tc.args, func(t *testing.T) {
			r := runCmd(t, f.URL, "", strings.Fields(tc.args)...)
			if r.err != nil {
				t.Fatalf("%s: %s", tc.args, OneLine(r.err))
			}
			if r.stderr != "" {
				t.Errorf("stderr: got %q, want none", r.stderr)
			}
			golden(t, tc.golden, r.stdout)
		})
	}
	t.Run("empty", func(t *testing.T) {
		r := runCmd(t, f.URL, "", "dlq", "ls", "other")
		if r.err != nil || r.stdout != "" || r.stderr != "No dead letters.\n" {
			t.Errorf("got %q, %q, %v; want No dead letters. on stderr", r.stdout, r.stderr, r.err)
		}
	})
}

func TestDLQLsPages(t *testing.T) {
	f := newFakeAsync(t)
	f.addSamples()
	r := runCmd(t, f.URL, "", "dlq", "ls", "resize", "--limit", "1")
	if r.err != nil {
		t.Fatal(OneLine(r.err))
	}
	if !strings.HasPrefix(r.stdout, "SEQ ") || strings.Count(r.stdout, "\n") != 2 {
		t.Errorf("--limit 1: got\n%s", r.stdout)
	}
	if want := "More dead letters: --marker 7 shows the next page, --all every page.\n"; r.stderr != want {
		t.Errorf("stderr: got %q, want %q", r.stderr, want)
	}

	before := len(f.requests())
	r = runCmd(t, f.URL, "", "dlq", "ls", "resize", "--limit", "1", "--all", "-o", "json")
	var list deadLetterList
	if err := json.Unmarshal([]byte(r.stdout), &list); err != nil || r.err != nil {
		t.Fatalf("--all: got %q (%v, %v)", r.stdout, err, r.err)
	}
	if got := seqsOf(list.DeadLetters); !slices.Equal(got, []uint64{7, 9, 12}) || list.NextMarker != "" {
		t.Errorf("--all: got %v next %q", got, list.NextMarker)
	}
	var markers []string
	for _, req := range f.requests()[before:] {
		q, _ := url.ParseQuery(req.Query)
		markers = append(markers, q.Get("marker"))
	}
	if want := []string{"", "7", "9"}; !slices.Equal(markers, want) {
		t.Errorf("--all: markers sent %q, want %q", markers, want)
	}

	r = runCmd(t, f.URL, "", "dlq", "ls", "resize", "--marker", "7", "-o", "json")
	list = deadLetterList{}
	if err := json.Unmarshal([]byte(r.stdout), &list); err != nil || !slices.Equal(seqsOf(list.DeadLetters), []uint64{9, 12}) {
		t.Errorf("--marker 7: got %q (%v)", r.stdout, err)
	}
}

func seqsOf(dls []nimbus.DeadLetter) []uint64 {
	var out []uint64
	for _, d := range dls {
		out = append(out, d.Seq)
	}
	return out
}

func TestDLQRedrive(t *testing.T) {
	f := newFakeAsync(t)
	f.addSamples()

	r := runCmd(t, f.URL, "", "dlq", "redrive", "resize", "--seq", "9")
	if want := "Re-drove 1 dead letter of function resize.\n"; r.err != nil || r.stdout != want || r.stderr != "" {
		t.Errorf("--seq 9: got %q, %q, %v; want %q", r.stdout, r.stderr, r.err, want)
	}
	req := f.lastRequest(t)
	if req.Path != "/nimbus/v1/functions/resize/dead-letters/redrive" || string(req.Raw) != `{"seqs":[9]}` ||
		req.Header.Get("Content-Type") != "application/json" || req.Header.Get("Authorization") == "" {
		t.Errorf("--seq 9: sent %s %s %q (%q)", req.Method, req.Path, req.Raw, req.Header.Get("Content-Type"))
	}

	// Repeats are sent once; a seq that is gone is reported.
	r = runCmd(t, f.URL, "", "dlq", "redrive", "resize", "--seq", "7,9", "--seq", "7", "-o", "json")
	if r.err != nil || r.stdout != "{\n  \"redriven\": 1\n}\n" {
		t.Errorf("--seq 7,9 --seq 7: got %q, %v", r.stdout, r.err)
	}
	if want := "1 of the 2 dead letters named by --seq were not found (already re-driven?).\n"; r.stderr != want {
		t.Errorf("--seq 7,9: stderr %q, want %q", r.stderr, want)
	}
	if got := string(f.lastRequest(t).Raw); got != `{"seqs":[7,9]}` {
		t.Errorf("--seq 7,9 --seq 7: sent %q", got)
	}

	// Without --seq: all of them, and no body.
	f.addSamples()
	r = runCmd(t, f.URL, "", "dlq", "redrive", "resize")
	if want := "Re-drove 3 dead letters of function resize.\n"; r.err != nil || r.stdout != want {
		t.Errorf("all: got %q, %v; want %q", r.stdout, r.err, want)
	}
	if req := f.lastRequest(t); len(req.Raw) != 0 {
		t.Errorf("all: sent body %q, want none", req.Raw)
	}
	r = runCmd(t, f.URL, "", "dlq", "redrive", "resize")
	if r.err != nil || r.stdout != "" || r.stderr != "No dead letters to re-drive.\n" {
		t.Errorf("none left: got %q, %q, %v", r.stdout, r.stderr, r.err)
	}
}

func TestDLQBadInput(t *testing.T) {
	f := newFakeAsync(t)
	f.addSamples()
	tests := []struct {
		args   []string
		want   string
		sendNo bool
	}{
		{[]string{"dlq", "redrive", "resize", "--seq", "0"}, "invalid --seq 0: sequence numbers start at 1", true},
		{[]string{"dlq", "redrive", "resize", "--seq", "x"}, `invalid --seq "x": want a whole number, 0 or more`, true},
		{[]string{"dlq", "redrive", "resize", "--seq", "-3"}, `invalid --seq "-3": want a whole number, 0 or more`, true},
		{[]string{"dlq", "redrive", ""}, "the function name must not be empty", true},
		{[]string{"dlq", "redrive"}, "accepts 1 arg(s), received 0", true},
		{[]string{"dlq", "ls", "resize", "--limit", "5000"}, "--limit must be 1 to 1000, not 5000", true},
		{[]string{"dlq", "ls", "resize", "extra"}, "accepts 1 arg(s), received 2", true},
		{[]string{"dlq", "purge", "resize"}, `unknown command "purge" for "nimbus dlq"`, true},
		{[]string{"dlq", "ls", "resize", "--marker", "x"}, `ValidationException: marker "x" is not one this API returned`, false},
		{[]string{"dlq", "redrive", "resize", "--seq", "99,100"},
			"function resize has no dead letter with --seq 99,100 (nimbus dlq ls resize lists them)", false},
		{[]string{"dlq", "redrive", "nope"},
			"ResourceNotFoundException: Function not found: arn:aws:lambda:us-east-1:000000000000:function:nope", false},
	}
	for _, tc := range tests {
		before := len(f.requests())
		r := runCmd(t, f.URL, "", tc.args...)
		if got := OneLine(r.err); !strings.HasPrefix(got, tc.want) {
			t.Errorf("nimbus %q: got error %q, want it to start with %q", tc.args, got, tc.want)
		}
		if sent := len(f.requests()) > before; sent == tc.sendNo {
			t.Errorf("nimbus %q: sent a request = %v, want %v", tc.args, sent, !tc.sendNo)
		}
		if r.stdout != "" {
			t.Errorf("nimbus %q: stdout %q, want none", tc.args, r.stdout)
		}
	}
}
