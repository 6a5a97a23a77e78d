package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/nimbus-serverless/nimbus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// probeLoop reports the group's lag and the brokers' health at once and
// then every lagEvery, until ctx ends.
func (c *consumer) probeLoop(ctx context.Context) {
	t := time.NewTicker(c.src.lagEvery)
	defer t.Stop()
	for {
		c.probe(ctx)
		select {
		case <-t.C:
		case <-ctx.Done():
			return
		}
	}
}

// probe lists the topic's offsets and the group's commits: success means
// the brokers answer (Connected) and gives the lag; failure is reported as
// the Error state.
func (c *consumer) probe(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, c.src.probeWait)
	defer cancel()
	lag, err := c.lag(ctx)
	if ctx.Err() != nil && err != nil {
		if dialErr := c.dial.last(); dialErr != nil {
			err = fmt.Errorf("connect to broker: %w", dialErr)
		}
	}
	switch {
	case err != nil && c.ctx.Err() == nil:
		c.log.Warn("kafka probe", nimbus.LogErr, err)
		c.opts.Status.Error(err)
	case err == nil:
		c.opts.Status.Connected()
		c.opts.Status.Lag(lag)
	}
}

// lag is the sum over the topic's partitions of the end offset minus the
// group's committed offset.
func (c *consumer) lag(ctx context.Context) (int64, error) {
	adm := kadm.NewClient(c.cl) // shares the client; never closed
	topic := c.src.cfg.Topic
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return 0, fmt.Errorf("list offsets of topic %s: %w", topic, err)
	}
	commits, err := adm.FetchOffsets(ctx, c.group)
	if err == nil {
		err = commits.Error()
	}
	if errors.Is(err, kerr.GroupIDNotFound) {
		// A group that has committed nothing yet: lag counts from the
		// start position.
		commits, err = nil, nil
	}
	if err != nil {
		return 0, fmt.Errorf("fetch offsets of group %s: %w", c.group, err)
	}
	var starts kadm.ListedOffsets
	if c.src.cfg.StartPosition == StartTrimHorizon {
		if starts, err = adm.ListStartOffsets(ctx, topic); err == nil {
			err = starts.Error()
		}
		if err != nil {
			return 0, fmt.Errorf("list offsets of topic %s: %w", topic, err)
		}
	}
	var total int64
	ends.Each(func(end kadm.ListedOffset) {
		from := end.Offset // StartLatest: nothing behind yet
		if o, ok := commits.Lookup(topic, end.Partition); ok && o.At >= 0 {
			from = o.At
		} else if s, ok := starts.Lookup(topic, end.Partition); ok {
			from = s.Offset
		}
		total += max(end.Offset-from, 0)
	})
	return total, nil
}

// dialHook remembers the last failed connection to a broker, so that an
// unreachable broker shows as such rather than as a timeout.
type dialHook struct {
	mu  sync.Mutex
	err error
}

var _ kgo.HookBrokerConnect = (*dialHook)(nil)

// OnBrokerConnect implements kgo.HookBrokerConnect.
func (h *dialHook) OnBrokerConnect(_ kgo.BrokerMetadata, _ time.Duration, _ net.Conn, err error) {
	h.mu.Lock()
	h.err = err
	h.mu.Unlock()
}

func (h *dialHook) last() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.err
}

// kgoLogger sends franz-go's logs to slog.
type kgoLogger struct{ l *slog.Logger }

// Level implements kgo.Logger: warnings and errors, everything when the
// handler takes Debug (franz-go's Info level is chatty: every join and
// assignment).
func (k kgoLogger) Level() kgo.LogLevel {
	if k.l.Enabled(context.Background(), slog.LevelDebug) {
		return kgo.LogLevelDebug
	}
	return kgo.LogLevelWarn
}

// Log implements kgo.Logger.
func (k kgoLogger) Log(level kgo.LogLevel, msg string, keyvals ...any) {
	lv := slog.LevelDebug
	switch level {
	case kgo.LogLevelError:
		lv = slog.LevelError
	case kgo.LogLevelWarn:
		lv = slog.LevelWarn
	}
	k.l.Log(context.Background(), lv, "kafka: "+msg, keyvals...)
}
