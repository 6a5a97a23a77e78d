package registry

import (
	"errors"
	"testing"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/codepkg"
	"github.com/nimbus-serverless/nimbus/internal/store/mem"
)

// TestPermissionQualified: $LATEST, version 1 and alias live have policies
// of their own; each one's RevisionId precondition is its own (an alias's
// changes with its policy, the function's does not); a missing version or
// alias is not found; deleting a version or alias deletes its policy.
func TestPermissionQualified(t *testing.T) {
	cfg := Config{KV: mem.NewKV(), Versions: mem.NewKV(), Blobs: mem.NewBlobs(), Code: readyCode{}, Runtimes: []string{"python3.11"}, Limits: codepkg.DefaultLimits()}
	r := openPublished(t, cfg)
	ctx := t.Context()
	v1, err := r.Version(ctx, "f", 1)
	if err != nil {
		t.Fatal(err)
	}
	before, _ := r.Get(ctx, "f")
	aliasRev := before.Aliases[0].RevisionID
	st := func(sid string) nimbus.PolicyStatement {
		return nimbus.PolicyStatement{Sid: sid, Action: "lambda:InvokeFunction", Principal: "*"}
	}

	for _, tt := range []struct{ q, rev string }{{"1", before.RevisionID}, {"live", before.RevisionID}, {"live", v1.RevisionID}} {
		if _, err := r.AddPermission(ctx, "f", tt.q, st("x"), tt.rev, nil); !errors.Is(err, nimbus.ErrPreconditionFailed) {
			t.Errorf("AddPermission %s with RevisionId %s: %v, want ErrPreconditionFailed", tt.q, tt.rev, err)
		}
	}
	if _, err := r.AddPermission(ctx, "f", "1", st("v"), v1.RevisionID, nil); err != nil {
		t.Fatal(err)
	}
	fn, err := r.AddPermission(ctx, "f", "live", st("a"), aliasRev, nil)
	if err != nil {
		t.Fatal(err)
	}
	if fn.RevisionID != before.RevisionID || fn.Aliases[0].RevisionID == aliasRev {
		t.Errorf("RevisionIds after the alias's permission: function %s (was %s), alias %s (was %s); want the alias's alone changed",
			fn.RevisionID, before.RevisionID, fn.Aliases[0].RevisionID, aliasRev)
	}
	if _, err := r.AddPermission(ctx, "f", "live", st("a"), "", nil); !errors.Is(err, nimbus.ErrConflict) {
		t.Errorf("duplicate Sid on live: %v", err)
	}
	if _, err := r.AddPermission(ctx, "f", "", st("a"), "", nil); err != nil {
		t.Errorf("the same Sid on $LATEST: %v", err)
	}
	for _, q := range []string{"2", "nope", "01"} {
		if _, err := r.AddPermission(ctx, "f", q, st("x"), "", nil); !errors.Is(err, nimbus.ErrNotFound) {
			t.Errorf("AddPermission on %s: %v, want ErrNotFound", q, err)
		}
		if _, err := r.RemovePermission(ctx, "f", q, "a", ""); !errors.Is(err, nimbus.ErrNotFound) {
			t.Errorf("RemovePermission on %s: %v, want ErrNotFound", q, err)
		}
	}
	fn, _ = r.Get(ctx, "f")
	for q, want := range map[string]string{"": "a", nimbus.Latest: "a", "1": "v", "live": "a", "2": ""} {
		p := fn.PolicyFor(q)
		if got := ""; len(p) > 0 {
			got = p[0].Sid
			if len(p) != 1 || got != want {
				t.Errorf("PolicyFor(%q) = %+v, want %q alone", q, p, want)
			}
		} else if want != "" {
			t.Errorf("PolicyFor(%q) empty, want %q", q, want)
		}
	}
	if v, err := r.Version(ctx, "f", 1); err != nil || v.PolicyQualified != nil || v.Policy != nil {
		t.Errorf("version 1's snapshot: %+v, %v; want no policy", v, err)
	}
	if rev, err := r.PolicyRevision(ctx, fn, "1"); err != nil || rev != v1.RevisionID {
		t.Errorf("PolicyRevision 1: %s (%v), want the version's %s", rev, err, v1.RevisionID)
	}

	if fn, err := r.RemovePermission(ctx, "f", "1", "v", v1.RevisionID); err != nil || fn.PolicyQualified["1"] != nil {
		t.Errorf("RemovePermission 1: %+v (%v)", fn, err)
	}
	if _, err := r.AddPermission(ctx, "f", "1", st("w"), "", nil); err != nil {
		t.Fatal(err)
	}
	if err := r.DeleteAlias(ctx, "f", "live"); err != nil {
		t.Fatal(err)
	}
	if fn, err = r.Get(ctx, "f"); err != nil || fn.PolicyFor("live") != nil || fn.PolicyFor("1") == nil {
		t.Errorf("after deleting the alias: %+v, %v; want version 1's policy kept, live's gone", fn, err)
	}
	if err := r.DeleteVersion(ctx, "f", 1); err != nil {
		t.Fatal(err)
	}
	if fn, err = r.Get(ctx, "f"); err != nil || fn.PolicyQualified != nil || len(fn.Policy) != 1 {
		t.Errorf("after deleting the version: %+v, %v; want $LATEST's policy alone", fn, err)
	}
	if _, err := r.CreateAlias(ctx, "f", "live", AliasInput{FunctionVersion: new(nimbus.Latest)}); err != nil {
		t.Fatal(err)
	}
	if fn, _ := r.Get(ctx, "f"); fn.PolicyFor("live") != nil {
		t.Errorf("a new alias live has the deleted one's policy: %+v", fn.PolicyFor("live"))
	}
}
