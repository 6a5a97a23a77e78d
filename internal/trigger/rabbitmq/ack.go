package rabbitmq

import (
	"fmt"
	"sync"
)

// acker acknowledges the deliveries of one channel batch by batch, while
// other batches of the same channel are still out.
//
// A channel numbers its deliveries 1, 2, 3, ... (the consumer is the
// channel's only source of deliveries and nothing is requeued on it), and
// acker knows floor, the highest tag below which everything is
// acknowledged. A batch that is exactly floor+1..last is acknowledged with
// one basic.ack(last, multiple): that covers its own tags and ones already
// acknowledged, never a delivery of another batch. Any other batch is
// acknowledged tag by tag (multiple=false). The acks go out under the
// mutex, so the broker sees them in the order floor was advanced.
type acker struct {
	send func(tag uint64, multiple bool) error // amqp.Channel.Ack

	mu    sync.Mutex
	floor uint64              // every tag <= floor is acknowledged
	above map[uint64]struct{} // acknowledged tags > floor
}

func newAcker(send func(tag uint64, multiple bool) error) *acker {
	return &acker{send: send, above: make(map[uint64]struct{})}
}

// ack acknowledges tags, the deliveries of one batch in arrival order.
func (a *acker) ack(tags []uint64) error {
	if len(tags) == 0 {
		return nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if tags[0] == a.floor+1 && consecutive(tags) {
		last := tags[len(tags)-1]
		if err := a.send(last, true); err != nil {
			return fmt.Errorf("ack deliveries %d to %d: %w", tags[0], last, err)
		}
		a.floor = last
	} else {
		for _, t := range tags {
			if err := a.send(t, false); err != nil {
				return fmt.Errorf("ack delivery %d: %w", t, err)
			}
			a.above[t] = struct{}{}
		}
	}
	for {
		if _, ok := a.above[a.floor+1]; !ok {
			return nil
		}
		delete(a.above, a.floor+1)
		a.floor++
	}
}

// consecutive reports whether tags are n, n+1, n+2, ...
func consecutive(tags []uint64) bool {
	for i := 1; i < len(tags); i++ {
		if tags[i] != tags[0]+uint64(i) {
			return false
		}
	}
	return true
}
