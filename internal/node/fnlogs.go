package node

import (
	"context"

	"github.com/nimbus-serverless/nimbus/internal/api"
	"github.com/nimbus-serverless/nimbus/internal/engine"
	fnlognats "github.com/nimbus-serverless/nimbus/internal/fnlog/nats"
)

// openFunctionLogs opens the durable function logs on the store's
// JetStream (the stream <prefix>_LOGS, kept for InvocationRetention, at
// most LogMaxBytes per function) and makes logs write to them.
func (n *Node) openFunctionLogs(ctx context.Context, logs *engine.LogStore) error {
	if n.cfg.NoObservability {
		return nil
	}
	s, err := fnlognats.Open(ctx, fnlognats.Config{
		JS: n.store.JetStream(), Prefix: n.cfg.NATSPrefix, Replicas: n.store.Replicas(), Retention: n.cfg.InvocationRetention,
		MaxBytes: n.cfg.LogMaxBytes, Health: n.store.Healthy, Logger: n.log,
	})
	if err != nil {
		return err
	}
	n.fnlogs = s
	logs.SetSink(s)
	return nil
}

// durableLogs is what the API reads logs from (nil: the in-memory store).
func (n *Node) durableLogs() api.LogReader {
	if n.fnlogs == nil {
		return nil
	}
	return n.fnlogs
}

// engineLogRate is the engine's LogRate (bytes per second, negative: no
// limit) for --log-rate (MiB per second, 0: no limit).
func engineLogRate(mib float64) float64 {
	if mib == 0 {
		return -1
	}
	return mib * (1 << 20)
}

// FunctionLogStats counts what became of functions' log lines since the
// node started (for metrics; every field only grows).
type FunctionLogStats struct {
	// Written is how many lines the durable store acknowledged, Dropped
	// how many it lost (over its 8 MiB buffer, or a write the store did
	// not take: down, full, or slower than the 2 s write timeout).
	Written, Dropped uint64
	// RateDroppedBytes is how many bytes of instances' output were
	// dropped over --log-rate (each drop also leaves a marker line).
	RateDroppedBytes uint64
}

// FunctionLogStats says what became of functions' log lines.
func (n *Node) FunctionLogStats() FunctionLogStats {
	st := FunctionLogStats{RateDroppedBytes: n.logs.RateDropped()}
	if n.fnlogs != nil {
		st.Written, st.Dropped = n.fnlogs.Written(), n.fnlogs.Dropped()
	}
	return st
}
