package node

import (
	"context"

	"github.com/nimbus-serverless/nimbus/internal/audit"
	auditnats "github.com/nimbus-serverless/nimbus/internal/audit/nats"
)

// openAudit opens the audit trail on the store's JetStream: the stream
// <prefix>_AUDIT, kept for AuditRetention.
func (n *Node) openAudit(ctx context.Context) error {
	l, err := auditnats.Open(ctx, auditnats.Config{
		JS: n.store.JetStream(), Prefix: n.cfg.NATSPrefix, Replicas: n.store.Replicas(), Retention: n.cfg.AuditRetention,
		Health: n.store.Healthy, Logger: n.log,
	})
	if err != nil {
		return err
	}
	n.audit = l
	return nil
}

// auditAPI is the API's audit trail (nil when it was not opened).
func (n *Node) auditAPI() audit.Log {
	if n.audit == nil {
		return nil
	}
	return n.audit
}
