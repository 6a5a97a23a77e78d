package rabbitmq

import (
	"context"
	"fmt"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/nimbus-serverless/nimbus/internal/trigger"
)

var _ trigger.DeadLetterer = (*Source)(nil)

// DeadLetter publishes msgs, persistent and mandatory, to the configured
// dead-letter exchange on a connection of its own and returns once the broker
// confirmed every one. It fails when the broker refuses one or cannot route
// it to any queue, so the caller keeps the originals unacknowledged.
// Errors: trigger.ErrNoDeadLetter (wrapped) when the Config names none.
func (s *Source) DeadLetter(ctx context.Context, msgs []trigger.Message) error {
	if s.cfg.DeadLetterExchange == "" {
		return fmt.Errorf("rabbitmq: deadLetterExchange is not set: %w", trigger.ErrNoDeadLetter)
	}
	ac, err := s.dial(ctx, nil)
	if err != nil {
		return fmt.Errorf("dead-letter: connect to %s: %w", s.source, err)
	}
	defer ac.Close()
	ch, err := ac.Channel()
	if err != nil {
		return fmt.Errorf("dead-letter: open channel: %w", err)
	}
	if err := ch.Confirm(false); err != nil {
		return fmt.Errorf("dead-letter: confirm mode: %w", err)
	}
	returns := ch.NotifyReturn(make(chan amqp.Return, len(msgs)))
	closed := ch.NotifyClose(make(chan *amqp.Error, 1))
	if err := s.publish(ctx, ch, msgs); err != nil {
		select {
		case e := <-closed: // e.g. 404: the exchange does not exist
			if e != nil {
				return fmt.Errorf("%w: %w", err, e)
			}
		default:
		}
		return err
	}
	// The broker sends a message's basic.return before its confirm.
	select {
	case r := <-returns:
		return fmt.Errorf("dead-letter: exchange %q has no queue for routing key %q: %s",
			s.cfg.DeadLetterExchange, r.RoutingKey, r.ReplyText)
	default:
		return nil
	}
}

// publish sends msgs and waits for their confirms.
func (s *Source) publish(ctx context.Context, ch *amqp.Channel, msgs []trigger.Message) error {
	confirms := make([]*amqp.DeferredConfirmation, 0, len(msgs))
	for _, m := range msgs {
		key := s.cfg.DeadLetterRoutingKey
		if key == "" {
			key = m.Subject
		}
		dc, err := ch.PublishWithDeferredConfirmWithContext(ctx, s.cfg.DeadLetterExchange, key, true, false, amqp.Publishing{
			Headers:      amqp.Table{"x-nimbus-source": m.Source, "x-nimbus-subject": m.Subject},
			ContentType:  m.DataContentType,
			DeliveryMode: amqp.Persistent,
			MessageId:    m.ID,
			Timestamp:    m.Time,
			Body:         m.Data,
		})
		if err != nil {
			return fmt.Errorf("dead-letter: publish to exchange %q: %w", s.cfg.DeadLetterExchange, err)
		}
		confirms = append(confirms, dc)
	}
	for _, dc := range confirms {
		ok, err := dc.WaitContext(ctx)
		if err != nil {
			return fmt.Errorf("dead-letter: wait for confirm: %w", err)
		}
		if !ok {
			return fmt.Errorf("dead-letter: broker refused a message for exchange %q", s.cfg.DeadLetterExchange)
		}
	}
	return nil
}
