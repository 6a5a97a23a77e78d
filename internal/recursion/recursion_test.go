package recursion

import (
	"errors"
	"strings"
	"testing"

	"github.com/nimbus-serverless/nimbus"
)

func TestCheck(t *testing.T) {
	fn := &nimbus.Function{Name: "loop"}
	k, other := Key("loop"), Key("other")
	for _, c := range []struct {
		name, trace string
		links       []string
		allow       bool
		want        string // req.Lineage, or "refused"
	}{
		{"no header", "", nil, false, k + ":1"},
		{"no lineage", "Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1", nil, false, k + ":1"},
		{"counted", "Root=1-5759e988-bd862e3fe1be46a994272793;Lineage=" + other + ":3|" + k + ":15", nil, false, other + ":3|" + k + ":16"},
		{"at the limit", "Root=1-5759e988-bd862e3fe1be46a994272793;Lineage=" + k + ":16", nil, false, "refused"},
		{"allowed", "Lineage=" + k + ":16", nil, true, k + ":17"},
		{"past the limit, allowed: counts stop at the limit+1", "Lineage=" + k + ":1000", nil, true, k + ":18"},
		{"another function at the limit", "Lineage=" + other + ":16", nil, false, other + ":16|" + k + ":1"},
		{"from a batch's messages: the largest count", "", []string{"Lineage=" + k + ":2", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "Root=1-x;Lineage=" + k + ":16"}, false, "refused"},
		{"malformed entries are left out", "Lineage=" + k + ":-3|zz:4|" + k + "|" + strings.ToUpper(other) + ":9|" + other + ":x", nil, false, k + ":1"},
	} {
		t.Run(c.name, func(t *testing.T) {
			fn.RecursiveLoop = ""
			if c.allow {
				fn.RecursiveLoop = nimbus.RecursiveLoopAllow
			}
			req := nimbus.Invocation{TraceID: c.trace, TraceLinks: c.links}
			err := Check(fn, &req)
			switch {
			case c.want == "refused":
				if !errors.Is(err, nimbus.ErrRecursive) || !strings.Contains(err.Error(), "recursive loop") {
					t.Fatalf("err %v, want a recursive invocation", err)
				}
			case err != nil:
				t.Fatal(err)
			case req.Lineage != c.want:
				t.Fatalf("lineage %q, want %q", req.Lineage, c.want)
			}
		})
	}
}

// TestLineageBounded: a chain through many functions keeps the function
// itself and those that ran most, at most maxEntries of them.
func TestLineageBounded(t *testing.T) {
	trace := ""
	for i := range 3 * maxEntries {
		req := nimbus.Invocation{TraceID: trace}
		name := "f" + strings.Repeat("x", i%(2*maxEntries)) // some run twice
		if err := Check(&nimbus.Function{Name: name}, &req); err != nil {
			t.Fatal(err)
		}
		trace = Header("Root=1-5759e988-bd862e3fe1be46a994272793", req.Lineage)
		l := parse(trace)
		if len(l) > maxEntries || l.count(Key(name)) == 0 {
			t.Fatalf("step %d: lineage %q", i, req.Lineage)
		}
	}
	// "f" ran twice (steps 0 and 16) and is kept.
	if l := parse(trace); l.count(Key("f")) != 2 {
		t.Fatalf("lineage %q lost the function that ran most", trace)
	}
}

func TestHeader(t *testing.T) {
	if got := Header("Root=1-a", ""); got != "Root=1-a" {
		t.Fatal(got)
	}
	if got := Header("", "abc:1"); got != "" {
		t.Fatal(got)
	}
	if got := Header("Root=1-a;Sampled=0", "0011aabb:2"); got != "Root=1-a;Sampled=0;Lineage=0011aabb:2" {
		t.Fatal(got)
	}
}
