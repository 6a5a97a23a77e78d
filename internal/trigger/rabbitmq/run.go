package rabbitmq

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/google/uuid"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/nimbus-serverless/nimbus/internal/trigger"
)

// errDeliveriesClosed reports a consumer that the broker cancelled or a
// connection that went away.
var errDeliveriesClosed = errors.New("consumer closed by the broker or connection lost")

// Run consumes the queue until ctx ends, reconnecting with back-off, and
// returns nil then. Messages not yet acknowledged go back to the queue.
func (s *Source) Run(ctx context.Context, sink trigger.Sink, opts trigger.Options) error {
	set := s.settings(opts)
	trigger.Reconnect(ctx, set.Status, set.Logger, s.minBackoff, s.maxBackoff, func(ctx context.Context) (bool, error) { return s.session(ctx, sink, set) })
	return nil
}

// conn is one connection with its consuming channel.
type conn struct {
	*amqp.Connection
	ch         *amqp.Channel
	info       *amqp.Channel // for passive declares (lag); a 404 closes it
	deliveries <-chan amqp.Delivery
	// connClosed and chClosed receive the close reasons.
	connClosed, chClosed chan *amqp.Error
	id                   string // prefix of generated message ids
	lagAt                time.Time
}

// session connects, consumes until an error and reports whether any batch
// was acknowledged. Closing the connection requeues what was not.
func (s *Source) session(ctx context.Context, sink trigger.Sink, set settings) (progress bool, err error) {
	c, err := s.connect(ctx, set)
	if err != nil {
		return false, err
	}
	defer c.Close()
	set.Status.Connected()
	for {
		batch, err := s.gather(ctx, c, set)
		if err != nil {
			return progress, err
		}
		if err := sink.Deliver(ctx, s.messages(c.id, batch)); err != nil {
			return progress, fmt.Errorf("deliver: %w", err)
		}
		if err := c.ch.Ack(batch[len(batch)-1].DeliveryTag, true); err != nil {
			return progress, fmt.Errorf("ack: %w", err)
		}
		progress = true
		set.Status.Delivered(len(batch), time.Now())
		if time.Since(c.lagAt) >= s.lagEvery {
			if err := s.updateLag(c, set); err != nil {
				return progress, err
			}
		}
	}
}

// connect dials, checks the queue and starts consuming.
func (s *Source) connect(ctx context.Context, set settings) (*conn, error) {
	ac, err := s.dial(ctx, amqp.Table{"connection_name": "nimbus trigger " + set.Group})
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", s.source, err)
	}
	c := &conn{Connection: ac, id: uuid.NewString()[:8],
		connClosed: ac.NotifyClose(make(chan *amqp.Error, 1)), chClosed: make(chan *amqp.Error, 1)}
	if err := s.open(c, set); err != nil {
		ac.Close()
		return nil, err
	}
	return c, nil
}

// open checks the queue, reads its depth and starts the consumer.
func (s *Source) open(c *conn, set settings) error {
	var err error
	if c.info, err = c.Channel(); err != nil {
		return fmt.Errorf("open channel: %w", err)
	}
	if err := s.updateLag(c, set); err != nil {
		return err
	}
	if c.ch, err = c.Channel(); err != nil {
		return fmt.Errorf("open channel: %w", err)
	}
	c.ch.NotifyClose(c.chClosed)
	if err := c.ch.Qos(set.prefetch, 0, false); err != nil {
		return fmt.Errorf("set prefetch: %w", err)
	}
	tag := "nimbus-" + c.id
	if c.deliveries, err = c.ch.Consume(s.cfg.Queue, tag, false, false, false, false, nil); err != nil {
		return fmt.Errorf("consume queue %q: %w", s.cfg.Queue, err)
	}
	return nil
}

// updateLag records the queue's ready messages as lag.
func (s *Source) updateLag(c *conn, set settings) error {
	c.lagAt = time.Now()
	q, err := c.info.QueueDeclarePassive(s.cfg.Queue, false, false, false, false, nil)
	var ae *amqp.Error
	if errors.As(err, &ae) && ae.Code == amqp.NotFound {
		return fmt.Errorf("queue %q not found in vhost %q (create it first): %w", s.cfg.Queue, s.uri.Vhost, err)
	}
	if err != nil {
		return fmt.Errorf("inspect queue %q: %w", s.cfg.Queue, err)
	}
	set.Status.Lag(int64(q.Messages))
	return nil
}

// dial opens an AMQP connection. Until its handshake is over, ending ctx
// closes it; after, the connection is closed by its user, so that a batch
// delivered just as ctx ends can still be acknowledged.
func (s *Source) dial(ctx context.Context, props amqp.Table) (*amqp.Connection, error) {
	var tcp *ctxConn
	ac, err := amqp.DialConfig(s.cfg.URL, amqp.Config{Properties: props, Dial: func(network, addr string) (net.Conn, error) {
		d := net.Dialer{Timeout: s.dialTimeout}
		nc, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		// The handshake must finish by then; amqp clears the deadline after.
		if err := nc.SetDeadline(time.Now().Add(s.dialTimeout)); err != nil {
			nc.Close()
			return nil, err
		}
		tcp = &ctxConn{Conn: nc, stop: context.AfterFunc(ctx, func() { nc.Close() })}
		return tcp, nil
	}})
	if tcp != nil {
		tcp.stop()
	}
	return ac, err
}

// ctxConn is a connection that ctx closes until stop is called.
type ctxConn struct {
	net.Conn
	stop func() bool
}

func (c *ctxConn) Close() error {
	c.stop()
	return c.Conn.Close()
}

// gather waits for a first delivery, then collects up to BatchSize of them
// for at most BatchWindow. While idle it refreshes the lag.
func (s *Source) gather(ctx context.Context, c *conn, set settings) ([]amqp.Delivery, error) {
	first, err := s.first(ctx, c, set)
	if err != nil {
		return nil, err
	}
	batch := []amqp.Delivery{first}
	window := time.NewTimer(set.BatchWindow)
	defer window.Stop()
	for len(batch) < set.BatchSize {
		if set.BatchWindow <= 0 {
			select {
			case d, ok := <-c.deliveries:
				if !ok {
					return nil, c.lost()
				}
				batch = append(batch, d)
				continue
			default:
				return batch, nil
			}
		}
		select {
		case d, ok := <-c.deliveries:
			if !ok {
				return nil, c.lost()
			}
			batch = append(batch, d)
		case <-window.C:
			return batch, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return batch, nil
}

// lost explains why the deliveries ended.
func (c *conn) lost() error {
	for _, ch := range []chan *amqp.Error{c.chClosed, c.connClosed} {
		select {
		case e, ok := <-ch:
			if ok && e != nil {
				return fmt.Errorf("%w: %w", errDeliveriesClosed, e)
			}
		default:
		}
	}
	return errDeliveriesClosed
}

// first waits for one delivery, refreshing the lag meanwhile.
func (s *Source) first(ctx context.Context, c *conn, set settings) (amqp.Delivery, error) {
	tick := time.NewTicker(s.lagEvery)
	defer tick.Stop()
	for {
		select {
		case d, ok := <-c.deliveries:
			if !ok {
				return d, c.lost()
			}
			return d, nil
		case <-tick.C:
			if err := s.updateLag(c, set); err != nil {
				return amqp.Delivery{}, err
			}
		case <-ctx.Done():
			return amqp.Delivery{}, ctx.Err()
		}
	}
}
