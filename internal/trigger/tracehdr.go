package trigger

import "strings"

// TraceHeaders picks the span context a message carries in its headers
// (Kafka record headers, AMQP headers, NATS headers, MQTT v5 user
// properties, a Redis stream field) for Message.TraceParent: the W3C
// traceparent, else the X-Amzn-Trace-Id; names match in any case.
type TraceHeaders struct{ parent, xray string }

// Add looks at one header.
func (t *TraceHeaders) Add(name, value string) {
	switch {
	case strings.EqualFold(name, "traceparent"):
		t.parent = value
	case strings.EqualFold(name, "x-amzn-trace-id"):
		t.xray = value
	}
}

// IsTraceHeader reports whether name is one that Add keeps, so that a
// source can skip converting other values.
func IsTraceHeader(name string) bool {
	return strings.EqualFold(name, "traceparent") || strings.EqualFold(name, "x-amzn-trace-id")
}

// Value is the span context found ("" for none).
func (t *TraceHeaders) Value() string {
	if t.parent != "" {
		return t.parent
	}
	return t.xray
}
