package mqtt

import (
	"testing"

	"github.com/eclipse/paho.golang/paho"
)

// TestTraceParentFromUserProperties: an MQTT v5 user property traceparent
// becomes the message's span context.
func TestTraceParentFromUserProperties(t *testing.T) {
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	ss := &session{Source: &Source{}}
	msgs := ss.messages([]inbound{
		{pub: &paho.Publish{Topic: "a", Payload: []byte(`{}`), Properties: &paho.PublishProperties{User: paho.UserProperties{{Key: "k", Value: "v"}, {Key: "traceparent", Value: tp}}}}},
		{pub: &paho.Publish{Topic: "a", Payload: []byte(`{}`)}},
	})
	if msgs[0].TraceParent != tp || msgs[1].TraceParent != "" {
		t.Fatalf("TraceParent = %q, %q; want %q, empty", msgs[0].TraceParent, msgs[1].TraceParent, tp)
	}
}
