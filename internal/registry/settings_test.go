package registry

import (
	"errors"
	"maps"
	"strconv"
	"testing"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/store/mem"
)

// TestTagsAndPolicyPersist: tags change without a new RevisionID,
// permissions with one, a stale RevisionID and a duplicate Sid are
// refused, and all of it is read back by another registry on the store.
func TestTagsAndPolicyPersist(t *testing.T) {
	kv, blobs := mem.NewKV(), mem.NewBlobs()
	r := newTestRegistry(t, kv, blobs)
	ctx := t.Context()
	rt, h := "python3.11", "app.handler"
	if _, err := r.Create(ctx, FunctionInput{Name: "f", Runtime: &rt, Handler: &h, Tags: map[string]string{"team": "a"}}, testZip(t)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { fn, _ := r.Get(ctx, "f"); return fn.State == nimbus.StateActive })
	before, _ := r.Get(ctx, "f")

	fn, err := r.Tag(ctx, "f", map[string]string{"env": "prod", "team": "b"}, nil)
	if err != nil || fn.RevisionID != before.RevisionID || !maps.Equal(fn.Tags, map[string]string{"env": "prod", "team": "b"}) {
		t.Fatalf("Tag: %v %s (%v), want the RevisionID %s kept", fn.Tags, fn.RevisionID, err, before.RevisionID)
	}
	if fn, err = r.Tag(ctx, "f", nil, []string{"team", "none"}); err != nil || len(fn.Tags) != 1 {
		t.Fatalf("untag: %v (%v)", fn.Tags, err)
	}
	many := map[string]string{}
	for i := range MaxTags {
		many[strconv.Itoa(i)] = ""
	}
	if _, err := r.Tag(ctx, "f", many, nil); !errors.Is(err, nimbus.ErrInvalid) {
		t.Errorf("51 tags: %v, want ErrInvalid", err)
	}
	if _, err := r.Tag(ctx, "nope", map[string]string{"k": "v"}, nil); !errors.Is(err, nimbus.ErrNotFound) {
		t.Errorf("unknown function: %v", err)
	}

	st := nimbus.PolicyStatement{Sid: "a", Action: "lambda:InvokeFunction", Principal: "*"}
	if _, err := r.AddPermission(ctx, "f", "", st, "stale", nil); !errors.Is(err, nimbus.ErrPreconditionFailed) {
		t.Errorf("stale revision: %v", err)
	}
	fn, err = r.AddPermission(ctx, "f", "", st, before.RevisionID, nil)
	if err != nil || fn.RevisionID == before.RevisionID || len(fn.Policy) != 1 {
		t.Fatalf("AddPermission: %+v %s (%v)", fn.Policy, fn.RevisionID, err)
	}
	if _, err := r.AddPermission(ctx, "f", "", st, "", nil); !errors.Is(err, nimbus.ErrConflict) {
		t.Errorf("duplicate Sid: %v", err)
	}
	refuse := errors.New("too large")
	if _, err := r.AddPermission(ctx, "f", "", nimbus.PolicyStatement{Sid: "b", Action: "*", Principal: "*"}, "", func(next []nimbus.PolicyStatement) error {
		if len(next) != 2 {
			t.Errorf("check got %d statements", len(next))
		}
		return refuse
	}); !errors.Is(err, refuse) {
		t.Errorf("check's error: %v", err)
	}
	if _, err := r.SetRecursiveLoop(ctx, "f", nimbus.RecursiveLoopAllow); err != nil {
		t.Fatal(err)
	}
	if _, err := r.SetRecursiveLoop(ctx, "f", "Maybe"); !errors.Is(err, nimbus.ErrValidation) {
		t.Errorf("bad RecursiveLoop: %v", err)
	}
	if _, err := r.SetUpdateRuntimeOn(ctx, "f", nimbus.UpdateRuntimeOnFunctionUpdate); err != nil {
		t.Fatal(err)
	}

	other := newTestRegistry(t, kv, blobs)
	got, err := other.Get(ctx, "f")
	if err != nil || !maps.Equal(got.Tags, map[string]string{"env": "prod"}) || len(got.Policy) != 1 || got.Policy[0] != st ||
		got.RecursiveLoop != nimbus.RecursiveLoopAllow || got.UpdateRuntimeOn != nimbus.UpdateRuntimeOnFunctionUpdate {
		t.Fatalf("read back: %+v (%v)", got, err)
	}
	if _, err := r.RemovePermission(ctx, "f", "", "x", ""); !errors.Is(err, nimbus.ErrNotFound) {
		t.Errorf("unknown Sid: %v", err)
	}
	if fn, err := r.RemovePermission(ctx, "f", "", "a", ""); err != nil || fn.Policy != nil {
		t.Errorf("RemovePermission: %+v (%v)", fn, err)
	}
}
