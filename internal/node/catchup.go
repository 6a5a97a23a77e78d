package node

import (
	"context"
	"errors"
	"strings"
	"sync"
	"time"

	"github.com/nimbus-serverless/nimbus"
)

// Catching up after a restart.
//
// A cluster member that restarts reads its own copy of the buckets first,
// and that copy lacks what the others wrote while it was away until
// JetStream has brought it up to date. Until its copies of the keys and
// functions buckets hold what their leaders held, the node is not ready
// (GET /readyz's "catch-up" check says what it waits for), and a key it
// does not know is looked up again in the store rather than refused
// (auth.Keys.SetBehind). Once they have caught up, the keys and the
// functions are read again (Registry.Resync: the watch only brings changes
// made after it began) and the node is ready.

// catchUpBuckets are the buckets a restarted member waits for.
var catchUpBuckets = []string{"keys", "functions"}

// catchUpEvery is how often the node compares its copies with the leaders'.
const catchUpEvery = 250 * time.Millisecond

// catchUp is the state of the catch-up: why the node is not caught up
// yet, or "" once it is.
type catchUp struct {
	mu      sync.Mutex
	waiting string
}

func (c *catchUp) set(why string) {
	c.mu.Lock()
	c.waiting = why
	c.mu.Unlock()
}

// check is the "catch-up" ready check.
func (c *catchUp) check() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.waiting != "" {
		return nimbus.Errorf(nimbus.ErrUnavailable, "catching up with the cluster: %s", c.waiting)
	}
	return nil
}

// startCatchUp marks a cluster member behind; catchUpLoop then follows it
// until it has caught up.
func (n *Node) startCatchUp() {
	if n.cfg.Cluster.Listen == "" {
		return
	}
	n.catchUp.set("not compared with the cluster yet")
	n.auth.keys.SetBehind(true)
}

// catchUpLoop waits until this member's copies of catchUpBuckets have
// caught up with their leaders, reads the keys again and marks the node
// caught up.
func (n *Node) catchUpLoop(ctx context.Context) {
	if n.cfg.Cluster.Listen == "" {
		return
	}
	for {
		why, err := n.caughtUp(ctx)
		if err == nil && why == "" {
			err = n.auth.keys.Reload(ctx)
			if err == nil {
				n.registry.Resync() // functions changed while it was away
				n.auth.keys.SetBehind(false)
				n.catchUp.set("")
				n.log.Info("caught up with the cluster")
				return
			}
		}
		if err != nil {
			why = err.Error()
		}
		n.catchUp.set(why)
		select {
		case <-ctx.Done():
			return
		case <-time.After(catchUpEvery):
		}
	}
}

// caughtUp returns "" when every bucket of catchUpBuckets has caught up,
// else what the node waits for.
func (n *Node) caughtUp(ctx context.Context) (string, error) {
	var waiting []string
	var errs []error
	for _, b := range catchUpBuckets {
		why, err := n.store.CaughtUp(ctx, b)
		if err != nil {
			errs = append(errs, err)
		} else if why != "" {
			waiting = append(waiting, why)
		}
	}
	return strings.Join(waiting, "; "), errors.Join(errs...)
}
