package registry

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/codepkg"
	"github.com/nimbus-serverless/nimbus/internal/store/mem"
)

const testLayerArn = "arn:aws:lambda:us-east-1:000000000000:layer:"

// TestLayerVersions: versions are numbered per layer and not given again
// after a delete; a deleted version is hidden but still resolves for the
// functions that had it, and its package is never collected.
func TestLayerVersions(t *testing.T) {
	clock := &testClock{now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	blobs := newClockBlobs(clock)
	r := openTestRegistry(t, Config{KV: mem.NewKV(), Layers: mem.NewKV(), Blobs: blobs, Code: readyCode{},
		Runtimes: []string{"python3.11"}, Limits: codepkg.DefaultLimits(), Now: clock.Now})
	ctx := t.Context()
	publish := func(name string) *LayerVersion {
		t.Helper()
		v, err := r.PublishLayer(ctx, LayerInput{Name: name}, zipOf(t, "python/"+name+".py", "x = 1\n"))
		if err != nil {
			t.Fatalf("PublishLayer %s: %v", name, err)
		}
		return v
	}
	a1, a2, b1 := publish("a"), publish("a"), publish("b")
	if a1.Version != 1 || a2.Version != 2 || b1.Version != 1 {
		t.Errorf("versions %d, %d, %d; want 1, 2, 1", a1.Version, a2.Version, b1.Version)
	}
	rt, h := "python3.11", "app.handler"
	layers := []string{testLayerArn + "a:2"}
	if _, err := r.Create(ctx, FunctionInput{Name: "fn", Runtime: &rt, Handler: &h, Layers: &layers}, testZip(t)); err != nil {
		t.Fatal(err)
	}
	if err := r.DeleteLayer(ctx, "a", 2); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Layer(ctx, "a", 2); !errors.Is(err, nimbus.ErrNotFound) {
		t.Errorf("Layer after delete: %v, want ErrNotFound", err)
	}
	if a3 := publish("a"); a3.Version != 3 {
		t.Errorf("after a delete, version %d, want 3", a3.Version)
	}
	all, err := r.LayerVersions(ctx)
	if err != nil || len(all["a"]) != 2 || all["a"][0].Version != 3 || all["a"][1].Version != 1 {
		t.Errorf("LayerVersions = %v, %v; want a:3 and a:1", all, err)
	}
	// The function keeps its deleted layer through a configuration update.
	memMB := 256
	if _, err := r.UpdateConfig(ctx, "fn", FunctionInput{MemoryMB: &memMB, Runtime: &rt}, ""); err != nil {
		t.Errorf("UpdateConfig of a function using a deleted layer version: %v", err)
	}
	digests, _, err := r.LayerCode(ctx, layers)
	if err != nil || len(digests) != 1 || digests[0] != a2.CodeSHA256 {
		t.Errorf("LayerCode = %v, %v", digests, err)
	}
	clock.add(2 * CodeMinAge)
	collect(t, r)
	for _, v := range []*LayerVersion{a1, a2, b1} {
		if !blobs.has(t, v.CodeSHA256) {
			t.Errorf("%s:%d's package was collected", v.Name, v.Version)
		}
	}
	if err := r.DeleteLayer(ctx, "nothing", 1); err != nil {
		t.Errorf("deleting a layer version that does not exist: %v, want nil as Lambda", err)
	}
}

// TestCheckLayers: the limits on a function's layers.
func TestCheckLayers(t *testing.T) {
	lim := codepkg.DefaultLimits()
	lim.MaxUnzipped = 100
	r := openTestRegistry(t, Config{KV: mem.NewKV(), Layers: mem.NewKV(), Blobs: mem.NewBlobs(), Code: readyCode{},
		Runtimes: []string{"python3.11", "nodejs20.x"}, Limits: lim})
	ctx := t.Context()
	for _, in := range []LayerInput{{Name: "py", CompatibleRuntimes: []string{"python3.11"}}, {Name: "big"}, {Name: "big2"}} {
		body := "x"
		if in.Name != "py" {
			body = string(make([]byte, 46))
		}
		if _, err := r.PublishLayer(ctx, in, zipOf(t, in.Name, body)); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name, runtime string
		layers        []string
		want          string
	}{
		{"six", "python3.11", []string{"a:1", "b:1", "c:1", "d:1", "e:1", "f:1"}, "Cannot reference more than 5 layers."},
		{"missing", "python3.11", []string{"nope:1"}, "does not exist"},
		{"twice", "python3.11", []string{"py:1", "py:1"}, "same layer"},
		{"runtime", "nodejs20.x", []string{"py:1"}, "is not compatible with runtime nodejs20.x"},
		{"too big", "python3.11", []string{"big:1", "big2:1"}, "Function code combined with layers exceeds the maximum allowed size of 100 bytes."},
		{"fits", "python3.11", []string{"py:1", "big:1"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var arns []string
			for _, l := range tt.layers {
				arns = append(arns, testLayerArn+l)
			}
			h := "app.handler"
			_, err := r.Create(ctx, FunctionInput{Name: "f-" + tt.name[:2], Runtime: &tt.runtime, Handler: &h, Layers: &arns},
				zipOf(t, "app.py", "0123456789"))
			if tt.want == "" && err != nil || tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
				t.Errorf("Create: %v, want %q", err, tt.want)
			}
		})
	}
}
