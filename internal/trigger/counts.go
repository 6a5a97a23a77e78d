package trigger

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/lazyre"
	"github.com/nimbus-serverless/nimbus/internal/store"
)

// Counts is what a trigger's deliveries came to: the durable part of its
// status. Nodes add their Counts up (Add), so the figures are the
// cluster's.
type Counts struct {
	Delivered int64     `json:"delivered"`
	Failed    int64     `json:"failed"`
	LastEvent time.Time `json:"lastEvent,omitzero"`
	// LastError is why the last failed attempt failed (a later success
	// does not clear it), at LastErrorTime.
	LastError     string    `json:"lastError,omitempty"`
	LastErrorTime time.Time `json:"lastErrorTime,omitzero"`
}

// IsZero reports whether c counts nothing.
func (c Counts) IsZero() bool { return c == Counts{} }

// Add returns c with d added: the sums of the counts, the later last
// event, and the later last error.
func (c Counts) Add(d Counts) Counts {
	c.Delivered += d.Delivered
	c.Failed += d.Failed
	if d.LastEvent.After(c.LastEvent) {
		c.LastEvent = d.LastEvent
	}
	if d.LastError != "" && !d.LastErrorTime.Before(c.LastErrorTime) {
		c.LastError, c.LastErrorTime = d.LastError, d.LastErrorTime
	}
	return c
}

// CountsBucket is the KV bucket of the triggers' counts, one key per
// trigger (CountsKey).
const CountsBucket = "trigger_status"

// validCountsKey is what store.KV takes as a key, without ".".
var validCountsKey = lazyre.New(`^[-_=a-zA-Z0-9]+$`)

// CountsKey is the store key of a trigger's counts: its ID (a UUID), or for
// a trigger without a usable ID a digest of its function and name.
func CountsKey(function string, t *nimbus.Trigger) string {
	if validCountsKey().MatchString(t.ID) {
		return t.ID
	}
	sum := sha256.Sum256([]byte(function + "/" + t.Name))
	return "n-" + hex.EncodeToString(sum[:16])
}

// CountStore keeps triggers' Counts in a KV bucket shared by the nodes.
// Each writer adds its deltas with a compare-and-swap loop on the key's
// revision, so concurrent writers add up rather than overwrite. It is safe
// for concurrent use; it caches nothing (the Manager does).
type CountStore struct {
	kv store.KV
}

// NewCountStore returns a CountStore on kv (the CountsBucket bucket).
func NewCountStore(kv store.KV) *CountStore { return &CountStore{kv: kv} }

// Add adds d to the stored counts of key and returns the new total and its
// revision. It retries while other writers change the key meanwhile; other
// errors are the store's (e.g. nimbus.ErrUnavailable), and then nothing was
// added.
func (s *CountStore) Add(ctx context.Context, key string, d Counts) (Counts, uint64, error) {
	for {
		if err := ctx.Err(); err != nil {
			return Counts{}, 0, err
		}
		cur, rev, err := s.Read(ctx, key)
		if err != nil {
			return Counts{}, 0, err
		}
		next := cur.Add(d)
		b, _ := json.Marshal(next)
		if rev == 0 {
			rev, err = s.kv.Create(ctx, key, b)
		} else {
			rev, err = s.kv.Update(ctx, key, b, rev)
		}
		if errors.Is(err, nimbus.ErrConflict) || errors.Is(err, nimbus.ErrPreconditionFailed) {
			continue // another writer came first: add to its total
		}
		if err != nil {
			return Counts{}, 0, fmt.Errorf("write trigger counts: %w", err)
		}
		return next, rev, nil
	}
}

// Read returns the stored counts of key and their revision: zero and 0
// when there are none. A damaged value reads as zero (and is replaced by
// the next Add), so counting goes on.
func (s *CountStore) Read(ctx context.Context, key string) (Counts, uint64, error) {
	e, err := s.kv.Get(ctx, key)
	if errors.Is(err, nimbus.ErrNotFound) {
		return Counts{}, 0, nil
	}
	if err != nil {
		return Counts{}, 0, fmt.Errorf("read trigger counts: %w", err)
	}
	var c Counts
	if json.Unmarshal(e.Value, &c) != nil {
		c = Counts{}
	}
	return c, e.Revision, nil
}

// Delete removes the counts of key (a deleted trigger's). A key already
// gone is not an error.
func (s *CountStore) Delete(ctx context.Context, key string) error {
	err := s.kv.Delete(ctx, key)
	if err != nil && !errors.Is(err, nimbus.ErrNotFound) {
		return fmt.Errorf("delete trigger counts: %w", err)
	}
	return nil
}
