package node

import (
	"context"

	"github.com/nimbus-serverless/nimbus/internal/api"
)

// asyncParts is the node's Async Service.
type asyncParts struct{}

func (n *Node) openAsync(ctx context.Context) error { return nil }

func (n *Node) asyncAPI() api.AsyncService { return nil }

func (n *Node) closeAsync() {}
