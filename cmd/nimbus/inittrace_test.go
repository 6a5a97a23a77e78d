package main

import (
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// TestOwnInitialisersAreLight: every start of the binary runs every
// package's initialisers, and the binary starts for each sandboxed
// instance (its helper is the binary re-executed) and each CLI command.
// Nimbus's own packages allocate next to nothing there: a regular
// expression or a table built at package level belongs behind a
// sync.OnceValue (internal/lazyre). Before this test, our packages'
// initialisers allocated 1.18 MB of the binary's 3.6 MB per start
// (internal/api 491 KB, internal/trigger/kafka 221 KB: counted
// repetitions such as {1,249} compiled at package level).
func TestOwnInitialisersAreLight(t *testing.T) {
	const (
		perPackage = 16 << 10
		total      = 64 << 10
	)
	cmd := exec.Command(nimbusBin, "--help")
	cmd.Env = append(os.Environ(), "GODEBUG=inittrace=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("nimbus --help: %v\n%s", err, out)
	}
	// init <package> @<t> ms, <c> ms clock, <b> bytes, <a> allocs
	line := regexp.MustCompile(`(?m)^init (\S+) @.* ms clock, (\d+) bytes, \d+ allocs$`)
	var ours, seen int
	for _, m := range line.FindAllStringSubmatch(string(out), -1) {
		seen++
		if !strings.HasPrefix(m[1], "github.com/nimbus-serverless/nimbus") {
			continue
		}
		b, _ := strconv.Atoi(m[2])
		ours += b
		if b > perPackage {
			t.Errorf("the initialisers of %s allocate %d bytes at every start of the binary, more than %d", m[1], b, perPackage)
		}
	}
	if seen < 50 {
		t.Fatalf("found %d initialisers in GODEBUG=inittrace=1's output, want the binary's hundreds:\n%s", seen, out)
	}
	if ours > total {
		t.Errorf("Nimbus's initialisers allocate %d bytes at every start of the binary, more than %d", ours, total)
	}
	t.Logf("%d initialisers; Nimbus's allocate %d bytes", seen, ours)
}
