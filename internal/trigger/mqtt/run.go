package mqtt

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/eclipse/paho.golang/autopaho"
	"github.com/eclipse/paho.golang/paho"

	"github.com/nimbus-serverless/nimbus"
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

// session is one connection manager's life: connected until ctx ends, a
// Deliver fails or the broker refuses the subscription.
type session struct {
	*Source
	set   settings
	sink  trigger.Sink
	lanes *trigger.Lanes[inbound]
	gate  *gatedSession // paho's session state, holding PUBLISH packets until a connection is up
	// work ends when the session stops taking messages; its cause is the
	// session's error.
	work     context.Context
	stop     context.CancelCauseFunc
	wg       sync.WaitGroup
	progress atomic.Bool

	mu      sync.Mutex
	ackedAt time.Time // when a batch was last acknowledged
}

// ackInterval is how often paho sends the acknowledgements made.
const ackInterval = 10 * time.Millisecond

// session consumes until an error and reports whether any batch was
// acknowledged. Ending it lets the batches out finish, then disconnects,
// keeping the broker's session.
func (s *Source) session(ctx context.Context, sink trigger.Sink, set settings) (progress bool, err error) {
	work, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	// The connection outlives ctx a little, so that the acknowledgements of
	// the batches delivered last are sent.
	connCtx, cancelConn := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelConn()
	ss := &session{Source: s, set: set, sink: sink, work: work, stop: stop, gate: newGatedSession(),
		lanes: trigger.NewLanes[inbound](set.Options, int(set.receiveMax))}
	cm, err := autopaho.NewConnection(connCtx, ss.clientConfig(connCtx))
	if err != nil {
		return false, fmt.Errorf("mqtt client: %w", err)
	}
	// Deliver sees ctx, not work: when one batch fails, the others out
	// finish. Work returns once work ended and every batch out returned.
	ss.lanes.Work(work, set.Concurrency, func(_ string, batch []inbound) { ss.deliver(ctx, batch) })
	ss.awaitAcks()
	cancelConn()
	<-cm.Done()
	ss.wg.Wait()
	return ss.progress.Load(), context.Cause(work)
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
		PahoDebug:                     ss.pahoDebug,
		ConnectUsername:               ss.user,
		ConnectPassword:               []byte(ss.password),
		ConnectPacketBuilder: func(cp *paho.Connect, _ *url.URL) (*paho.Connect, error) {
			if cp.Properties == nil {
				cp.Properties = &paho.ConnectProperties{}
			}
			cp.Properties.ReceiveMaximum = &receiveMax
			return cp, nil
		},
		OnConnectionUp: func(cm *autopaho.ConnectionManager, _ *paho.Connack) {
			ss.gate.open() // Connect returned: paho tracks acknowledgements from here on
			ss.wg.Go(func() { ss.subscribe(ctx, cm) })
		},
		OnConnectionDown: func() bool { ss.set.Status.Error(errLost); return true },
		OnConnectError: func(err error) {
			if ctx.Err() == nil {
				ss.set.Status.Error(fmt.Errorf("connect: %w", err))
			}
		},
		ClientConfig: paho.ClientConfig{
			ClientID: ss.set.clientID,
			Session:  ss.gate,
			// paho sends manual acknowledgements in the order the messages
			// arrived (MQTT 5 section 4.6), every SendAcksInterval: one
			// made early waits for those of every message before it.
			EnableManualAcknowledgment: true,
			SendAcksInterval:           ackInterval,
			OnPublishReceived:          []func(paho.PublishReceived) (bool, error){ss.received},
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
	ss.stop(fmt.Errorf("subscribe to %q: %w", ss.set.filter, err))
}

// received queues a message in its topic's lane (or the unordered one). It
// runs on paho's only router goroutine and blocks while the lanes are full;
// paho buffers up to Receive Maximum messages meanwhile, so for QoS 1 the
// connection is still read (a broker keeps to that bound). A message that
// arrives once the session is ending is dropped unacknowledged: the broker
// sends it again after the reconnection.
func (ss *session) received(pr paho.PublishReceived) (bool, error) {
	if ss.work.Err() == nil {
		m := inbound{pub: pr.Packet, client: pr.Client, at: time.Now()}
		ss.lanes.Put(ss.work, ss.key(pr.Packet.Topic), m)
	}
	return true, nil
}

// key is a topic's lane: the topic itself, or "" (unordered) with
// orderBy "none".
func (ss *session) key(topic string) string {
	if ss.ordered {
		return topic
	}
	return ""
}

// deliver hands a batch to the sink and acknowledges it once Deliver
// returned nil. A failure ends the session (no further batch starts); a
// batch taken after that is left unacknowledged, as are messages of a
// connection that is gone: the broker sends them again.
func (ss *session) deliver(ctx context.Context, batch []inbound) {
	if ss.work.Err() != nil {
		return
	}
	fresh := batch[:0:0]
	for _, m := range batch {
		if !m.stale() {
			fresh = append(fresh, m)
		}
	}
	if len(fresh) == 0 {
		return
	}
	if err := ss.sink.Deliver(ctx, ss.messages(fresh)); err != nil {
		ss.stop(fmt.Errorf("deliver: %w", err))
		return
	}
	ss.ack(fresh)
	ss.progress.Store(true)
	ss.set.Status.Delivered(len(fresh), time.Now())
}

// ack acknowledges a delivered batch; paho sends the acknowledgements in
// arrival order. Those of messages from a connection that is gone are
// dropped (the broker sends those again).
func (ss *session) ack(batch []inbound) {
	for _, m := range batch {
		if m.pub.QoS == 0 {
			continue
		}
		if err := m.client.Ack(m.pub); err != nil && !m.stale() {
			ss.set.Logger.Warn("mqtt: acknowledge", nimbus.LogErr, err, "topic", m.pub.Topic)
		}
	}
	ss.mu.Lock()
	ss.ackedAt = time.Now()
	ss.mu.Unlock()
}

// awaitAcks gives paho, which sends acknowledgements every ackInterval,
// time to send those of the last batches before the connection closes. An
// acknowledgement still lost only makes the broker send the message again.
func (ss *session) awaitAcks() {
	ss.mu.Lock()
	last := ss.ackedAt
	ss.mu.Unlock()
	if wait := 3*ackInterval - time.Since(last); wait > 0 {
		time.Sleep(wait)
	}
}
