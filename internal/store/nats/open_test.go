package nats

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// A bucket made by another member at the same moment: create reports it
// exists, and open reports it not found twice more (a meta leader that has
// not applied the creation yet) before it finds it. TestClusterTriggerKill
// once failed at start with "open object store nimbus_code: nats: bucket
// not found" when open was tried only once.
func TestOpenOrCreateRace(t *testing.T) {
	opens, creates := 0, 0
	open := func() (string, error) {
		opens++
		if opens <= 3 {
			return "", jetstream.ErrBucketNotFound
		}
		return "bucket", nil
	}
	create := func() (string, error) {
		creates++
		return "", errors.Join(jetstream.ErrBucketExists, jetstream.ErrStreamNameAlreadyInUse)
	}
	v, err := openOrCreate(context.Background(), open, create)
	if err != nil || v != "bucket" {
		t.Fatalf("openOrCreate = %q, %v; want the bucket", v, err)
	}
	if opens != 4 || creates != 1 {
		t.Fatalf("opens %d, creates %d; want 4 and 1", opens, creates)
	}
}

func TestOpenOrCreateErrors(t *testing.T) {
	boom := errors.New("boom")
	notFound := func() (string, error) { return "", jetstream.ErrBucketNotFound }

	// Made here: the create's result, with no second open.
	if v, err := openOrCreate(context.Background(), notFound, func() (string, error) { return "made", nil }); err != nil || v != "made" {
		t.Errorf("create: %q, %v", v, err)
	}
	// Any other error of open or create is returned as it is.
	if _, err := openOrCreate(context.Background(), func() (string, error) { return "", boom }, nil); !errors.Is(err, boom) {
		t.Errorf("open failing: %v", err)
	}
	if _, err := openOrCreate(context.Background(), notFound, func() (string, error) { return "", boom }); !errors.Is(err, boom) {
		t.Errorf("create failing: %v", err)
	}
	// A bucket never found after it was reported made: the wait ends with
	// the caller's context, with the not-found error.
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := openOrCreate(ctx, notFound, func() (string, error) { return "", jetstream.ErrBucketExists })
	if !errors.Is(err, jetstream.ErrBucketNotFound) {
		t.Errorf("never found: %v", err)
	}
	if d := time.Since(start); d > existsWait/2 {
		t.Errorf("never found: returned after %s, past the context's end", d)
	}
}
