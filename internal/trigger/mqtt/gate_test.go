package mqtt

import (
	"bytes"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"

	"github.com/nimbus-serverless/nimbus/internal/trigger/triggertest"
)

// slowConnect is a paho debug logger that pauses paho's Connect just
// before it resets its tracker of manual acknowledgements, after it
// started reading the connection: what a busy machine does by chance.
type slowConnect struct{ slowed *atomic.Bool }

// resetLine is what paho v0.23.0 logs right before that reset.
const resetLine = "starting acking routine"

func (l slowConnect) Println(v ...any) {
	if fmt.Sprint(v...) == resetLine {
		l.slowed.Store(true)
		time.Sleep(300 * time.Millisecond)
	}
}

func (slowConnect) Printf(string, ...any) {}

// leaveInFlight takes n messages of filter as clientID, in a persistent
// session with Receive Maximum n, and disconnects without acknowledging
// them: the broker keeps them in flight and sends them again as soon as
// the session resumes. publish runs once the subscription exists.
func leaveInFlight(t *testing.T, clientID, filter string, n int, publish func()) {
	t.Helper()
	conn := dial(t, brokerAddr())
	got := make(chan struct{}, 1000)
	c := paho.NewClient(paho.ClientConfig{ClientID: clientID, Conn: conn, EnableManualAcknowledgment: true,
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(paho.PublishReceived) (bool, error) {
			got <- struct{}{}
			return true, nil
		}}})
	expiry, rm := uint32(300), uint16(n)
	if _, err := c.Connect(t.Context(), &paho.Connect{ClientID: clientID, CleanStart: true, KeepAlive: 30,
		Properties: &paho.ConnectProperties{SessionExpiryInterval: &expiry, ReceiveMaximum: &rm}}); err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer func() { _ = c.Disconnect(&paho.Disconnect{}) }()
	if _, err := c.Subscribe(t.Context(), &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: filter, QoS: 1}}}); err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	publish()
	deadline := time.After(20 * time.Second)
	for i := range n {
		select {
		case <-got:
		case <-deadline:
			t.Fatalf("received %d messages, want %d", i, n)
		}
	}
}

// TestResentMessagesAcknowledged resumes a session whose broker holds a
// full Receive Maximum of unacknowledged messages, which it sends again
// right after CONNACK, while paho's Connect is slow to reset its tracker
// of manual acknowledgements. Every message must be delivered: a resent
// message that the reset made paho forget is never acknowledged, and with
// the broker's window full of those it sends nothing more.
func TestResentMessagesAcknowledged(t *testing.T) {
	root, id := topic(), "nimbus-test-"+randomID()
	src := source(t, brokerAddr(), root, id)
	o := triggertest.Options(10, 0) // Receive Maximum 20
	leaveInFlight(t, id, "$share/"+o.Group+"/"+root, 20, func() { publish(t, root, 0, 100) })

	var slowed atomic.Bool
	src.pahoDebug = slowConnect{&slowed}
	sink := &triggertest.Sink{}
	stop := run(t, src, sink, o)
	sink.WaitDistinct(t, 100, 20*time.Second)
	triggertest.WaitFor(t, "100 acknowledged", func() bool { return o.Status.View().Delivered >= 100 })
	stop()
	if !slowed.Load() {
		t.Fatalf("paho never logged %q, so Connect was not slowed: update slowConnect for this paho version", resetLine)
	}
	triggertest.InOrder(t, sink.Messages())
	for _, m := range sink.Messages()[:20] {
		if m.Extensions["redelivered"] != true {
			t.Errorf("%s delivered with redelivered=%v, want true (the broker sent it again)", m.Data, m.Extensions["redelivered"])
		}
	}
}

// publishPacket is an incoming PUBLISH packet.
func publishPacket(id uint16, qos byte) *packets.ControlPacket {
	cp := packets.NewControlPacket(packets.PUBLISH)
	cp.Content = &packets.Publish{PacketID: id, QoS: qos, Topic: "t"}
	return cp
}

// received calls g.PacketReceived in a goroutine; the channel gets its
// result.
func received(g *gatedSession, cp *packets.ControlPacket, pubs chan<- *packets.Publish) <-chan error {
	done := make(chan error, 1)
	go func() { done <- g.PacketReceived(cp, pubs) }()
	return done
}

func TestGatedSession(t *testing.T) {
	g := newGatedSession()
	connect := func() {
		t.Helper()
		if err := g.ConAckReceived(&bytes.Buffer{}, &packets.Connect{}, &packets.Connack{SessionPresent: true}); err != nil {
			t.Fatalf("ConAckReceived: %v", err)
		}
	}
	wait := func(done <-chan error) {
		t.Helper()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("PacketReceived: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("PacketReceived still waits")
		}
	}
	pubs := make(chan *packets.Publish, 10)

	connect()
	// QoS 0 messages are not tracked for acknowledgement: they pass.
	wait(received(g, publishPacket(0, 0), pubs))
	held := received(g, publishPacket(1, 1), pubs)
	select {
	case <-held:
		t.Fatal("a QoS 1 PUBLISH went on before open")
	case <-time.After(100 * time.Millisecond):
	}
	g.open()
	wait(held)
	g.open() // twice is harmless
	wait(received(g, publishPacket(2, 1), pubs))
	if got, want := []uint16{(<-pubs).PacketID, (<-pubs).PacketID, (<-pubs).PacketID}, []uint16{0, 1, 2}; !slices.Equal(got, want) {
		t.Fatalf("passed packets %v, want %v", got, want)
	}

	// A connection lost before open drops what waits: the broker sends it
	// again on the next one.
	if err := g.ConnectionLost(nil); err != nil {
		t.Fatalf("ConnectionLost: %v", err)
	}
	connect()
	held = received(g, publishPacket(3, 1), pubs)
	if err := g.ConnectionLost(nil); err != nil {
		t.Fatalf("ConnectionLost: %v", err)
	}
	wait(held)
	_ = g.ConnectionLost(nil) // twice is harmless
	if len(pubs) != 0 {
		t.Fatalf("packet %d passed on a connection lost before open", (<-pubs).PacketID)
	}
}
