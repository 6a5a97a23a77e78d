package rabbitmq

import (
	"fmt"
	"strings"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/nimbus-serverless/nimbus"
)

// The values of Config.OrderBy. A header is named as OrderHeader followed by
// the header's name, e.g. "header:tenant".
const (
	// OrderNone gives messages no ordering key: batches are delivered in
	// parallel and may complete in any order.
	OrderNone = "none"
	// OrderQueue keeps strict queue order on each node: one batch at a
	// time, Message.Key is the queue's name.
	OrderQueue = "queue"
	// OrderRoutingKey keeps order per routing key (Message.Key); batches of
	// different routing keys run in parallel.
	OrderRoutingKey = "routingKey"
	// OrderHeader is the prefix of "header:<name>": order per value of that
	// AMQP header (Message.Key); messages without it are unordered.
	OrderHeader = "header:"
)

// maxShortString is AMQP's limit on queue, exchange, routing key and header
// field names.
const maxShortString = 255

// ordering is a parsed Config.OrderBy.
type ordering struct {
	by     string // OrderNone, OrderQueue, OrderRoutingKey or OrderHeader
	header string // the header's name when by is OrderHeader
}

// parseOrderBy parses Config.OrderBy ("" is OrderNone). Errors are
// nimbus.ErrInvalid user errors naming the field.
func parseOrderBy(s string) (ordering, error) {
	switch {
	case s == "" || s == OrderNone:
		return ordering{by: OrderNone}, nil
	case s == OrderQueue || s == OrderRoutingKey:
		return ordering{by: s}, nil
	case strings.HasPrefix(s, OrderHeader):
		name := strings.TrimPrefix(s, OrderHeader)
		switch {
		case name == "":
			return ordering{}, nimbus.Invalidf("rabbitmq trigger config: orderBy %q names no header (e.g. \"header:tenant\")", s)
		case len(name) > maxShortString:
			return ordering{}, nimbus.Invalidf("rabbitmq trigger config: orderBy header name is longer than %d bytes", maxShortString)
		}
		return ordering{by: OrderHeader, header: name}, nil
	}
	if len(s) > 2*maxShortString {
		s = s[:2*maxShortString] + "..."
	}
	return ordering{}, nimbus.Invalidf(`rabbitmq trigger config: orderBy must be "none", "queue", "routingKey" or "header:<name>", got %q`, s)
}

// workers is how many batches may be out at once with concurrency: one
// when the whole queue is one ordering key.
func (o ordering) workers(concurrency int) int {
	if o.by == OrderQueue {
		return 1
	}
	return max(concurrency, 1)
}

// key returns d's ordering key and whether d is ordered at all. The key of
// an ordered message may be empty (an empty routing key or header value).
func (o ordering) key(queue string, d *amqp.Delivery) (key string, ordered bool) {
	switch o.by {
	case OrderQueue:
		return queue, true
	case OrderRoutingKey:
		return d.RoutingKey, true
	case OrderHeader:
		v, ok := d.Headers[o.header]
		if !ok || v == nil {
			return "", false
		}
		return headerString(v), true
	}
	return "", false
}

// headerString renders a header value as a key. Values of different types
// may render alike (the string "1" and the integer 1): their messages then
// share a lane, which keeps their order too.
func headerString(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case []byte:
		return string(v)
	default:
		return fmt.Sprint(v)
	}
}

// laneKey is the trigger.Lanes key of a message: "" (no order) for an
// unordered one, and a non-empty key for an ordered one even when its own
// key is empty, so that messages with an empty routing key keep their
// order as well.
func laneKey(key string, ordered bool) string {
	if !ordered {
		return ""
	}
	return "=" + key
}
