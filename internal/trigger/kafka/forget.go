package kafka

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/nimbus-serverless/nimbus/internal/trigger"
)

var _ trigger.Forgetter = (*Source)(nil)

// Forget deletes the consumer group (and so its committed offsets) that
// Nimbus made for a deleted trigger, named after Options.Group. A group the
// user named in the config is theirs and stays. A group already gone is
// success; one that still has members (other nodes have not stopped their
// consumers yet) is tried again with back-off until ctx ends.
func (s *Source) Forget(ctx context.Context, opts trigger.Options) error {
	if s.cfg.Group != "" || opts.Group == "" {
		return nil
	}
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(s.cfg.Brokers...), kgo.ClientID("nimbus")}, s.extra...)...)
	if err != nil {
		return fmt.Errorf("kafka client: %w", err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	var members error // the last answer that the group still has members
	for try := 0; ; try++ {
		_, err := adm.DeleteGroup(ctx, opts.Group)
		switch {
		case err == nil, errors.Is(err, kerr.GroupIDNotFound):
			return nil
		case members != nil && ctx.Err() != nil: // ended while asking again
			return fmt.Errorf("delete consumer group %s: it still has members: %w", opts.Group, members)
		case !errors.Is(err, kerr.NonEmptyGroup):
			return fmt.Errorf("delete consumer group %s: %w", opts.Group, err)
		}
		members = err
		if trigger.Sleep(ctx, trigger.Backoff{Base: 100 * time.Millisecond, Max: 2 * time.Second, Jitter: 0.2}.Delay(try)) != nil {
			return fmt.Errorf("delete consumer group %s: it still has members: %w", opts.Group, err)
		}
	}
}
