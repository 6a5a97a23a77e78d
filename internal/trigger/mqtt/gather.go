package mqtt

import (
	"context"
	"encoding/json"
	"time"

	"github.com/google/uuid"

	"github.com/nimbus-serverless/nimbus/internal/trigger"
)

// gather waits for a first message, then collects up to BatchSize of them
// for at most BatchWindow. Messages of a connection that is gone are
// skipped: the broker sends them again on the new one.
func (ss *session) gather(ctx context.Context) ([]inbound, error) {
	first, err := ss.first(ctx)
	if err != nil {
		return nil, err
	}
	batch := []inbound{first}
	window := time.NewTimer(ss.set.BatchWindow)
	defer window.Stop()
	for len(batch) < ss.set.BatchSize {
		if ss.set.BatchWindow <= 0 {
			select {
			case m := <-ss.in:
				batch = appendFresh(batch, m)
				continue
			default:
				return batch, nil
			}
		}
		select {
		case m := <-ss.in:
			batch = appendFresh(batch, m)
		case <-window.C:
			return batch, nil
		case err := <-ss.failed:
			return nil, err
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return batch, nil
}

func appendFresh(batch []inbound, m inbound) []inbound {
	if m.stale() {
		return batch
	}
	return append(batch, m)
}

// first waits for a message of a live connection.
func (ss *session) first(ctx context.Context) (inbound, error) {
	for {
		select {
		case m := <-ss.in:
			if !m.stale() {
				return m, nil
			}
		case err := <-ss.failed:
			return inbound{}, err
		case <-ctx.Done():
			return inbound{}, ctx.Err()
		}
	}
}

// messages turns a batch into trigger messages.
func (ss *session) messages(batch []inbound) []trigger.Message {
	out := make([]trigger.Message, len(batch))
	for i, m := range batch {
		p := m.pub
		var declared string
		if p.Properties != nil {
			declared = p.Properties.ContentType
		}
		out[i] = trigger.Message{
			ID:              uuid.NewString(),
			Source:          ss.source,
			Type:            EventType,
			Subject:         p.Topic,
			Time:            m.at,
			Key:             p.Topic,
			DataContentType: contentType(declared, p.Payload),
			Data:            p.Payload,
			Extensions:      map[string]any{"qos": int(p.QoS), "retain": p.Retain, "redelivered": p.Duplicate()},
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
