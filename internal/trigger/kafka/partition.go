package kafka

import (
	"context"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/trigger"
)

// partition delivers one partition's records in order, one batch at a time,
// and commits each batch after the sink took it.
type partition struct {
	c      *consumer
	id     int32
	ctx    context.Context // cancelled to abort the batch in flight
	cancel context.CancelFunc
	quit   chan struct{} // closed when the partition goes away
	done   chan struct{} // closed when run returns
	wake   chan struct{} // records arrived (capacity 1)

	mu     sync.Mutex
	queue  []*kgo.Record
	first  time.Time // when the oldest queued record arrived
	paused bool      // fetching from this partition is paused
}

func newPartition(c *consumer, id int32) *partition {
	ctx, cancel := context.WithCancel(c.ctx)
	return &partition{
		c: c, id: id, ctx: ctx, cancel: cancel,
		quit: make(chan struct{}), done: make(chan struct{}), wake: make(chan struct{}, 1),
	}
}

// add queues records and pauses fetching while a full batch waits.
func (p *partition) add(recs []*kgo.Record) {
	p.mu.Lock()
	if len(p.queue) == 0 {
		p.first = time.Now()
	}
	p.queue = append(p.queue, recs...)
	if !p.paused && len(p.queue) >= p.c.opts.BatchSize {
		p.paused = true
		p.c.cl.PauseFetchPartitions(p.tp())
	}
	p.mu.Unlock()
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// tp names the partition the way franz-go does.
func (p *partition) tp() map[string][]int32 {
	return map[string][]int32{p.c.src.cfg.Topic: {p.id}}
}

// stop ends the worker: a batch in flight gets wait to finish, then it is
// cancelled.
func (p *partition) stop(wait time.Duration) {
	close(p.quit)
	if wait > 0 {
		t := time.NewTimer(wait)
		select {
		case <-p.done:
		case <-t.C:
		}
		t.Stop()
	}
	p.cancel()
	<-p.done
}

// run delivers batches until the partition is stopped.
func (p *partition) run() {
	defer close(p.done)
	for {
		batch, ok := p.next()
		if !ok || !p.deliver(batch) {
			return
		}
		p.commit(batch[len(batch)-1])
	}
}

// next waits for a batch: BatchSize records, or fewer once BatchWindow has
// passed since the oldest arrived. It reports false when stopped.
func (p *partition) next() ([]*kgo.Record, bool) {
	for {
		p.mu.Lock()
		n, wait := len(p.queue), time.Duration(0)
		if n > 0 && n < p.c.opts.BatchSize {
			wait = p.c.opts.BatchWindow - time.Since(p.first)
		}
		if n > 0 && wait <= 0 {
			return p.take(), true // unlocks
		}
		p.mu.Unlock()
		if !p.await(wait) {
			return nil, false
		}
	}
}

// take removes the next batch; it is called with p.mu held and releases
// it.
func (p *partition) take() []*kgo.Record {
	n := min(len(p.queue), p.c.opts.BatchSize)
	batch := p.queue[:n:n]
	p.queue = p.queue[n:]
	if len(p.queue) == 0 {
		p.queue = nil // let the fetch's backing array go
	}
	if p.paused && len(p.queue) < p.c.opts.BatchSize {
		p.paused = false
		p.c.cl.ResumeFetchPartitions(p.tp())
	}
	p.mu.Unlock()
	return batch
}

// await waits for records (or d, when positive), reporting false when
// stopped.
func (p *partition) await(d time.Duration) bool {
	var timeout <-chan time.Time
	if d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		timeout = t.C
	}
	select {
	case <-p.wake:
	case <-timeout:
	case <-p.quit:
		return false
	case <-p.ctx.Done():
		return false
	}
	return true
}

// deliver hands the batch to the sink, retrying with back-off until it
// succeeds (true) or the partition is stopped (false).
func (p *partition) deliver(recs []*kgo.Record) bool {
	batch := make([]trigger.Message, len(recs))
	for i, r := range recs {
		batch[i] = p.c.message(r)
	}
	backoff := p.c.src.minBackoff
	for {
		select {
		case p.c.slots <- struct{}{}:
		case <-p.quit:
			return false
		case <-p.ctx.Done():
			return false
		}
		err := p.c.sink.Deliver(p.ctx, batch)
		<-p.c.slots
		if err == nil {
			return true
		}
		if p.ctx.Err() != nil {
			return false
		}
		p.c.log.Warn("kafka deliver failed; retrying", "partition", p.id,
			"offset", recs[0].Offset, "retry_in", backoff, nimbus.LogErr, err)
		if !p.backoff(backoff) {
			return false
		}
		backoff = min(2*backoff, p.c.src.maxBackoff)
	}
}

// backoff waits d, reporting false when the partition is stopped.
func (p *partition) backoff(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-p.quit:
		return false
	case <-p.ctx.Done():
		return false
	}
}

// commit commits the offset after last. It runs even when the partition
// is being stopped: the batch was delivered, so its offset must be saved.
func (p *partition) commit(last *kgo.Record) {
	ctx, cancel := context.WithTimeout(context.Background(), commitTimeout)
	defer cancel()
	if err := p.c.cl.CommitRecords(ctx, last); err != nil {
		// The batch will be delivered again by whoever owns the
		// partition next.
		p.c.log.Warn("kafka commit failed", "partition", p.id, "offset", last.Offset, nimbus.LogErr, err)
	}
}
