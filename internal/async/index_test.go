package async

import (
	"testing"
	"time"

	"github.com/nimbus-serverless/nimbus"
)

func TestIndexCountsFollowRecords(t *testing.T) {
	now := time.Now()
	x := newIndex(time.Hour, func() time.Time { return now })
	c0 := now.Add(-time.Minute)
	x.apply(&nimbus.Task{ID: "a", Function: "f", Status: nimbus.TaskEnqueued, Created: c0, Updated: c0})
	x.apply(&nimbus.Task{ID: "b", Function: "f", Status: nimbus.TaskEnqueued, Created: c0, Updated: c0})
	x.apply(&nimbus.Task{ID: "a", Function: "f", Status: nimbus.TaskRunning, Created: c0, Updated: c0.Add(time.Second)})
	x.apply(&nimbus.Task{ID: "a", Function: "f", Status: nimbus.TaskSucceeded, Created: c0, Updated: c0.Add(2 * time.Second)})
	// A late, older record does not undo a final one.
	x.apply(&nimbus.Task{ID: "a", Function: "f", Status: nimbus.TaskRunning, Created: c0, Updated: c0.Add(time.Second)})
	got := x.counts("f")
	if got[nimbus.TaskSucceeded] != 1 || got[nimbus.TaskEnqueued] != 1 || len(got) != 2 {
		t.Fatalf("counts = %v", got)
	}
	// A re-drive (a later creation time) starts the task again.
	x.apply(&nimbus.Task{ID: "a", Function: "f", Status: nimbus.TaskEnqueued, Created: now, Updated: now})
	if got := x.counts("f"); got[nimbus.TaskEnqueued] != 2 || len(got) != 1 {
		t.Fatalf("counts after re-drive = %v", got)
	}
	now = now.Add(2 * time.Hour)
	x.sweep()
	if got := x.counts("f"); len(got) != 0 {
		t.Fatalf("counts after the retention = %v", got)
	}
}
