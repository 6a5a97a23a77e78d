package node

import (
	"runtime"
	"strings"
	"testing"
	"time"
)

// TestCPUQueueConfig: the queue in front of scale-out is on by default,
// from twice the node's CPUs;
// a negative --cpu-queue, or a --cpu-queue-wait that is not positive with
// the queue on, is refused with the flag named.
func TestCPUQueueConfig(t *testing.T) {
	if c := Defaults(); c.CPUQueue != 2*runtime.NumCPU() || c.CPUQueueWait <= 0 {
		t.Errorf("defaults: --cpu-queue %d, --cpu-queue-wait %s; want %d and a positive wait", c.CPUQueue, c.CPUQueueWait, 2*runtime.NumCPU())
	}
	for _, tc := range []struct {
		queue int
		wait  string
		want  string // "" for valid
	}{
		{4, "", ""},
		{-1, "", "--cpu-queue "},
		{4, "0s", "--cpu-queue-wait"},
		{4, "-1ms", "--cpu-queue-wait"},
		{0, "0s", ""}, // off: the wait is not used (serve refuses --cpu-queue-wait without --cpu-queue)
	} {
		c := Defaults()
		c.CPUQueue = tc.queue
		if tc.wait != "" {
			d, err := time.ParseDuration(tc.wait)
			if err != nil {
				t.Fatal(err)
			}
			c.CPUQueueWait = d
		}
		err := c.Validate()
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("--cpu-queue %d --cpu-queue-wait %q: %v", tc.queue, tc.wait, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("--cpu-queue %d --cpu-queue-wait %q: %v, want an error naming %s", tc.queue, tc.wait, err, tc.want)
		}
	}
}
