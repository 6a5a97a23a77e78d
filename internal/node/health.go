package node

import (
	"fmt"

	"github.com/nimbus-serverless/nimbus/internal/api"
)

// readyChecks are the checks of GET /readyz: the store is connected and
// takes writes, the sandbox's pre-started helpers work, and a cluster
// member has caught up with the keys and functions (catchup.go).
func (n *Node) readyChecks() []api.ReadyCheck {
	return []api.ReadyCheck{
		{Name: "store", Check: n.storeReady},
		{Name: "sandbox", Check: n.sandbox.Ready},
		{Name: "catch-up", Check: n.catchUp.check},
	}
}

// storeReady returns nil when the store takes writes (its disk is not
// full, for the embedded server) and the node's connection to it is up.
func (n *Node) storeReady() error {
	if err := n.store.Healthy(); err != nil {
		return err
	}
	if nc := n.store.Conn(); nc != nil && !nc.IsConnected() {
		return fmt.Errorf("store: not connected (%s)", nc.Status())
	}
	return nil
}
