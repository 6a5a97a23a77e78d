package sandboxtest

import (
	"fmt"
	"maps"
	"net"
	"slices"
	"strings"
	"testing"

	"github.com/nimbus-serverless/nimbus/internal/sandbox"
	"github.com/nimbus-serverless/nimbus/internal/testenv"
)

// connectPy connects to each "host:port" TCP address of its arguments (or
// "@name", an abstract unix socket, or "gw:port", its default gateway's
// port) and prints, per address, "ADDR ok
// DATA" (DATA: what the server sent first, if anything within a second)
// or "ADDR fail ERROR". A dropped packet times out after a second.
const connectPy = `
import socket, sys
def gateway():
    for line in open("/proc/net/route").readlines()[1:]:
        f = line.split()
        if f[1] == "00000000":
            return socket.inet_ntoa(bytes.fromhex(f[2])[::-1])
    raise OSError("no default route")
for a in sys.argv[1:]:
    try:
        if a.startswith("gw:"):
            s = socket.create_connection((gateway(), int(a[3:])), timeout=1)
        elif a.startswith("@"):
            s = socket.socket(socket.AF_UNIX)
            s.settimeout(1)
            s.connect("\0" + a[1:])
        else:
            h, p = a.rsplit(":", 1)
            s = socket.create_connection((h, int(p)), timeout=1)
        try:
            data = s.recv(64).decode()
        except OSError:
            data = ""
        print(a, "ok", data, flush=True)
    except OSError as e:
        print(a, "fail", type(e).__name__, flush=True)
`

// serverPy listens on 0.0.0.0:port (argv[1]) and on the abstract unix
// socket argv[2], prints "ready ADDR" (its address towards the outside),
// and answers every connection "hello".
const serverPy = `
import socket, sys, threading
t = socket.socket(); t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
t.bind(("0.0.0.0", int(sys.argv[1]))); t.listen(8)
u = socket.socket(socket.AF_UNIX); u.bind("\0" + sys.argv[2]); u.listen(8)
ip = "127.0.0.1"
try:
    d = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); d.connect(("192.0.2.1", 9)); ip = d.getsockname()[0]
except OSError:
    pass
def serve(l):
    while True:
        c, _ = l.accept(); c.sendall(b"hello"); c.close()
threading.Thread(target=serve, args=(u,), daemon=True).start()
print("ready", ip, flush=True)
serve(t)
`

// networks are the modes the network tests try, host last: it is the
// control, where every connection the others refuse works.
var networks = []sandbox.Network{sandbox.NetworkEgress, sandbox.NetworkNone, sandbox.NetworkHost}

// connect runs connectPy on b in network n against addrs and returns, per
// address, its line's verdict ("ok hello", "fail ConnectionRefusedError").
func connect(t *testing.T, b sandbox.Backend, n sandbox.Network, prepare func(sandbox.Net) ([]string, error), addrs ...string) map[string]string {
	t.Helper()
	var out testenv.Buffer
	spec := sh(t, `exec `+python+` -c "$PY" "$@"`, &out)
	spec.Args = append(spec.Args, "sh")
	for _, a := range addrs {
		spec.Args = append(spec.Args, a)
	}
	spec.Env = append(spec.Env, "PY="+connectPy)
	spec.Network, spec.Prepare = n, prepare
	inst := Start(t, b, spec)
	wait(t, inst)
	got := map[string]string{}
	for line := range strings.Lines(out.String()) {
		a, verdict, _ := strings.Cut(strings.TrimSpace(line), " ")
		got[a] = verdict
	}
	if inst.Err() != nil || len(got) != len(addrs) {
		t.Fatalf("network %s: Err() %v, output %q", n, inst.Err(), out.String())
	}
	return got
}

// Greet answers every connection to ln "hello" until the test ends, and
// then closes ln.
func Greet(t testing.TB, ln net.Listener) {
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_, _ = c.Write([]byte("hello"))
			c.Close()
		}
	}()
}

// hostListener listens on address and answers every connection "hello"
// until the test ends.
func hostListener(t *testing.T, address string) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp4", address)
	if err != nil {
		t.Fatal(err)
	}
	Greet(t, ln)
	return ln
}

// testNetworkHostLoopback checks that an egress or none instance cannot
// reach a server on the host's loopback, and a host instance can.
func testNetworkHostLoopback(t *testing.T, nb NewBackend) {
	b := nb(t, Setup{})
	require(t, b, "network isolation", func(i sandbox.Isolation) bool { return i.NetworkIsolation })
	addr := hostListener(t, "127.0.0.1:0").Addr().String()
	for _, n := range networks {
		got := connect(t, b, n, nil, addr)[addr]
		if reached := got == "ok hello"; reached != (n == sandbox.NetworkHost) {
			t.Errorf("network %s: connecting to the host's %s: %q", n, addr, got)
		}
	}
}

// hostAddrs lists the host's IPv4 addresses but loopback, with port, and
// the index of the interface that holds each.
func hostAddrs(t *testing.T, port string) map[string]int {
	t.Helper()
	ifs, err := net.Interfaces()
	if err != nil {
		t.Fatal(err)
	}
	addrs := map[string]int{}
	for _, ifc := range ifs {
		ifAddrs, err := ifc.Addrs()
		if err != nil {
			continue // gone meanwhile
		}
		for _, a := range ifAddrs {
			if ip, ok := a.(*net.IPNet); ok && ip.IP.To4() != nil && !ip.IP.IsLoopback() {
				addrs[net.JoinHostPort(ip.IP.String(), port)] = ifc.Index
			}
		}
	}
	return addrs
}

// testNetworkHostAddresses checks that an egress or none instance reaches
// the host on none of its addresses (a server listening on all of them),
// nor through its own gateway, and a host instance does.
func testNetworkHostAddresses(t *testing.T, nb NewBackend) {
	b := nb(t, Setup{})
	require(t, b, "network isolation", func(i sandbox.Isolation) bool { return i.NetworkIsolation })
	_, port, _ := net.SplitHostPort(hostListener(t, "0.0.0.0:0").Addr().String())
	if len(hostAddrs(t, port)) == 0 {
		t.Skip("the host has no IPv4 address but loopback")
	}
	for _, n := range networks {
		// An egress instance's gateway is an address of the host's made
		// for it (a host instance's is the host's router: not tried).
		gw := "gw:" + port
		addrs := hostAddrs(t, port)
		got := connect(t, b, n, nil, append(slices.Collect(maps.Keys(addrs)), gw)...)
		// Other instances come and go: the host side of their veth pairs
		// is an address of the host's only while they live, and a new
		// instance's pair can take a gone one's address. Only the
		// addresses held by the same interface throughout are checked.
		still := hostAddrs(t, port)
		for a, ifIndex := range addrs {
			if still[a] != ifIndex {
				continue
			}
			if reached := got[a] == "ok hello"; reached != (n == sandbox.NetworkHost) {
				t.Errorf("network %s: connecting to the host's %s: %q", n, a, got[a])
			}
		}
		if n != sandbox.NetworkHost && got[gw] == "ok hello" {
			t.Errorf("network %s: connecting to the host through the gateway: %q", n, got[gw])
		}
	}
}

// testNetworkPrepare checks that an instance reaches what Prepare makes in
// its network, in every mode, and that Private says whether it is its own.
func testNetworkPrepare(t *testing.T, nb NewBackend) {
	b := nb(t, Setup{})
	for _, n := range networks {
		var addr string
		prepare := func(in sandbox.Net) ([]string, error) {
			if got, want := in.Private(), n != sandbox.NetworkHost && sandbox.IsolationOf(b).NetworkIsolation; got != want {
				t.Errorf("network %s: Private() = %v, want %v", n, got, want)
			}
			ln, err := in.Listen("tcp4", "127.0.0.1:0")
			if err != nil {
				return nil, err
			}
			Greet(t, ln)
			addr = ln.Addr().String()
			return nil, nil
		}
		var out testenv.Buffer
		spec := sh(t, `exec `+python+` -c "$PY" "$ADDR"`, &out)
		spec.Env = append(spec.Env, "PY="+connectPy, "ADDR=wrong")
		spec.Network = n
		spec.Prepare = func(in sandbox.Net) ([]string, error) {
			env, err := prepare(in)
			return append(env, "ADDR="+addr), err
		}
		inst := Start(t, b, spec)
		wait(t, inst)
		if got, want := strings.TrimSpace(out.String()), addr+" ok hello"; got != want {
			t.Errorf("network %s: connecting to the listener Prepare made: %q, want %q", n, got, want)
		}
	}
}

// testNetworkNeighbours checks that an instance reaches neither a
// neighbour's TCP port (on its outside address) nor its abstract unix
// socket, where a host instance does.
func testNetworkNeighbours(t *testing.T, nb NewBackend) {
	b := nb(t, Setup{})
	require(t, b, "network isolation", func(i sandbox.Isolation) bool { return i.NetworkIsolation })
	for k, n := range []sandbox.Network{sandbox.NetworkEgress, sandbox.NetworkHost} {
		port, abstract := 18000+k, fmt.Sprintf("nimbus-sandboxtest-%d-%d", lastID.Load(), k)
		var out testenv.Buffer
		spec := sh(t, `exec `+python+` -c "$PY" `+fmt.Sprint(port)+" "+abstract, &out)
		spec.Env = append(spec.Env, "PY="+serverPy)
		spec.Network = n
		running(t, b, spec, &out)
		_, ip, _ := strings.Cut(strings.TrimSpace(out.String()), "ready ")
		addrs := []string{net.JoinHostPort(ip, fmt.Sprint(port)), "@" + abstract}
		got := connect(t, b, n, nil, addrs...)
		for _, a := range addrs {
			if reached := got[a] == "ok hello"; reached != (n == sandbox.NetworkHost) {
				t.Errorf("network %s: connecting to a neighbour's %s: %q", n, a, got[a])
			}
		}
	}
}
