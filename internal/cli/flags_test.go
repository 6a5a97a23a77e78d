package cli

import (
	"strings"
	"testing"
)

// TestNumericFlagErrors: a bad number, duration or format in any flag is one
// line naming the flag, and nothing is sent.
func TestNumericFlagErrors(t *testing.T) {
	f := newFake(t)
	app := writeApp(t)
	deploy := []string{"deploy", "x", "--runtime", "python3.11", "--handler", "app.handler", "--code", app}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{append(deploy, "--memory", "abc"), `invalid --memory "abc": want a whole number`},
		{append(deploy, "--memory", "1.5"), `invalid --memory "1.5": want a whole number`},
		{append(deploy, "--memory", "99999999999999999999"), `invalid --memory "99999999999999999999": the number is out of range`},
		{append(deploy, "--http-concurrency", "many"), `invalid --http-concurrency "many": want a whole number`},
		{append(deploy, "--ephemeral-storage", "2G"), `invalid --ephemeral-storage "2G": want a whole number`},
		{[]string{"logs", "x", "--limit", "ten"}, `invalid --limit "ten": want a whole number`},
		{[]string{"tasks", "ls", "x", "--limit", ""}, `invalid --limit "": want a whole number`},
		{[]string{"dlq", "ls", "x", "--limit", "0x"}, `invalid --limit "0x": want a whole number`},
		{[]string{"dlq", "redrive", "x", "--seq", "-3"}, `invalid --seq "-3": want a whole number, 0 or more`},
		{[]string{"triggers", "create", "x", "t", "--type", "timer", "--batch-size", "big"}, `invalid --batch-size "big": want a whole number`},
		{[]string{"triggers", "update", "x", "t", "--max-retries", "3.0"}, `invalid --max-retries "3.0": want a whole number`},
		{[]string{"invoke", "x", "--async=maybe"}, `invalid --async "maybe": want true or false`},
		{[]string{"ls", "-o", "yaml"}, `invalid --output "yaml": must be table, json or csv, not "yaml"`},
	} {
		r := runCmd(t, f.URL, "", tc.args...)
		got := OneLine(r.err)
		if got != tc.want || strings.Contains(got, "strconv") {
			t.Errorf("nimbus %s: %q, want %q", strings.Join(tc.args, " "), got, tc.want)
		}
	}
	if n := len(f.requests()); n != 0 {
		t.Errorf("bad flags sent %d requests", n)
	}
}
