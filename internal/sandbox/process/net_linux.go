package process

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/bits"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/nimbus-serverless/nimbus/internal/sandbox"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Network isolation (sandbox.Spec.Network).
//
// Every helper is started in a network namespace of its own (CLONE_NEWNET)
// and, while it waits in the pool, given a veth pair: "eth0" inside, with
// the odd address of a /31 of the backend's block and a default route to
// the even one, which the host side ("nb<k>-<slot>") holds. The backend's
// nftables table (inet "nimbus_<k>") masquerades what instances send out,
// drops what they send to the host itself (the input hook: any address of
// the host, on any interface) unless it answers a connection the host
// opened, and drops what is forwarded to an instance (from another
// instance or from outside) unless it answers the instance's own
// connection. Start then only decides:
//
//   - egress: the namespace as it is;
//   - none: eth0's addresses and routes are deleted, leaving the namespace
//     only its loopback;
//   - host: the helper is handed the host's namespace and joins it before it
//     drops its privileges (its own namespace, and the veth, go away).
//
// k is a claim (a lock file under /run/nimbus) that gives each backend on a
// host its own block of Config.NetworkRange, its own link names and its own
// table, so that nodes sharing a host never collide, and a node restarted
// after a crash removes what the previous holder of its claim left.

// netClaims is how many blocks (and so backends with network isolation on
// one host) there may be.
const netClaims = 256

// linkPrefix starts the names of the host sides of instances' veth pairs.
const linkPrefix = "nb"

// network is a backend's network isolation: its address block, links and
// nftables table.
type network struct {
	log    *slog.Logger
	claim  int
	block  netip.Prefix
	prefix string   // host-side link names: "nb<claim>-"
	table  string   // the nftables table
	mtu    int      // of the host's default route
	hostNS *os.File // this process's network namespace
	// resolv is a resolv.conf that egress instances see at
	// /etc/resolv.conf, or "" to leave the host's (see resolvConf).
	resolv string
	lock   *os.File // the claim

	mu     sync.Mutex
	used   []bool // by slot: slot n has block addresses 2n (host) and 2n+1
	next   int
	closed bool // close was called: new namespaces get no veth
}

// newNetwork claims a block of cfg.NetworkRange, removes what an earlier
// holder of the claim left and installs the rules. The caller probes a
// helper with it before using it.
func newNetwork(cfg *Config, log *slog.Logger) (*network, error) {
	slots := cfg.MaxInstances + maxPoolSize + 1
	size := 1 << bits.Len(uint(2*slots-1)) // addresses per block
	rng := cfg.NetworkRange.Masked()
	hostBits := rng.Addr().BitLen() - rng.Bits()
	if !rng.Addr().Is4() || size > 1<<hostBits {
		return nil, fmt.Errorf("network range %s cannot hold %d instances", rng, slots)
	}
	blocks := min(netClaims, 1<<hostBits/size)
	lock, claim, err := claimLock("net", blocks)
	if err != nil {
		return nil, err
	}
	nw := &network{
		log: log, claim: claim, lock: lock,
		block:  netip.PrefixFrom(addAddr(rng.Addr(), claim*size), 32-bits.Len(uint(size-1))),
		prefix: fmt.Sprintf("%s%d-", linkPrefix, claim),
		table:  fmt.Sprintf("nimbus_%d", claim),
		used:   make([]bool, size/2),
		mtu:    defaultMTU(),
	}
	if nw.hostNS, err = os.Open("/proc/thread-self/ns/net"); err != nil {
		lock.Close()
		return nil, fmt.Errorf("open network namespace: %w", err)
	}
	if err := nw.start(cfg); err != nil {
		nw.discard()
		return nil, err
	}
	return nw, nil
}

// discard closes a network no instance uses, the host's namespace too.
func (nw *network) discard() error {
	err := nw.close()
	nw.hostNS.Close()
	return err
}

// start cleans up after an earlier holder of the claim and installs the
// rules and forwarding.
func (nw *network) start(cfg *Config) error {
	if n := nw.sweep(); n > 0 {
		nw.log.Info("removed network links left by an earlier run", "count", n)
	}
	forwarding, err := os.ReadFile("/proc/sys/net/ipv4/ip_forward")
	if err != nil {
		return fmt.Errorf("read ip_forward: %w", err)
	}
	// Forwarding that was off stays off for everything but instances.
	guard := strings.TrimSpace(string(forwarding)) == "0"
	if err := nw.install(guard); err != nil {
		return fmt.Errorf("install nftables rules: %w", err)
	}
	if guard {
		if err := os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1\n"), 0o644); err != nil {
			return fmt.Errorf("turn on ip_forward: %w", err)
		}
	}
	resolv, err := resolvConf(cfg.Root, cfg.Nameservers)
	if err != nil {
		return fmt.Errorf("resolv.conf: %w", err)
	}
	nw.resolv = resolv
	return nil
}

// close removes the table and the links and gives up the claim. Instances
// still running lose their network; namespaces attached later get no veth
// pair (egress becomes none: nothing is opened). The host's namespace stays
// open for host instances.
func (nw *network) close() error {
	nw.mu.Lock()
	if nw.closed {
		nw.mu.Unlock()
		return nil
	}
	nw.closed = true
	nw.mu.Unlock()
	err := nw.uninstall()
	nw.sweep()
	nw.lock.Close()
	return err
}

// sweep deletes the host links named for this claim and reports how many.
func (nw *network) sweep() int {
	links, err := netlink.LinkList()
	if err != nil {
		return 0
	}
	n := 0
	for _, l := range links {
		if strings.HasPrefix(l.Attrs().Name, nw.prefix) && netlink.LinkDel(l) == nil {
			n++
		}
	}
	return n
}

// describe says what the network isolation is, for Backend.Describe.
func (nw *network) describe() string {
	dns := "the host's resolv.conf"
	if nw.resolv != "" {
		dns = "resolv.conf " + nw.resolv
	}
	return fmt.Sprintf("network namespaces (egress from %s, table inet %s; DNS: %s)", nw.block, nw.table, dns)
}

// addAddr returns a plus n.
func addAddr(a netip.Addr, n int) netip.Addr {
	b := a.As4()
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	v += uint32(n)
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// defaultMTU is the MTU of the interface of the host's default route (1500
// if there is none), so that instances' packets fit the way out.
func defaultMTU() int {
	routes, err := netlink.RouteList(nil, netlink.FAMILY_V4)
	if err == nil {
		for _, r := range routes {
			if r.Dst != nil && r.Dst.IP != nil && !r.Dst.IP.IsUnspecified() {
				continue
			}
			if l, err := netlink.LinkByIndex(r.LinkIndex); err == nil && l.Attrs().MTU > 0 {
				return l.Attrs().MTU
			}
		}
	}
	return 1500
}

// install makes the backend's table, replacing what it held: one netlink
// transaction, so the rules are never half there. guard adds a rule that
// keeps the host from forwarding anything but instances' traffic.
func (nw *network) install(guard bool) error {
	c, err := nftables.New()
	if err != nil {
		return err
	}
	t := &nftables.Table{Family: nftables.TableFamilyINet, Name: nw.table}
	c.AddTable(t) // so that the delete below finds it
	c.DelTable(t)
	c.AddTable(t)
	chain := func(name string, typ nftables.ChainType, hook *nftables.ChainHook, prio *nftables.ChainPriority) *nftables.Chain {
		return c.AddChain(&nftables.Chain{Name: name, Table: t, Type: typ, Hooknum: hook, Priority: prio})
	}
	rule := func(ch *nftables.Chain, exprs ...[]expr.Any) {
		var all []expr.Any
		for _, e := range exprs {
			all = append(all, e...)
		}
		c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: all})
	}
	accept := []expr.Any{&expr.Verdict{Kind: expr.VerdictAccept}}
	drop := []expr.Any{&expr.Verdict{Kind: expr.VerdictDrop}}

	// To the host itself: only answers to what the host opened.
	in := chain("input", nftables.ChainTypeFilter, nftables.ChainHookInput, nftables.ChainPriorityFilter)
	rule(in, ifname(expr.MetaKeyIIFNAME, nw.prefix, expr.CmpOpEq), established(), accept)
	rule(in, ifname(expr.MetaKeyIIFNAME, nw.prefix, expr.CmpOpEq), drop)

	// Into an instance (from another, or from outside): only answers.
	fwd := chain("forward", nftables.ChainTypeFilter, nftables.ChainHookForward, nftables.ChainPriorityFilter)
	rule(fwd, ifname(expr.MetaKeyOIFNAME, nw.prefix, expr.CmpOpEq), established(), accept)
	rule(fwd, ifname(expr.MetaKeyOIFNAME, nw.prefix, expr.CmpOpEq), drop)
	// Out of an instance: anywhere but the link-local range, where
	// clouds serve their metadata and credentials (169.254.169.254).
	rule(fwd, ifname(expr.MetaKeyIIFNAME, nw.prefix, expr.CmpOpEq), linkLocalDest(), drop)
	rule(fwd, ifname(expr.MetaKeyIIFNAME, nw.prefix, expr.CmpOpEq), accept)
	if guard {
		rule(fwd, ifname(expr.MetaKeyIIFNAME, linkPrefix, expr.CmpOpNeq), ifname(expr.MetaKeyOIFNAME, linkPrefix, expr.CmpOpNeq), drop)
	}

	// Out: the host's address.
	nat := chain("postrouting", nftables.ChainTypeNAT, nftables.ChainHookPostrouting, nftables.ChainPriorityNATSource)
	rule(nat, ifname(expr.MetaKeyIIFNAME, nw.prefix, expr.CmpOpEq), []expr.Any{&expr.Masq{}})
	return c.Flush()
}

// uninstall removes the backend's table.
func (nw *network) uninstall() error {
	c, err := nftables.New()
	if err != nil {
		return err
	}
	t := &nftables.Table{Family: nftables.TableFamilyINet, Name: nw.table}
	c.AddTable(t)
	c.DelTable(t)
	return c.Flush()
}

// ifname matches an interface name (key: the input or output interface)
// that starts with prefix (op CmpOpEq) or does not (CmpOpNeq): nft's
// `iifname "prefix*"`, a comparison of the name's first bytes.
func ifname(key expr.MetaKey, prefix string, op expr.CmpOp) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: key, Register: 1},
		&expr.Cmp{Op: op, Register: 1, Data: []byte(prefix)},
	}
}

// linkLocalDest matches IPv4 packets to 169.254.0.0/16: `ip daddr
// 169.254.0.0/16` in an inet table.
func linkLocalDest() []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.NFPROTO_IPV4}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: []byte{255, 255, 0, 0}, Xor: []byte{0, 0, 0, 0}},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{169, 254, 0, 0}},
	}
}

// established matches packets of connections already seen both ways, or
// related to one (ICMP errors): `ct state established,related`.
func established() []expr.Any {
	zero := binaryutil.NativeEndian.PutUint32(0)
	return []expr.Any{
		&expr.Ct{Register: 1, Key: expr.CtKeySTATE},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(expr.CtStateBitESTABLISHED | expr.CtStateBitRELATED), Xor: zero},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: zero},
	}
}

// nsLink is the network namespace of a helper (and then of its instance)
// and its veth pair. It is the instance's sandbox.Net.
type nsLink struct {
	nw   *network
	slot int
	name string // the host side of the veth; "" once deleted

	mu       sync.RWMutex
	ns       *os.File // nil once released
	released bool
}

var _ sandbox.Net = (*nsLink)(nil)

// attach gives the helper pid (in a new network namespace) its veth pair:
// addresses, routes, loopback up.
func (nw *network) attach(pid int) (l *nsLink, err error) {
	slot, err := nw.acquire()
	if err != nil {
		return nil, err
	}
	l = &nsLink{nw: nw, slot: slot, name: nw.prefix + strconv.Itoa(slot)}
	if slot < 0 {
		l.name = ""
	}
	defer func() {
		if err != nil {
			l.release()
		}
	}()
	if l.ns, err = os.Open(fmt.Sprintf("/proc/%d/ns/net", pid)); err != nil {
		return nil, fmt.Errorf("open network namespace: %w", err)
	}
	if slot < 0 {
		return l, l.loopbackUp()
	}
	host, peer := addAddr(nw.block.Addr(), 2*slot), addAddr(nw.block.Addr(), 2*slot+1)
	la := netlink.NewLinkAttrs()
	la.Name, la.MTU = l.name, nw.mtu
	veth := &netlink.Veth{LinkAttrs: la, PeerName: "eth0", PeerMTU: uint32(nw.mtu), PeerNamespace: netlink.NsFd(l.ns.Fd())}
	if err := netlink.LinkAdd(veth); err != nil {
		l.name = "" // not made: do not delete another's
		return nil, fmt.Errorf("add veth %s: %w", la.Name, err)
	}
	if err := netlink.AddrAdd(veth, &netlink.Addr{IPNet: ipNet(host)}); err != nil {
		return nil, fmt.Errorf("address %s: %w", la.Name, err)
	}
	if err := netlink.LinkSetUp(veth); err != nil {
		return nil, fmt.Errorf("up %s: %w", la.Name, err)
	}
	return l, l.inside(host, peer)
}

// loopbackUp brings up the namespace's loopback alone (after close).
func (l *nsLink) loopbackUp() error {
	h, err := netlink.NewHandleAt(netns.NsHandle(l.ns.Fd()))
	if err != nil {
		return fmt.Errorf("netlink in namespace: %w", err)
	}
	defer h.Close()
	return setLoopbackUp(h)
}

// setLoopbackUp brings up lo.
func setLoopbackUp(h *netlink.Handle) error {
	lo, err := h.LinkByName("lo")
	if err == nil {
		err = h.LinkSetUp(lo)
	}
	if err != nil {
		return fmt.Errorf("loopback up: %w", err)
	}
	return nil
}

// inside sets up the namespace's side: loopback and eth0 up, eth0's
// address and the default route through the host.
func (l *nsLink) inside(host, peer netip.Addr) error {
	h, err := netlink.NewHandleAt(netns.NsHandle(l.ns.Fd()))
	if err != nil {
		return fmt.Errorf("netlink in namespace: %w", err)
	}
	defer h.Close()
	if err := setLoopbackUp(h); err != nil {
		return err
	}
	eth, err := h.LinkByName("eth0")
	if err != nil {
		return fmt.Errorf("find eth0: %w", err)
	}
	if err := h.AddrAdd(eth, &netlink.Addr{IPNet: ipNet(peer)}); err != nil {
		return fmt.Errorf("address eth0: %w", err)
	}
	if err := h.LinkSetUp(eth); err != nil {
		return fmt.Errorf("eth0 up: %w", err)
	}
	gw := net.IP(host.AsSlice())
	if err := h.RouteAdd(&netlink.Route{LinkIndex: eth.Attrs().Index, Gw: gw}); err != nil {
		return fmt.Errorf("default route: %w", err)
	}
	return nil
}

// ipNet is a's /31.
func ipNet(a netip.Addr) *net.IPNet {
	return &net.IPNet{IP: net.IP(a.AsSlice()), Mask: net.CIDRMask(31, 32)}
}

// acquire reserves a slot (a /31) of the block, round robin: a slot is
// reused as late as possible. After close it returns -1: no slot.
func (nw *network) acquire() (int, error) {
	nw.mu.Lock()
	defer nw.mu.Unlock()
	if nw.closed {
		return -1, nil
	}
	for n := range len(nw.used) {
		s := (nw.next + n) % len(nw.used)
		if !nw.used[s] {
			nw.used[s] = true
			nw.next = s + 1
			return s, nil
		}
	}
	return 0, fmt.Errorf("all %d network slots of %s are in use", len(nw.used), nw.block)
}

// cut takes the namespace's address and routes away, leaving it only its
// loopback (sandbox.NetworkNone): without an address or a route an
// unprivileged process cannot send an IP packet. (Deleting the veth pair
// would say the same more plainly, but waits for an RCU grace period,
// ~13 ms on the start path; it goes with release.)
func (l *nsLink) cut() error {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.ns == nil {
		return errNetGone
	}
	if l.name == "" {
		return nil // no veth
	}
	h, err := netlink.NewHandleAt(netns.NsHandle(l.ns.Fd()))
	if err != nil {
		return fmt.Errorf("netlink in namespace: %w", err)
	}
	defer h.Close()
	eth, err := h.LinkByName("eth0")
	if err != nil {
		return fmt.Errorf("find eth0: %w", err)
	}
	routes, err := h.RouteList(eth, netlink.FAMILY_ALL)
	if err != nil {
		return fmt.Errorf("list routes: %w", err)
	}
	for _, r := range routes {
		if err := h.RouteDel(&r); err != nil && !errors.Is(err, unix.ESRCH) {
			return fmt.Errorf("delete route %s: %w", r, err)
		}
	}
	addrs, err := h.AddrList(eth, netlink.FAMILY_ALL)
	if err != nil {
		return fmt.Errorf("list addresses: %w", err)
	}
	for _, a := range addrs {
		if err := h.AddrDel(eth, &a); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
			return fmt.Errorf("delete address %s: %w", a, err)
		}
	}
	return nil
}

// release closes the namespace (Listen and DialContext fail from now on),
// deletes the veth pair if it is still there and frees the slot. Call it
// when no process is left in the namespace; later calls do nothing.
func (l *nsLink) release() {
	l.mu.Lock()
	if l.released {
		l.mu.Unlock()
		return
	}
	l.released = true
	if l.ns != nil {
		l.ns.Close()
		l.ns = nil
	}
	l.mu.Unlock()
	if l.name != "" {
		// The namespace's end goes with its last process, and the host's
		// with it, but asynchronously: delete it now, so that the slot's
		// next user finds the name and the address free.
		if err := deleteLink(l.name); err != nil {
			l.nw.log.Warn("delete veth", "link", l.name, "err", err)
		}
	}
	if l.slot >= 0 {
		l.nw.mu.Lock()
		l.nw.used[l.slot] = false
		l.nw.mu.Unlock()
	}
}

// deleteLink deletes the link named name, if there is one.
func deleteLink(name string) error {
	link, err := netlink.LinkByName(name)
	if _, ok := errors.AsType[netlink.LinkNotFoundError](err); ok {
		return nil
	}
	if err != nil {
		return err
	}
	if err := netlink.LinkDel(link); err != nil && !errors.Is(err, unix.ENODEV) {
		return err // ENODEV: its namespace's end of it just went
	}
	return nil
}

// Private implements sandbox.Net.
func (l *nsLink) Private() bool { return true }

// Listen implements sandbox.Net: the socket is made in the namespace.
func (l *nsLink) Listen(network, address string) (ln net.Listener, err error) {
	err = l.in(func() error {
		ln, err = net.Listen(network, address)
		return err
	})
	return ln, err
}

// DialContext implements sandbox.Net: the socket is made in the namespace.
func (l *nsLink) DialContext(ctx context.Context, network, address string) (c net.Conn, err error) {
	err = l.in(func() error {
		var d net.Dialer
		c, err = d.DialContext(ctx, network, address)
		return err
	})
	return c, err
}

// errNetGone is the error of Listen and DialContext once the instance has
// exited.
var errNetGone = errors.New("the instance's network is gone")

// in runs f on a thread of its own that has entered the namespace, so that
// the sockets f makes are the namespace's. A thread that cannot return to
// the host's namespace is not reused: it ends with its goroutine.
func (l *nsLink) in(f func() error) error {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.ns == nil {
		return errNetGone
	}
	return inNamespace(l.ns, l.nw.hostNS, f)
}

// inNamespace runs f on a locked thread that has joined the network
// namespace ns, then returns it to host.
func inNamespace(ns, host *os.File, f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := unix.Setns(int(ns.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("enter network namespace: %w", err)
			return
		}
		err := f()
		if unix.Setns(int(host.Fd()), unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		}
		errc <- err
	}()
	return <-errc
}

// joinNetNS is the helper's part of sandbox.NetworkHost: it joins the
// network namespace that came with its config as file index idx (-1:
// none). It runs on the helper's locked thread, which execs the function.
func joinNetNS(idx int, fds []int) error {
	if idx < 0 {
		return nil
	}
	if idx >= len(fds) {
		return op("join network namespace", fmt.Errorf("file %d of %d", idx, len(fds)))
	}
	if err := unix.Setns(fds[idx], unix.CLONE_NEWNET); err != nil {
		return op("join network namespace", err)
	}
	return unix.Close(fds[idx])
}

// resolvConf decides what egress instances see at /etc/resolv.conf. They
// cannot reach the host: a resolver on one of its addresses (systemd's
// 127.0.0.53, a local dnsmasq) is out of their reach. So: the nameservers
// given (Config.Nameservers) if any; else the host's resolv.conf as it is
// ("": nothing to do) if none of its servers is the host's; else the list
// of upstream servers systemd-resolved keeps, if there is one that is
// usable; else a resolv.conf without nameservers (no DNS; the operator
// sets Config.Nameservers). The file made is written under root.
func resolvConf(root string, servers []netip.Addr) (string, error) {
	const hostFile, systemdFile = "/etc/resolv.conf", "/run/systemd/resolve/resolv.conf"
	var keep []string // search and options lines of the host's file
	if len(servers) == 0 {
		hostServers, lines := readResolv(hostFile)
		keep = lines
		if len(hostServers) > 0 && !anyLocal(hostServers) {
			return "", nil
		}
		if up, _ := readResolv(systemdFile); len(up) > 0 && !anyLocal(up) {
			return systemdFile, nil
		}
	}
	var b strings.Builder
	b.WriteString("# Written by Nimbus for instances with egress networking: they cannot reach\n# the host's own resolver.\n")
	if len(servers) == 0 {
		b.WriteString("# No nameserver: the host's are all on the host (set the node's nameservers).\n")
	}
	for _, s := range servers {
		b.WriteString("nameserver " + s.String() + "\n")
	}
	for _, l := range keep {
		b.WriteString(l + "\n")
	}
	path := filepath.Join(root, "resolv.conf")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		return "", err
	}
	return path, os.Chmod(path, 0o644)
}

// readResolv returns the nameservers of a resolv.conf and its search,
// domain and options lines.
func readResolv(path string) (servers []netip.Addr, other []string) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 {
			continue
		}
		switch fields[0] {
		case "nameserver":
			if a, err := netip.ParseAddr(fields[1]); err == nil {
				servers = append(servers, a.WithZone(""))
			}
		case "search", "domain", "options":
			other = append(other, strings.Join(fields, " "))
		}
	}
	return servers, other
}

// anyLocal reports whether one of addrs is the host's: a loopback, an
// unspecified address or one of the host's interfaces' addresses.
func anyLocal(addrs []netip.Addr) bool {
	own := map[netip.Addr]bool{}
	if ifAddrs, err := net.InterfaceAddrs(); err == nil {
		for _, a := range ifAddrs {
			if p, err := netip.ParsePrefix(a.String()); err == nil {
				own[p.Addr().Unmap()] = true
			}
		}
	}
	for _, a := range addrs {
		if a.IsLoopback() || a.IsUnspecified() || own[a.Unmap()] {
			return true
		}
	}
	return false
}

// errNetwork marks a probe that failed in setting up the network.
var errNetwork = errors.New("network isolation")

// netOn reports whether instances get network namespaces.
func (b *Backend) netOn() bool { return b.net != nil && b.flags&syscall.CLONE_NEWNET != 0 }

// probeNetwork sets up the network isolation if New found network
// namespaces allowed; where it cannot, it notes what is missing.
func (b *Backend) probeNetwork() {
	if b.flags&syscall.CLONE_NEWNET == 0 {
		return
	}
	if !b.root {
		b.dropNetwork(errors.New("not root"))
		return
	}
	nw, err := newNetwork(&b.cfg, b.log)
	if err != nil {
		b.dropNetwork(err)
		return
	}
	b.net = nw
}

// dropNetwork gives up network isolation, noting err (if not nil) as the
// reason.
func (b *Backend) dropNetwork(err error) {
	if err != nil {
		b.missing = append(b.missing, "network isolation ("+strings.TrimPrefix(err.Error(), errNetwork.Error()+": ")+")")
	}
	b.flags &^= syscall.CLONE_NEWNET
	if b.net != nil {
		if err := b.net.discard(); err != nil {
			b.log.Warn("remove network rules", "err", err)
		}
		b.net = nil
	}
}

// probeLink gives the probe helper h a veth pair and takes it away again:
// an error wraps errNetwork.
func (b *Backend) probeLink(h *helper) error {
	if !b.netOn() {
		return nil
	}
	l, err := b.net.attach(h.cmd.Process.Pid)
	if err != nil {
		h.kill()
		return fmt.Errorf("%w: %w", errNetwork, err)
	}
	l.release()
	return nil
}

// resolvFor is the resolv.conf to bind at /etc/resolv.conf for an instance
// on network n, or "" for the host's.
func (b *Backend) resolvFor(n sandbox.Network) string {
	if !b.netOn() || n == sandbox.NetworkHost || n == sandbox.NetworkNone {
		return ""
	}
	return b.net.resolv
}

// prepareNet readies the network of the instance's helper for its
// Spec.Network and calls Spec.Prepare with it. It returns ic and files as
// they are to be sent to the helper.
func (i *instance) prepareNet(ic *initConfig, files []*os.File) (*initConfig, []*os.File, error) {
	c := *ic
	var n sandbox.Net = sandbox.HostNet{}
	if l := i.h.link; l != nil {
		switch i.spec.Network {
		case sandbox.NetworkHost:
			c.NetNS = len(files)
			files = append(slices.Clip(files), i.b.net.hostNS)
		case sandbox.NetworkNone:
			if err := l.cut(); err != nil {
				return nil, nil, err
			}
			n = l
		default:
			n = l
		}
	}
	if i.spec.Prepare == nil {
		return &c, files, nil
	}
	env, err := i.spec.Prepare(n)
	if err != nil {
		return nil, nil, fmt.Errorf("prepare: %w", err)
	}
	c.Env = sandbox.WithEnv(c.Env, env...)
	return &c, files, nil
}
