package redis

import (
	"encoding/json"
	"slices"
	"testing"

	goredis "github.com/redis/go-redis/v9"

	"github.com/nimbus-serverless/nimbus/internal/trigger"
)

// groups lists the names of s's consumer groups.
func groups(t *testing.T, rc *goredis.Client, s string) []string {
	t.Helper()
	gs, err := rc.XInfoGroups(t.Context(), s).Result()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, g := range gs {
		names = append(names, g.Name)
	}
	return names
}

// consumers lists the names of group's consumers on s.
func consumers(t *testing.T, rc *goredis.Client, s, group string) []string {
	t.Helper()
	cs, err := rc.XInfoConsumers(t.Context(), s, group).Result()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, c := range cs {
		names = append(names, c.Name)
	}
	return names
}

// readAs reads n new entries of s as consumer of group, leaving them pending.
func readAs(t *testing.T, rc *goredis.Client, s, group, consumer string, n int) []string {
	t.Helper()
	res, err := rc.XReadGroup(t.Context(), &goredis.XReadGroupArgs{
		Group: group, Consumer: consumer, Streams: []string{s, ">"}, Count: int64(n), Block: -1,
	}).Result()
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, m := range res[0].Messages {
		ids = append(ids, m.ID)
	}
	return ids
}

func TestForgetOwnGroup(t *testing.T) {
	rc := server(t)
	s := stream(t, rc)
	add(t, rc, s, 0, 3)
	o := trigger.Options{Group: "nimbus-fn-trigger"}
	for _, g := range []string{o.Group, "other"} {
		if err := rc.XGroupCreate(t.Context(), s, g, "0").Err(); err != nil {
			t.Fatal(err)
		}
	}
	readAs(t, rc, s, o.Group, "c1", 2) // pending entries do not keep Nimbus's group
	src := source(t, serverURL(), s, "c1")
	for i := range 2 { // idempotent: the second finds nothing to do
		if err := src.Forget(t.Context(), o); err != nil {
			t.Fatalf("Forget #%d: %v", i+1, err)
		}
		if got := groups(t, rc, s); !slices.Equal(got, []string{"other"}) {
			t.Fatalf("after Forget #%d groups = %v, want only [other]", i+1, got)
		}
	}
	// A stream that is gone (or never was) is success too.
	if err := rc.Del(t.Context(), s).Err(); err != nil {
		t.Fatal(err)
	}
	if err := src.Forget(t.Context(), o); err != nil {
		t.Errorf("Forget without the stream: %v", err)
	}
	if n, _ := rc.Exists(t.Context(), s).Result(); n != 0 {
		t.Errorf("Forget created the stream")
	}
	// Without Options.Group the group is the shared default: left alone.
	if err := rc.XGroupCreateMkStream(t.Context(), s, "nimbus", "0").Err(); err != nil {
		t.Fatal(err)
	}
	if err := src.Forget(t.Context(), trigger.Options{}); err != nil || !slices.Equal(groups(t, rc, s), []string{"nimbus"}) {
		t.Errorf("Forget without a group = %v, groups %v; want nil, [nimbus] kept", err, groups(t, rc, s))
	}
}

func TestForgetUserGroup(t *testing.T) {
	rc := server(t)
	s := stream(t, rc)
	add(t, rc, s, 0, 3)
	if err := rc.XGroupCreate(t.Context(), s, "theirs", "0").Err(); err != nil {
		t.Fatal(err)
	}
	raw, _ := json.Marshal(Config{URL: serverURL(), Stream: s, Group: "theirs", Consumer: "node-1"})
	src, err := newSource(raw)
	if err != nil {
		t.Fatal(err)
	}
	o := trigger.Options{Group: "nimbus-fn-trigger"}
	ids := readAs(t, rc, s, "theirs", "node-1", 2)
	readAs(t, rc, s, "theirs", "node-2", 1)

	// With pending entries the consumer stays: deleting it would lose them.
	if err := src.Forget(t.Context(), o); err != nil {
		t.Fatalf("Forget with pending entries: %v", err)
	}
	if got := consumers(t, rc, s, "theirs"); !slices.Equal(got, []string{"node-1", "node-2"}) {
		t.Fatalf("consumers = %v, want both kept while node-1 has pending entries", got)
	}
	if err := rc.XAck(t.Context(), s, "theirs", ids...).Err(); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if err := src.Forget(t.Context(), o); err != nil {
			t.Fatalf("Forget #%d: %v", i+1, err)
		}
		if got := consumers(t, rc, s, "theirs"); !slices.Equal(got, []string{"node-2"}) {
			t.Fatalf("after Forget #%d consumers = %v, want [node-2]: only this node's consumer goes", i+1, got)
		}
	}
	if got := groups(t, rc, s); !slices.Equal(got, []string{"theirs"}) {
		t.Errorf("groups = %v, want the user's group kept", got)
	}
	// A group or stream that is gone is success.
	if err := rc.XGroupDestroy(t.Context(), s, "theirs").Err(); err != nil {
		t.Fatal(err)
	}
	if err := src.Forget(t.Context(), o); err != nil {
		t.Errorf("Forget without the group: %v", err)
	}
	if err := rc.Del(t.Context(), s).Err(); err != nil {
		t.Fatal(err)
	}
	if err := src.Forget(t.Context(), o); err != nil {
		t.Errorf("Forget without the stream: %v", err)
	}
}
