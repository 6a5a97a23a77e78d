package mqtt

import (
	"context"
	"fmt"
	"net/url"
	"time"

	"github.com/eclipse/paho.golang/autopaho"
	"github.com/eclipse/paho.golang/paho"
	"github.com/google/uuid"

	"github.com/nimbus-serverless/nimbus/internal/trigger"
)

var _ trigger.DeadLetterer = (*Source)(nil)

// DeadLetter publishes msgs at QoS 1 to the configured dead-letter topic on
// a connection of its own and returns once the broker acknowledged every
// one. Each keeps its content type and carries its event id, source and
// original topic as user properties. Errors: trigger.ErrNoDeadLetter
// (wrapped) when the Config names none.
func (s *Source) DeadLetter(ctx context.Context, msgs []trigger.Message) error {
	if s.cfg.DeadLetterTopic == "" {
		return fmt.Errorf("mqtt: deadLetterTopic is not set: %w", trigger.ErrNoDeadLetter)
	}
	cm, err := autopaho.NewConnection(ctx, autopaho.ClientConfig{
		ServerUrls: []*url.URL{s.server}, KeepAlive: s.keepAlive, CleanStartOnInitialConnection: true,
		ConnectUsername: s.user, ConnectPassword: []byte(s.password), ConnectTimeout: 10 * time.Second,
		ClientConfig: paho.ClientConfig{ClientID: "nimbus-dlq-" + uuid.NewString()},
	})
	if err != nil {
		return fmt.Errorf("dead-letter: mqtt client: %w", err)
	}
	defer func() {
		stop, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = cm.Disconnect(stop)
	}()
	await, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := cm.AwaitConnection(await); err != nil {
		return fmt.Errorf("dead-letter: connect to %s: %w", s.server.Host, err)
	}
	for _, m := range msgs {
		_, err := cm.Publish(ctx, &paho.Publish{QoS: 1, Topic: s.cfg.DeadLetterTopic, Payload: m.Data,
			Properties: &paho.PublishProperties{ContentType: m.DataContentType, User: paho.UserProperties{
				{Key: "id", Value: m.ID}, {Key: "source", Value: m.Source}, {Key: "subject", Value: m.Subject},
			}}})
		if err != nil {
			return fmt.Errorf("dead-letter: publish to %q: %w", s.cfg.DeadLetterTopic, err)
		}
	}
	return nil
}

// Forget ends this node's broker session of the trigger (the one Run with
// opts resumes), dropping its subscription and the messages queued for it.
// Call it when a trigger is deleted, or a node leaves for good, so that the
// broker stops keeping messages for a session that will not come back. Run
// must not be running.
func (s *Source) Forget(ctx context.Context, opts trigger.Options) error {
	set := s.settings(opts)
	var expiry uint32
	cm, err := autopaho.NewConnection(ctx, autopaho.ClientConfig{
		ServerUrls: []*url.URL{s.server}, KeepAlive: s.keepAlive, CleanStartOnInitialConnection: true,
		ConnectUsername: s.user, ConnectPassword: []byte(s.password), ConnectTimeout: 10 * time.Second,
		ConnectPacketBuilder: func(cp *paho.Connect, _ *url.URL) (*paho.Connect, error) {
			cp.Properties = &paho.ConnectProperties{SessionExpiryInterval: &expiry}
			return cp, nil
		},
		ClientConfig: paho.ClientConfig{ClientID: set.clientID},
	})
	if err != nil {
		return fmt.Errorf("forget session: mqtt client: %w", err)
	}
	await, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	err = cm.AwaitConnection(await)
	stop, cancelStop := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancelStop()
	_ = cm.Disconnect(stop)
	if err != nil {
		return fmt.Errorf("forget session %q: connect to %s: %w", set.clientID, s.server.Host, err)
	}
	return nil
}
