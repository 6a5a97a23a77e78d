package runtimes

import (
	"testing"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/sandbox"
)

// TestEnvLayers: with layers at /opt, the paths name their directories as
// Lambda's do, after the function's own.
func TestEnvLayers(t *testing.T) {
	fn := &nimbus.Function{Name: "f"}
	in := sandbox.Paths{TaskRoot: "/var/task", RuntimeDir: "/var/runtime", Opt: "/opt"}
	tests := []struct {
		rt   Runtime
		want map[string]string
	}{
		{Runtime{ID: "python3.11", Kind: KindPython}, map[string]string{
			"PYTHONPATH":      "/var/task:/opt/python/lib/python3.11/site-packages:/opt/python",
			"PATH":            defaultPath + ":/opt/bin",
			"LD_LIBRARY_PATH": "/var/task:/var/task/lib:/opt/lib",
		}},
		{Runtime{ID: "nodejs20.x", Kind: KindNode}, map[string]string{
			"NODE_PATH": "/opt/nodejs/node20/node_modules:/opt/nodejs/node_modules:/var/task/node_modules:/var/task",
		}},
		{Runtime{ID: "provided.al2023", Kind: KindProvided}, map[string]string{"PATH": defaultPath + ":/opt/bin"}},
	}
	for _, tt := range tests {
		got := envMap(t, Env(fn, tt.rt, "127.0.0.1:1", in, ""))
		for k, v := range tt.want {
			if got[k] != v {
				t.Errorf("%s: %s = %q, want %q", tt.rt.ID, k, got[k], v)
			}
		}
	}
	if got := envMap(t, Env(fn, tests[0].rt, "127.0.0.1:1", sandbox.Paths{TaskRoot: "/var/task"}, "")); got["PATH"] != defaultPath {
		t.Errorf("without layers, PATH = %q", got["PATH"])
	}
}
