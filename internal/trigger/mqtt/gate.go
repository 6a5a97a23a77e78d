package mqtt

import (
	"io"
	"sync"

	"github.com/eclipse/paho.golang/packets"
	pahosession "github.com/eclipse/paho.golang/paho/session"
	"github.com/eclipse/paho.golang/paho/session/state"
)

// gatedSession is paho's in-memory session state, except that it holds
// each connection's incoming QoS 1 and 2 PUBLISH packets until open is
// called, once paho's Client.Connect has returned.
//
// This works around paho.golang (v0.23.0): Connect starts the goroutines
// that read and route incoming packets, and only then resets the tracker
// of manual acknowledgements. When a session resumes, the broker sends
// every unacknowledged message again right after CONNACK, so messages can
// be routed, and tracked, before that reset, which forgets them. Their
// PUBACK is then never sent, whether Client.Ack was called before the
// reset (the mark is lost) or after it (paho.ErrPacketNotFound). The
// broker keeps them in flight until the connection ends, and once they
// fill Receive Maximum it sends nothing more on that connection.
type gatedSession struct {
	pahosession.SessionManager

	mu     sync.Mutex
	opened chan struct{} // closed by open; nil before the first connection
	lost   chan struct{} // closed by ConnectionLost
	isOpen bool
	isLost bool
}

var _ pahosession.SessionManager = (*gatedSession)(nil)

// newGatedSession wraps a new in-memory session state, as autopaho would
// make by itself.
func newGatedSession() *gatedSession {
	return &gatedSession{SessionManager: state.NewInMemory()}
}

// ConAckReceived starts a connection whose PUBLISH packets wait for open.
// paho calls it in Connect before it starts reading the connection.
func (g *gatedSession) ConAckReceived(conn io.Writer, cp *packets.Connect, ca *packets.Connack) error {
	g.mu.Lock()
	g.opened, g.lost = make(chan struct{}), make(chan struct{})
	g.isOpen, g.isLost = false, false
	g.mu.Unlock()
	return g.SessionManager.ConAckReceived(conn, cp, ca)
}

// open lets the current connection's PUBLISH packets through; call it once
// Connect returned (autopaho's OnConnectionUp).
func (g *gatedSession) open() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.opened != nil && !g.isOpen {
		g.isOpen = true
		close(g.opened)
	}
}

// ConnectionLost releases a PUBLISH packet still waiting for open.
func (g *gatedSession) ConnectionLost(dp *packets.Disconnect) error {
	g.mu.Lock()
	if g.lost != nil && !g.isLost {
		g.isLost = true
		close(g.lost)
	}
	g.mu.Unlock()
	return g.SessionManager.ConnectionLost(dp)
}

// PacketReceived passes a QoS 1 or 2 PUBLISH packet on (to the router,
// which tracks it for acknowledgement) only once the connection is open.
// One that arrives on a connection lost before that is dropped: it is not
// acknowledged, so the broker sends it again on the next connection.
func (g *gatedSession) PacketReceived(recv *packets.ControlPacket, pubs chan<- *packets.Publish) error {
	if pb, ok := recv.Content.(*packets.Publish); ok && pb.QoS > 0 {
		g.mu.Lock()
		opened, lost := g.opened, g.lost
		g.mu.Unlock()
		if opened != nil {
			select {
			case <-opened:
			case <-lost:
				return nil
			}
		}
	}
	return g.SessionManager.PacketReceived(recv, pubs)
}
