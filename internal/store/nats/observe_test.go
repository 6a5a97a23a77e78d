package nats_test

import (
	"bytes"
	"slices"
	"sync"
	"testing"
	"time"

	natsstore "github.com/nimbus-serverless/nimbus/internal/store/nats"
)

// TestObserveWrite: every KV write and a blob put are told to
// ObserveWrite with their operation and a duration; reads are not.
func TestObserveWrite(t *testing.T) {
	checkLeaks(t)
	var mu sync.Mutex
	var ops []string
	s, err := natsstore.Open(t.Context(), natsstore.Config{DataDir: t.TempDir(), ObserveWrite: func(op string, d time.Duration) {
		mu.Lock()
		defer mu.Unlock()
		if d <= 0 {
			t.Errorf("%s took %s", op, d)
		}
		ops = append(ops, op)
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close(t.Context()) })
	kv, err := s.KV(t.Context(), "observed")
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	rev, err := kv.Create(ctx, "k", []byte("1"))
	if err == nil {
		_, err = kv.Update(ctx, "k", []byte("2"), rev)
	}
	if err == nil {
		_, err = kv.Put(ctx, "k", []byte("3"))
	}
	if err == nil {
		_, err = kv.Get(ctx, "k")
	}
	if err == nil {
		err = kv.Delete(ctx, "k")
	}
	if err == nil {
		_, _, err = s.Blobs().Put(ctx, bytes.NewReader([]byte("blob")))
	}
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if want := []string{"kv_create", "kv_update", "kv_put", "kv_delete", "blob_put"}; !slices.Equal(ops, want) {
		t.Errorf("observed %q, want %q", ops, want)
	}
}
