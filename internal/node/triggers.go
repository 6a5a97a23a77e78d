package node

import (
	"context"

	"github.com/nimbus-serverless/nimbus/internal/api"
)

// triggerParts are the node's trigger manager and what it runs.
type triggerParts struct{}

// openTriggers starts the triggers of every function (after the engine and
// the Async Service are open).
func (n *Node) openTriggers(ctx context.Context) error { return nil }

// triggerAPI is what the API uses to manage triggers.
func (n *Node) triggerAPI() api.TriggerService { return nil }

// closeTriggers stops every trigger's source; messages in flight are not
// acknowledged, so they are delivered again.
func (n *Node) closeTriggers() {}
