package rabbitmq

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
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
}

// held is a delivery taken from the channel and not yet acknowledged.
type held struct {
	tag uint64
	msg trigger.Message
}

// consumer is one session's consumption: a reader puts deliveries into
// lanes, workers deliver their batches and acknowledge them, and a ticker
// refreshes the lag.
type consumer struct {
	src   *Source
	c     *conn
	sink  trigger.Sink
	set   settings
	lanes *trigger.Lanes[held]
	acks  *acker

	// stop ends reading and taking batches, with the session's error as
	// its cause (the first one wins).
	stop     context.Context
	cancel   context.CancelCauseFunc
	progress atomic.Bool // a batch was acknowledged
}

// session connects, consumes until an error and reports whether any batch
// was acknowledged. After an error no new batch starts; the batches out
// finish (and are acknowledged when they succeed) before the connection is
// closed, which requeues every delivery not acknowledged.
func (s *Source) session(ctx context.Context, sink trigger.Sink, set settings) (progress bool, err error) {
	c, err := s.connect(ctx, set)
	if err != nil {
		return false, err
	}
	set.Status.Connected()
	r := &consumer{src: s, c: c, sink: sink, set: set,
		lanes: trigger.NewLanes[held](set.Options, set.prefetch), acks: newAcker(c.ch.Ack)}
	r.stop, r.cancel = context.WithCancelCause(ctx)
	defer r.cancel(nil)
	var work, lag sync.WaitGroup
	work.Go(func() {
		r.lanes.Work(r.stop, s.order.workers(set.Concurrency), func(_ string, b []held) { r.deliver(ctx, b) })
	})
	lag.Go(r.refreshLag)
	r.cancel(r.read())
	work.Wait()
	// Closing requeues what is unacknowledged and ends a lag probe that
	// waits on a silent broker.
	c.Close()
	lag.Wait()
	return r.progress.Load(), context.Cause(r.stop)
}

// read puts deliveries into the lanes until the consumer ends or stop
// does, and returns why.
func (r *consumer) read() error {
	for {
		select {
		case d, ok := <-r.c.deliveries:
			if !ok {
				return r.c.lost()
			}
			key, ordered := r.src.order.key(r.src.cfg.Queue, &d)
			h := held{tag: d.DeliveryTag, msg: r.src.message(r.c.id, key, &d, time.Now())}
			// The lanes hold at most prefetch messages, as many as the
			// broker sends unacknowledged, so this waits only in theory.
			if !r.lanes.Put(r.stop, laneKey(key, ordered), h) {
				return context.Cause(r.stop)
			}
		case <-r.stop.Done():
			return context.Cause(r.stop)
		}
	}
}

// deliver hands one batch to the sink and acknowledges it once the sink
// succeeded. A batch taken after the session began to stop is not
// delivered: it stays unacknowledged, so that a failed batch of its key is
// delivered again before it. A failure stops the session.
func (r *consumer) deliver(ctx context.Context, batch []held) {
	if r.stop.Err() != nil {
		return
	}
	msgs := make([]trigger.Message, len(batch))
	tags := make([]uint64, len(batch))
	for i, h := range batch {
		msgs[i], tags[i] = h.msg, h.tag
	}
	if err := r.sink.Deliver(ctx, msgs); err != nil {
		r.cancel(fmt.Errorf("deliver: %w", err))
		return
	}
	if err := r.acks.ack(tags); err != nil {
		r.cancel(err)
		return
	}
	r.progress.Store(true)
	r.set.Status.Delivered(len(batch), time.Now())
}

// refreshLag records the queue's depth every lagEvery until stop ends. An
// error (the queue was deleted) stops the session.
func (r *consumer) refreshLag() {
	tick := time.NewTicker(r.src.lagEvery)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
			if err := r.src.updateLag(r.c, r.set); err != nil {
				r.cancel(err)
				return
			}
		case <-r.stop.Done():
			return
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
