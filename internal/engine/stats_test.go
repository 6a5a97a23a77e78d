package engine

import (
	"sync"
	"testing"
	"time"
)

// TestSnapshot: while two requests run on a function whose reserved
// concurrency is 2, and a third waits, the snapshot shows two busy
// instances, one waiting request and two in flight; once they are done,
// two idle instances and nothing waiting.
func TestSnapshot(t *testing.T) {
	h := newHarness(t, nil)
	two := 2
	fn := *h.fn
	fn.ReservedConcurrency = &two
	var wg sync.WaitGroup
	for range 3 {
		wg.Go(func() { h.ok(t, &fn, `{"sleep_ms":700}`) })
	}
	deadline := time.Now().Add(5 * time.Second)
	var got PoolStats
	for time.Now().Before(deadline) {
		if s := h.e.Snapshot(); len(s) == 1 {
			got = s[0]
			if got.Busy == 2 && got.Waiting == 1 {
				break
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	want := PoolStats{Function: "behave", Busy: 2, Waiting: 1, InFlight: 2}
	if got != want {
		t.Errorf("snapshot while busy = %+v, want %+v", got, want)
	}
	if n := h.e.Node(); n.Instances != 2 || n.MemoryMB != 256 || n.MaxInstances != 1000 {
		t.Errorf("node = %+v, want 2 instances of 128 MB of at most 1000", n)
	}
	if got := h.e.Instances("behave"); len(got) != 2 || !got[0].Busy || !got[1].Busy || got[0].ID == got[1].ID || got[0].Version != "" {
		t.Errorf("instances while busy = %+v, want two busy ones of $LATEST", got)
	}
	if got := h.e.Instances("other"); len(got) != 0 {
		t.Errorf("instances of another function = %+v, want none", got)
	}
	wg.Wait()
	if got := h.e.Instances("behave"); len(got) != 2 || got[0].Busy || got[1].Busy {
		t.Errorf("instances once done = %+v, want two idle ones", got)
	}
	s := h.e.Snapshot()
	if len(s) != 1 || s[0].Idle != 2 || s[0].Busy != 0 || s[0].Waiting != 0 || s[0].InFlight != 0 {
		t.Errorf("snapshot once done = %+v, want 2 idle instances only", s)
	}
	// Deleted: the pool drains, and once empty it is not shown, though
	// the reaper has not forgotten it yet.
	h.e.Refresh("behave", nil)
	deadline = time.Now().Add(5 * time.Second)
	for len(h.e.Snapshot()) > 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if s := h.e.Snapshot(); len(s) > 0 {
		t.Errorf("snapshot of a deleted function = %+v, want none", s)
	}
}
