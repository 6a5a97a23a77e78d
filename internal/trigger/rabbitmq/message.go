package rabbitmq

import (
	"encoding/json"
	"strconv"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/nimbus-serverless/nimbus/internal/trigger"
)

// message turns a delivery into a trigger message with ordering key key;
// prefix makes generated ids unique (delivery tags restart with every
// channel) and now is the time of a message without a timestamp.
func (s *Source) message(prefix, key string, d *amqp.Delivery, now time.Time) trigger.Message {
	id := d.MessageId
	if id == "" {
		id = prefix + "-" + strconv.FormatUint(d.DeliveryTag, 10)
	}
	at := d.Timestamp
	if at.IsZero() {
		at = now
	}
	return trigger.Message{
		ID:              id,
		Source:          s.source,
		Type:            EventType,
		Subject:         d.RoutingKey,
		Time:            at,
		Key:             key,
		DataContentType: contentType(d.ContentType, d.Body),
		Data:            d.Body,
		Extensions:      extensions(d),
		TraceParent:     traceParent(d.Headers),
	}
}

// traceParent is the span context in a delivery's headers table.
func traceParent(hs amqp.Table) string {
	var t trigger.TraceHeaders
	for k, v := range hs {
		if !trigger.IsTraceHeader(k) {
			continue
		}
		switch v := v.(type) {
		case string:
			t.Add(k, v)
		case []byte:
			t.Add(k, string(v))
		}
	}
	return t.Value()
}

// contentType is the message's own type, else JSON or octet-stream.
func contentType(declared string, data []byte) string {
	switch {
	case declared != "":
		return declared
	case json.Valid(data):
		return "application/json"
	default:
		return "application/octet-stream"
	}
}

// extensions carries the AMQP metadata that is set.
func extensions(d *amqp.Delivery) map[string]any {
	ext := map[string]any{"exchange": d.Exchange, "redelivered": d.Redelivered}
	for name, v := range map[string]string{
		"correlationid": d.CorrelationId,
		"replyto":       d.ReplyTo,
		"appid":         d.AppId,
		"messagetype":   d.Type,
		"userid":        d.UserId,
	} {
		if v != "" {
			ext[name] = v
		}
	}
	return ext
}
