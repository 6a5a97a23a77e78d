package rabbitmq

import (
	"encoding/json"
	"strconv"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/nimbus-serverless/nimbus/internal/trigger"
)

// messages turns deliveries into trigger messages; prefix makes generated
// ids unique (delivery tags restart with every channel).
func (s *Source) messages(prefix string, batch []amqp.Delivery) []trigger.Message {
	out := make([]trigger.Message, len(batch))
	now := time.Now()
	for i, d := range batch {
		out[i] = s.message(prefix, d, now)
	}
	return out
}

func (s *Source) message(prefix string, d amqp.Delivery, now time.Time) trigger.Message {
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
		Key:             s.cfg.Queue,
		DataContentType: contentType(d.ContentType, d.Body),
		Data:            d.Body,
		Extensions:      extensions(d),
	}
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
func extensions(d amqp.Delivery) map[string]any {
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
