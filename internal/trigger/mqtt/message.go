package mqtt

import (
	"encoding/json"

	"github.com/google/uuid"

	"github.com/nimbus-serverless/nimbus/internal/trigger"
)

// messages turns a batch into trigger messages.
func (ss *session) messages(batch []inbound) []trigger.Message {
	out := make([]trigger.Message, len(batch))
	for i, m := range batch {
		p := m.pub
		var declared string
		var trace trigger.TraceHeaders
		if p.Properties != nil {
			declared = p.Properties.ContentType
			for _, u := range p.Properties.User {
				trace.Add(u.Key, u.Value)
			}
		}
		out[i] = trigger.Message{
			ID:              uuid.NewString(),
			Source:          ss.source,
			Type:            EventType,
			Subject:         p.Topic,
			Time:            m.at,
			Key:             ss.key(p.Topic),
			DataContentType: contentType(declared, p.Payload),
			Data:            p.Payload,
			Extensions:      map[string]any{"qos": int(p.QoS), "retain": p.Retain, "redelivered": p.Duplicate()},
			TraceParent:     trace.Value(),
		}
	}
	return out
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
