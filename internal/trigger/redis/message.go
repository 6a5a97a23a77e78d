package redis

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/nimbus-serverless/nimbus/internal/trigger"
)

// key is the ordering key of an entry with values: "" (no order), the
// stream, or the value of the orderBy field ("" when the entry has none).
func (c *consumer) key(values map[string]any) string {
	switch {
	case c.orderField != "":
		if v, ok := values[c.orderField]; ok && v != nil {
			return fmt.Sprint(v)
		}
		return ""
	case c.cfg.OrderBy == OrderStream:
		return c.cfg.Stream
	}
	return ""
}

// messages turns the entries of key's batch into trigger messages, leaving
// out deleted entries (pending entries whose fields are gone).
func (c *consumer) messages(key string, batch []goredis.XMessage) []trigger.Message {
	out := make([]trigger.Message, 0, len(batch))
	for _, e := range batch {
		if e.Values == nil {
			continue
		}
		data, ctype := c.data(e.Values)
		out = append(out, trigger.Message{
			ID:              e.ID,
			Source:          c.source,
			Type:            EventType,
			Subject:         c.cfg.Stream,
			Time:            entryTime(e.ID),
			Key:             key,
			DataContentType: ctype,
			Data:            data,
			Extensions:      map[string]any{"group": c.set.group, "consumer": c.set.consumer},
			TraceParent:     traceParent(e.Values),
		})
	}
	return out
}

// traceParent is the span context in an entry's traceparent (or
// X-Amzn-Trace-Id) field.
func traceParent(values map[string]any) string {
	var t trigger.TraceHeaders
	for _, name := range []string{"traceparent", "x-amzn-trace-id", "X-Amzn-Trace-Id"} {
		if v, ok := values[name].(string); ok {
			t.Add(name, v)
		}
	}
	return t.Value()
}

// data is the configured field's value, or the JSON object of all fields.
func (c *consumer) data(values map[string]any) ([]byte, string) {
	if c.cfg.DataField != "" {
		b := []byte(fmt.Sprint(values[c.cfg.DataField]))
		if values[c.cfg.DataField] == nil {
			b = nil
		}
		if json.Valid(b) {
			return b, "application/json"
		}
		return b, "application/octet-stream"
	}
	fields := make(map[string]string, len(values))
	for k, v := range values {
		fields[k] = fmt.Sprint(v)
	}
	b, _ := json.Marshal(fields) // a map of strings always encodes
	return b, "application/json"
}

// entryTime is the millisecond timestamp in an entry id "<ms>-<seq>".
func entryTime(id string) time.Time {
	ms, _, _ := strings.Cut(id, "-")
	n, err := strconv.ParseInt(ms, 10, 64)
	if err != nil {
		return time.Now()
	}
	return time.UnixMilli(n)
}
