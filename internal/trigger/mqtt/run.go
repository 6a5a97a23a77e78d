package mqtt

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"sync"
	"time"

	"github.com/eclipse/paho.golang/autopaho"
	"github.com/eclipse/paho.golang/paho"

	"github.com/nimbus-serverless/nimbus/internal/trigger"
)

// errLost is the Status reason while autopaho reconnects.
var errLost = errors.New("connection to the MQTT broker lost; reconnecting")

// Run consumes the subscription until ctx ends and returns nil then.
// autopaho reconnects after lost connections; a failed Deliver ends the
// session, which is resumed after a back-off so the broker sends the
// unacknowledged messages again.
func (s *Source) Run(ctx context.Context, sink trigger.Sink, opts trigger.Options) error {
	set := s.settings(opts)
	trigger.Reconnect(ctx, set.Status, set.Logger, s.minBackoff, s.maxBackoff, func(ctx context.Context) (bool, error) { return s.session(ctx, sink, set) })
	return nil
}

// inbound is a received message and the connection it came on.
type inbound struct {
	pub    *paho.Publish
	client *paho.Client
	at     time.Time
}

// stale reports a message whose connection is gone: acknowledging it is no
// longer possible and the broker sends it again.
func (m inbound) stale() bool {
	select {
	case <-m.client.Done():
		return true
	default:
		return false
	}
}

// session is one connection manager's life: connected until ctx ends or a
// Deliver fails.
type session struct {
	*Source
	set     settings
	in      chan inbound
	failed  chan error // a subscription the broker refused
	wg      sync.WaitGroup
	ackedAt time.Time
}

// ackInterval is how often paho sends the acknowledgements made.
const ackInterval = 10 * time.Millisecond

// session consumes until an error and reports whether any batch was
// acknowledged. Ending it disconnects, keeping the broker's session.
func (s *Source) session(ctx context.Context, sink trigger.Sink, set settings) (progress bool, err error) {
	// The connection outlives ctx a little, so that the acknowledgements of
	// a batch delivered just before are sent.
	connCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	ss := &session{Source: s, set: set, in: make(chan inbound, int(set.receiveMax)+16), failed: make(chan error, 1)}
	cm, err := autopaho.NewConnection(connCtx, ss.clientConfig(connCtx))
	if err != nil {
		cancel()
		return false, fmt.Errorf("mqtt client: %w", err)
	}
	defer func() {
		// paho sends acknowledgements every ackInterval.
		if wait := 3*ackInterval - time.Since(ss.ackedAt); wait > 0 {
			time.Sleep(wait)
		}
		cancel()
		<-cm.Done()
		ss.wg.Wait()
	}()
	for {
		batch, err := ss.gather(ctx)
		if err != nil {
			return progress, err
		}
		if err := sink.Deliver(ctx, ss.messages(batch)); err != nil {
			return progress, fmt.Errorf("deliver: %w", err)
		}
		ss.ack(batch)
		ss.ackedAt = time.Now()
		progress = true
		set.Status.Delivered(len(batch), time.Now())
	}
}

// clientConfig is autopaho's configuration: a persistent session with
// manual acknowledgements and a bounded receive window.
func (ss *session) clientConfig(ctx context.Context) autopaho.ClientConfig {
	receiveMax := ss.set.receiveMax
	return autopaho.ClientConfig{
		ServerUrls:                    []*url.URL{ss.server},
		KeepAlive:                     ss.keepAlive,
		CleanStartOnInitialConnection: false,
		SessionExpiryInterval:         uint32(ss.cfg.SessionExpirySeconds),
		ReconnectBackoff:              ss.backoff,
		ConnectTimeout:                10 * time.Second,
		ConnectUsername:               ss.user,
		ConnectPassword:               []byte(ss.password),
		ConnectPacketBuilder: func(cp *paho.Connect, _ *url.URL) (*paho.Connect, error) {
			if cp.Properties == nil {
				cp.Properties = &paho.ConnectProperties{}
			}
			cp.Properties.ReceiveMaximum = &receiveMax
			return cp, nil
		},
		OnConnectionUp:   func(cm *autopaho.ConnectionManager, _ *paho.Connack) { ss.wg.Go(func() { ss.subscribe(ctx, cm) }) },
		OnConnectionDown: func() bool { ss.set.Status.Error(errLost); return true },
		OnConnectError: func(err error) {
			if ctx.Err() == nil {
				ss.set.Status.Error(fmt.Errorf("connect: %w", err))
			}
		},
		ClientConfig: paho.ClientConfig{
			ClientID:                   ss.set.clientID,
			EnableManualAcknowledgment: true,
			SendAcksInterval:           ackInterval,
			OnPublishReceived:          []func(paho.PublishReceived) (bool, error){ss.received(ctx)},
		},
	}
}

// backoff is the delay before connection attempt n (0: none).
func (ss *session) backoff(n int) time.Duration {
	if n <= 0 {
		return 0
	}
	d := ss.minBackoff << min(n-1, 20)
	return min(d, ss.maxBackoff)
}

// subscribe (re)subscribes on a new connection; a refusal ends the session.
func (ss *session) subscribe(ctx context.Context, cm *autopaho.ConnectionManager) {
	sa, err := cm.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{
		Topic: ss.set.filter, QoS: ss.qos, RetainHandling: 1, // retained messages only on a new subscription
	}}})
	if err == nil {
		ss.set.Status.Connected()
		return
	}
	if ctx.Err() != nil || errors.Is(err, paho.ErrConnectionLost) || errors.Is(err, autopaho.ConnectionDownError) {
		return // the next connection subscribes again
	}
	if sa != nil && len(sa.Reasons) > 0 {
		err = fmt.Errorf("%w (reason code 0x%02x)", err, sa.Reasons[0])
	}
	select {
	case ss.failed <- fmt.Errorf("subscribe to %q: %w", ss.set.filter, err):
	default:
	}
}

// received queues a message for gather. The queue holds the receive window,
// so for QoS 1 it never blocks.
func (ss *session) received(ctx context.Context) func(paho.PublishReceived) (bool, error) {
	return func(pr paho.PublishReceived) (bool, error) {
		select {
		case ss.in <- inbound{pub: pr.Packet, client: pr.Client, at: time.Now()}:
		case <-ctx.Done():
		}
		return true, nil
	}
}

// ack acknowledges a delivered batch; acknowledgements of messages from a
// connection that is gone are dropped (the broker sends those again).
func (ss *session) ack(batch []inbound) {
	for _, m := range batch {
		if m.pub.QoS == 0 {
			continue
		}
		if err := m.client.Ack(m.pub); err != nil && !m.stale() {
			ss.set.Logger.Warn("mqtt: acknowledge", "error", err, "topic", m.pub.Topic)
		}
	}
}
