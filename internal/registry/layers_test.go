package registry

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
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
// functions that had it, and its package is not collected while they do.
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

// layerWorld is a registry with layers and versions on a clock the test
// moves, and what the tests of the layer collection need of it.
type layerWorld struct {
	t     *testing.T
	r     *Registry
	cfg   Config
	clock *testClock
	blobs *clockBlobs
}

func newLayerWorld(t *testing.T) *layerWorld {
	clock := &testClock{now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	blobs := newClockBlobs(clock)
	cfg := Config{KV: mem.NewKV(), Layers: mem.NewKV(), Versions: mem.NewKV(), Blobs: blobs,
		Code: readyCode{}, Runtimes: []string{"python3.11"}, Limits: codepkg.DefaultLimits(), Now: clock.Now}
	return &layerWorld{t: t, r: openTestRegistry(t, cfg), cfg: cfg, clock: clock, blobs: blobs}
}

// publish publishes zip as the next version of layer name and returns
// its ARN and digest.
func (w *layerWorld) publish(name string, zip []byte) (arn, digest string) {
	w.t.Helper()
	v, err := w.r.PublishLayer(w.t.Context(), LayerInput{Name: name}, zip)
	if err != nil {
		w.t.Fatalf("PublishLayer %s: %v", name, err)
	}
	return testLayerArn + name + ":" + strconv.Itoa(v.Version), v.CodeSHA256
}

// create creates function name, settled, with code and layers.
func (w *layerWorld) create(name string, code []byte, layers ...string) error {
	w.t.Helper()
	rt, h := "python3.11", "app.handler"
	_, err := w.r.Create(w.t.Context(), FunctionInput{Name: name, Runtime: &rt, Handler: &h, Layers: &layers}, code)
	if err == nil {
		waitSettled(w.t, w.r, name)
	}
	return err
}

func (w *layerWorld) deleteLayer(arn string) {
	w.t.Helper()
	name, n, _, _, _ := ParseLayerArn(arn)
	if err := w.r.DeleteLayer(w.t.Context(), name, n); err != nil {
		w.t.Fatal(err)
	}
}

// exists reports whether the record of layer version arn is stored.
func (w *layerWorld) exists(arn string) bool {
	w.t.Helper()
	name, n, _, _, _ := ParseLayerArn(arn)
	_, _, err := w.r.readLayer(w.t.Context(), name, n)
	if err != nil && !errors.Is(err, nimbus.ErrNotFound) {
		w.t.Fatal(err)
	}
	return err == nil
}

// collectLater moves the clock past CodeMinAge and collects.
func (w *layerWorld) collectLater() {
	w.t.Helper()
	w.clock.add(2 * CodeMinAge)
	collect(w.t, w.r)
}

// wantKept checks that layer version arn and its package (digest) are
// stored, or with want false that both are gone.
func (w *layerWorld) wantKept(when, arn, digest string, want bool) {
	w.t.Helper()
	if got := w.exists(arn); got != want {
		w.t.Errorf("%s: record of %s stored = %v, want %v", when, arn, got, want)
	}
	if got := w.blobs.has(w.t, digest); got != want {
		w.t.Errorf("%s: package of %s stored = %v, want %v", when, arn, got, want)
	}
}

// TestCollectLayers: a deleted layer version keeps working for the
// function that uses it, is refused to the others, and once that function
// is deleted the collection deletes its record and its package; a version
// that only a published function version uses stays until that version is
// deleted.
func TestCollectLayers(t *testing.T) {
	w := newLayerWorld(t)
	ctx := t.Context()
	lib, libDigest := w.publish("lib", zipOf(t, "python/lib.py", "WHO = 'lib'\n"))
	old, oldDigest := w.publish("old", zipOf(t, "python/old.py", "WHO = 'old'\n"))
	if err := w.create("f", testZip(t), lib); err != nil {
		t.Fatal(err)
	}
	// g's version 1 uses old; g itself no longer does.
	if err := w.create("g", otherZip(t), old); err != nil {
		t.Fatal(err)
	}
	if _, err := w.r.Publish(ctx, "g", PublishInput{}); err != nil {
		t.Fatal(err)
	}
	none := []string{}
	if _, err := w.r.UpdateConfig(ctx, "g", FunctionInput{Layers: &none}, ""); err != nil {
		t.Fatal(err)
	}
	w.deleteLayer(lib)
	w.deleteLayer(old)

	// f still gets lib's content under /opt.
	cache, err := codepkg.NewCache(t.TempDir(), w.blobs, codepkg.DefaultLimits(), nil)
	if err != nil {
		t.Fatal(err)
	}
	opt, err := w.r.CodeWithLayers(cache).EnsureLayers(ctx, []string{lib})
	if err != nil {
		t.Fatalf("EnsureLayers after the delete: %v", err)
	}
	if b, err := os.ReadFile(filepath.Join(opt, "python/lib.py")); err != nil || string(b) != "WHO = 'lib'\n" {
		t.Errorf("/opt/python/lib.py = %q, %v", b, err)
	}
	// A deleted version is added to no function, as on Lambda.
	if _, err := w.r.UpdateConfig(ctx, "g", FunctionInput{Layers: &[]string{lib}}, ""); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("UpdateConfig adding a deleted layer version: %v, want does not exist", err)
	}
	if err := w.create("h", testZip(t), old); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("Create with a deleted layer version: %v, want does not exist", err)
	}

	w.collectLater()
	w.wantKept("in use by a function", lib, libDigest, true)
	w.wantKept("in use by a version", old, oldDigest, true)

	// Once f is gone, its merged layers leave the node's disk too.
	inUse, err := w.r.CodeInUse(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cache.Prune(inUse); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(opt); err != nil {
		t.Errorf("f's merged layers were pruned while f exists: %v", err)
	}
	if err := w.r.Delete(ctx, "f"); err != nil {
		t.Fatal(err)
	}
	if inUse, err = w.r.CodeInUse(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := cache.Prune(inUse); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(opt); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("f's merged layers outlived f: %v", err)
	}
	w.collectLater()
	w.wantKept("after its function's delete", lib, libDigest, false)
	w.wantKept("in use by a version", old, oldDigest, true)

	if err := w.r.DeleteVersion(ctx, "g", 1); err != nil {
		t.Fatal(err)
	}
	w.collectLater()
	w.wantKept("after its version's delete", old, oldDigest, false)
	if _, _, err := w.r.LayerCode(ctx, []string{lib}); err == nil {
		t.Error("LayerCode still resolves a collected layer version")
	}
	if again, _ := w.publish("lib", zipOf(t, "python/lib.py", "x")); !strings.HasSuffix(again, ":2") {
		t.Errorf("after a collection, lib's next version is %s, want 2: numbers are not given again", again)
	}
}

// TestCollectLayersKeepsShared: a collected layer version's package stays
// while a function's code or another layer version has the same digest.
func TestCollectLayersKeepsShared(t *testing.T) {
	w := newLayerWorld(t)
	if err := w.create("f", testZip(t)); err != nil {
		t.Fatal(err)
	}
	own, ownDigest := w.publish("own", testZip(t)) // f's code
	twin, twinDigest := w.publish("twin", zipOf(t, "python/t.py", "t = 1\n"))
	other, _ := w.publish("other", zipOf(t, "python/t.py", "t = 1\n"))
	w.deleteLayer(own)
	w.deleteLayer(twin)
	w.collectLater()
	if w.exists(own) || w.exists(twin) {
		t.Error("an unused deleted layer version was not collected")
	}
	if !w.blobs.has(t, ownDigest) {
		t.Error("a function's code went with a layer version of the same digest")
	}
	if !w.blobs.has(t, twinDigest) || !w.exists(other) {
		t.Error("a layer version's package went with another of the same digest")
	}
}

// TestCollectLayersWaits: a deleted layer version is not collected before
// CodeMinAge has passed since its delete (a create on another node may
// have checked it just before), nor while a create of this node holds it,
// nor while the registry's view of the functions is incomplete; one
// deleted by a node that kept no time waits CodeMinAge from when a
// collection first sees it.
func TestCollectLayersWaits(t *testing.T) {
	w := newLayerWorld(t)
	young, youngDigest := w.publish("young", zipOf(t, "a", "young"))
	held, heldDigest := w.publish("held", zipOf(t, "a", "held"))
	untimed, untimedDigest := w.publish("untimed", zipOf(t, "a", "untimed"))
	w.deleteLayer(held)
	name, n, _, _, _ := ParseLayerArn(untimed)
	if err := w.r.modifyLayer(t.Context(), name, n, "", func(v *LayerVersion) error {
		v.Deleted = true
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	release := w.r.holdLayers([]string{held})
	w.clock.add(2 * CodeMinAge)
	w.deleteLayer(young)
	step := CodeMinAge/2 + time.Minute
	w.clock.add(step)
	collect(t, w.r)
	w.wantKept("deleted recently", young, youngDigest, true)
	w.wantKept("held", held, heldDigest, true)
	w.wantKept("deleted with no time", untimed, untimedDigest, true)

	release()
	w.clock.add(step)
	collect(t, w.r)
	w.wantKept("deleted CodeMinAge ago", young, youngDigest, false)
	w.wantKept("released", held, heldDigest, false)
	w.wantKept("first seen deleted recently", untimed, untimedDigest, true)
	w.clock.add(step)
	collect(t, w.r)
	w.wantKept("first seen deleted CodeMinAge ago", untimed, untimedDigest, false)

	late, lateDigest := w.publish("late", zipOf(t, "a", "late"))
	w.deleteLayer(late)
	w.r.cache.setLive(false) // the watch is starting again
	w.collectLater()
	w.wantKept("while the view is incomplete", late, lateDigest, true)
}

// TestCollectLayersAcrossNodes: a node collects only what no function of
// any node sharing the store uses.
func TestCollectLayersAcrossNodes(t *testing.T) {
	w := newLayerWorld(t)
	other := openTestRegistry(t, w.cfg)
	lib, libDigest := w.publish("lib", zipOf(t, "python/lib.py", "x = 1\n"))
	if err := w.create("f", testZip(t), lib); err != nil {
		t.Fatal(err)
	}
	w.deleteLayer(lib)
	waitFor(t, func() bool { _, err := other.Get(t.Context(), "f"); return err == nil })
	w.clock.add(2 * CodeMinAge)
	collect(t, other)
	w.wantKept("in use on the other node", lib, libDigest, true)
	if err := w.r.Delete(t.Context(), "f"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { _, err := other.Get(t.Context(), "f"); return err != nil })
	collect(t, other)
	w.wantKept("after its function's delete on the other node", lib, libDigest, false)
}
