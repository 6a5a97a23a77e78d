package cli

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/nimbus-serverless/nimbus/internal/node/nodetest"
)

// TestNodes: a single node lists itself, as a table and as JSON; an
// argument is refused.
func TestNodes(t *testing.T) {
	n := nodetest.Start(t, nil)
	url := nodetest.Endpoint(n)
	r := runCmd(t, url, "", "nodes")
	if r.err != nil {
		t.Fatalf("nodes: %v (%s)", r.err, r.stderr)
	}
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "ADDRESS") || !strings.Contains(lines[0], "LOAD") ||
		!strings.HasPrefix(lines[1], url+" *") || !strings.Contains(lines[1], n.ID()) {
		t.Errorf("nodes printed:\n%s\nwant a header and this node (%s, %s) marked *", r.stdout, url, n.ID())
	}
	r = runCmd(t, url, "", "nodes", "-o", "json")
	var got []nodeView
	if r.err != nil || json.Unmarshal([]byte(r.stdout), &got) != nil {
		t.Fatalf("nodes -o json: %v %q", r.err, r.stdout)
	}
	if len(got) != 1 || got[0].ID != n.ID() || got[0].Address != url || !got[0].Self || got[0].Version == "" || got[0].Started.IsZero() {
		t.Errorf("nodes -o json: %+v, want this node", got)
	}
	if r := runCmd(t, url, "", "nodes", "extra"); r.err == nil {
		t.Errorf("nodes extra: no error")
	}
}
