package engine

import "time"

// The queue in front of scale-out (Config.CPUQueue; docs/scaling.md,
// "Queue instead of oversubscription"). A function's instances are
// processes: with more of them busy than the node has cores, CPU-bound
// ones only take turns on the CPU, and every request's latency is at the
// mercy of the kernel's time slices (a p99 many times the p50). So once
// Config.CPUQueue instances of a version are busy, a request that would
// make one more busy (an idle instance, or a new one) waits in the pool's
// queue for a busy instance's slot instead, when
//
//   - the version's requests are slowed by running alongside each other:
//     its busy time per request (acquisition to release) with more than
//     Config.CPUQueue instances busy is over contention times its fastest
//     (a minimum that drifts up slowly). A function that waits on I/O (or
//     sleeps) takes as long with 16 instances busy as with 2, and scales
//     out as before;
//   - and the wait it can expect is short: its place among the held
//     requests, times the recent busy time per request, over the busy
//     slots, within Config.CPUQueueWait.
//
// A request held longer than Config.CPUQueueWait (never more than the
// function's timeout) is let go and takes an idle instance or starts one.

// DefaultCPUQueueWait bounds a held request's wait when
// Config.CPUQueueWait is not set.
const DefaultCPUQueueWait = 20 * time.Millisecond

// busyAlpha is the weight of a new sample in the busy times' moving
// averages (1/busyAlpha), minDrift the minimum's (1/minDrift, upward
// only); contention is how much slower than its fastest a request must
// run with more than Config.CPUQueue instances busy for the queue to hold
// any.
const (
	busyAlpha  = 8
	minDrift   = 256
	contention = 2
)

// noteBusyLocked adds a request's busy time on its instance (from its
// acquisition to its release) to the version's figures: the moving
// average of all requests' and of those that ran with more than
// Config.CPUQueue instances busy (p.busy, counted before this one's
// release), and the drifting minimum.
func (p *pool) noteBusyLocked(took time.Duration) {
	if took <= 0 || p.e.cfg.CPUQueue <= 0 {
		return
	}
	ewma(&p.avgBusy, took)
	if p.busy > p.e.cfg.CPUQueue {
		ewma(&p.hotBusy, took)
	}
	if p.minBusy == 0 || took < p.minBusy {
		p.minBusy = took
	} else {
		p.minBusy += (took - p.minBusy) / minDrift
	}
}

// ewma moves the average *avg toward x (or starts it at x).
func ewma(avg *time.Duration, x time.Duration) {
	if *avg == 0 {
		*avg = x
		return
	}
	*avg += (x - *avg) / busyAlpha
}

// holdLocked reports whether a request that finds no free slot on a busy
// instance should wait for one rather than make another instance busy,
// and for how long at most.
func (p *pool) holdLocked() (time.Duration, bool) {
	c := p.e.cfg.CPUQueue
	if c <= 0 || p.busy < c || p.hotBusy <= contention*p.minBusy || p.draining {
		return 0, false
	}
	bound := p.e.cfg.CPUQueueWait
	if t := time.Duration(p.fn.Timeout) * time.Second; t > 0 && t < bound {
		bound = t
	}
	slots := time.Duration(p.busy * p.perInstance)
	if p.avgBusy*time.Duration(p.held+1)/slots > bound {
		return 0, false
	}
	return bound, true
}

// heldShortLocked is how many held requests no busy instance is counted on
// to serve: the busy instances (with those starting) fell below
// Config.CPUQueue, e.g. one broke.
func (p *pool) heldShortLocked() int {
	if p.held == 0 {
		return 0
	}
	short := p.e.cfg.CPUQueue - p.busy - p.starting
	return min(p.held, max(short, 0)*p.perInstance)
}

// servesHeldLocked reports whether a held request may take an idle
// instance: fewer instances are busy than the queue keeps busy.
func (p *pool) servesHeldLocked() bool { return p.busy < p.e.cfg.CPUQueue }

// unhold lets w go from the hold (its bound passed): it takes an idle
// instance if there is one, or one is started for it.
func (p *pool) unhold(w *waiter) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if w.el == nil || !w.held {
		return
	}
	w.held = false
	p.held--
	p.serveWaitersLocked()
}

// dequeueLocked takes w out of the queue.
func (p *pool) dequeueLocked(w *waiter) {
	p.waiters.Remove(w.el)
	w.el = nil
	if w.held {
		w.held = false
		p.held--
	}
}
