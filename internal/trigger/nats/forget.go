package nats

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/nimbus-serverless/nimbus/internal/trigger"
)

var _ trigger.Forgetter = (*Source)(nil)

// Forget deletes the durable JetStream consumer that Nimbus created for a
// deleted trigger (named after Options.Group). A consumer the user named
// in the config is theirs and stays, as does everything of core NATS (a
// queue group keeps no state on the server). A consumer already gone is
// success.
func (s *Source) Forget(ctx context.Context, opts trigger.Options) error {
	if !s.cfg.JetStream() || s.cfg.Consumer != "" || opts.Group == "" {
		return nil
	}
	nc, err := nats.Connect(s.cfg.URL, nats.Name("nimbus-trigger-forget"))
	if err != nil {
		return fmt.Errorf("nats connect: %w", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	name := durableName(opts.Group)
	err = js.DeleteConsumer(ctx, s.cfg.Stream, name)
	if errors.Is(err, jetstream.ErrConsumerNotFound) || errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("delete consumer %s of stream %s: %w", name, s.cfg.Stream, err)
	}
	return nil
}
