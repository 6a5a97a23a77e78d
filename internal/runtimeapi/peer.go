package runtimeapi

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"

	"github.com/nimbus-serverless/nimbus"
)

// admitListener accepts only connections from the instance's own user, so
// that another instance on the same host cannot fetch or answer this
// instance's invocations through its port. Until Admit is called, Accept
// waits: the instance's user is known only once it has been started.
type admitListener struct {
	net.Listener
	s *Server
}

func (l admitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		select {
		case <-l.s.admitSet:
		case <-l.s.closed:
			c.Close()
			return nil, net.ErrClosed
		}
		if l.s.admitUID < 0 {
			return c, nil
		}
		uid, err := peerUID(c)
		if err == nil && uid == l.s.admitUID {
			return c, nil
		}
		l.s.log.Warn("runtime API: refused a connection from another user",
			"peer", c.RemoteAddr().String(), "uid", uid, "want_uid", l.s.admitUID, nimbus.LogErr, err)
		c.Close()
	}
}

// Admit says which user may connect: uid, or anyone when uid is negative
// (when instances run as Nimbus's own user there is nothing to tell apart).
// Call it once, right after the instance has started.
func (s *Server) Admit(uid int) {
	s.admitOnce.Do(func() {
		s.admitUID = uid
		close(s.admitSet)
	})
}

// peerUID finds the user owning the other end of a loopback TCP connection
// in /proc/net/tcp.
func peerUID(c net.Conn) (int, error) {
	local, ok1 := c.LocalAddr().(*net.TCPAddr)
	remote, ok2 := c.RemoteAddr().(*net.TCPAddr)
	if !ok1 || !ok2 || remote.IP.To4() == nil {
		return -1, errors.New("not an IPv4 TCP connection")
	}
	// The peer's socket: its local end is our remote end and vice versa.
	want := hexAddr(remote) + " " + hexAddr(local)
	f, err := os.Open("/proc/net/tcp")
	if err != nil {
		return -1, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Scan() // header
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		// sl local_address rem_address st tx:rx tr:when retrnsmt uid ...
		if len(fields) < 8 || fields[1]+" "+fields[2] != want {
			continue
		}
		return strconv.Atoi(fields[7])
	}
	if err := sc.Err(); err != nil {
		return -1, err
	}
	return -1, fmt.Errorf("no socket %s in /proc/net/tcp", want)
}

// hexAddr formats an IPv4 address as /proc/net/tcp does: the address in
// host (little-endian) byte order, the port big-endian, both hex.
func hexAddr(a *net.TCPAddr) string {
	ip := a.IP.To4()
	return fmt.Sprintf("%02X%02X%02X%02X:%04X", ip[3], ip[2], ip[1], ip[0], a.Port)
}
