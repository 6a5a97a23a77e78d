package node

import (
	"context"

	"github.com/nimbus-serverless/nimbus/internal/engine"
	fnlognats "github.com/nimbus-serverless/nimbus/internal/fnlog/nats"
)

// openFunctionLogs opens the durable function logs on the store's
// JetStream (the stream <prefix>_LOGS, kept for InvocationRetention, at
// most LogMaxBytes per function) and makes logs write to them.
func (n *Node) openFunctionLogs(ctx context.Context, logs *engine.LogStore) error {
	s, err := fnlognats.Open(ctx, fnlognats.Config{
		JS: n.store.JetStream(), Prefix: n.cfg.NATSPrefix, Retention: n.cfg.InvocationRetention,
		MaxBytes: n.cfg.LogMaxBytes, Health: n.store.Healthy, Logger: n.log,
	})
	if err != nil {
		return err
	}
	n.fnlogs = s
	logs.SetSink(s)
	return nil
}

// engineLogRate is the engine's LogRate (bytes per second, negative: no
// limit) for --log-rate (MiB per second, 0: no limit).
func engineLogRate(mib float64) float64 {
	if mib == 0 {
		return -1
	}
	return mib * (1 << 20)
}

// FunctionLogs counts the lines written to the durable function logs and
// those dropped (over the buffer, or not taken by the store), for metrics.
func (n *Node) FunctionLogs() (written, dropped uint64) {
	if n.fnlogs == nil {
		return 0, 0
	}
	return n.fnlogs.Written(), n.fnlogs.Dropped()
}
