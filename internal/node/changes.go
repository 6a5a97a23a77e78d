package node

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/nimbus-serverless/nimbus"
)

// changeRetry is how often a function whose change could not be read is
// read again (every), and how many times before the node gives up.
type changeRetry struct {
	every time.Duration
	times int
}

// defaultChangeRetry reads again every second for a minute.
var defaultChangeRetry = changeRetry{every: time.Second, times: 60}

// functionChanged is the registry's OnChange: the engine, the provisioned
// instances and the metrics learn of a function's change or deletion.
func (n *Node) functionChanged(ctx context.Context, name string) {
	followChange(ctx, n.log, defaultChangeRetry, name, n.registry.Get, func(fn *nimbus.Function) {
		n.engine.Refresh(name, fn)
		n.provisionVersions(name, fn)
		n.forgetMetrics(name, fn)
	})
}

// followChange reads the function name that changed and calls apply with
// it, or with nil when read says it is not found: deleted. A read that
// fails otherwise (the store out of reach for a moment) is no deletion,
// which would stop the function's instances and drop its reservation,
// recent log lines and metrics: it is read again as retry says, on a
// goroutine of its own, until it is read or found gone, or ctx ends.
func followChange(ctx context.Context, log *slog.Logger, retry changeRetry, name string, read func(context.Context, string) (*nimbus.Function, error), apply func(*nimbus.Function)) {
	try := func() error {
		fn, err := read(ctx, name)
		if errors.Is(err, nimbus.ErrNotFound) {
			fn, err = nil, nil
		}
		if err == nil {
			apply(fn)
		}
		return err
	}
	err := try()
	if err == nil || ctx.Err() != nil {
		return
	}
	log.Warn("a function changed and reading it failed: it is read again before the change is acted on",
		nimbus.LogFunction, name, nimbus.LogErr, err)
	go func() {
		for range retry.times {
			select {
			case <-ctx.Done():
				return
			case <-time.After(retry.every):
			}
			if err = try(); err == nil || ctx.Err() != nil {
				return
			}
		}
		log.Error("a function changed and could not be read: its instances keep its former configuration until its next change",
			nimbus.LogFunction, name, nimbus.LogErr, err)
	}()
}
