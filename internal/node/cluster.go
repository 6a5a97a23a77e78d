package node

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/cluster"
	"github.com/nimbus-serverless/nimbus/internal/engine"
	"github.com/nimbus-serverless/nimbus/internal/version"
)

// clusterParts are the node's membership of the cluster (its heartbeat and
// its view of the others) and the forwarder of invocations between nodes
// (internal/cluster, docs/scaling.md).
type clusterParts struct {
	members   *cluster.Membership
	forwarder *cluster.Forwarder
	closeOnce sync.Once
}

// openCluster joins the cluster: every node is in one, of one node when
// no other shares its store. It needs the listener (the address it
// advertises) and the observed invoker.
func (n *Node) openCluster(ctx context.Context, started time.Time) error {
	id, err := nodeID(n.cfg.DataDir)
	if err != nil {
		return err
	}
	ttl := n.cfg.clusterTTL()
	kv, err := n.store.KVWithTTL(ctx, cluster.Bucket, ttl)
	if err != nil {
		return err
	}
	addr := n.advertised()
	n.cluster.members, err = cluster.Open(ctx, cluster.Config{
		KV: kv, Interval: n.cfg.clusterHeartbeat(), TTL: ttl, Logger: n.log,
		Self: func() cluster.Member {
			m := cluster.Member{ID: id, Address: addr, Version: version.String(), Started: started,
				Instances: n.engine.Node().Instances, Load: cluster.LoadAverage(), Warm: n.engine.WarmInstances(),
				Reserved: n.engine.ReservedUse()}
			for _, p := range n.engine.Snapshot() {
				m.Busy += p.Busy
				m.Idle += p.Idle
			}
			return m
		},
	})
	if err != nil {
		return err
	}
	n.cluster.forwarder, err = cluster.NewForwarder(cluster.ForwarderConfig{
		Members: n.cluster.members, Local: n.invoker, Engine: clusterEngine{n.engine},
		Resolve: n.registry.Resolve, Key: n.key.Derive("cluster forward"), Logger: n.log,
	})
	return err
}

// advertised is the API's base URL other nodes reach this node at:
// --advertise-url, else the listening address (the host's name in place
// of an unspecified address).
func (n *Node) advertised() string {
	if n.cfg.AdvertiseURL != "" {
		return strings.TrimSuffix(n.cfg.AdvertiseURL, "/")
	}
	host, port, _ := net.SplitHostPort(n.Addr())
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		if h, err := os.Hostname(); err == nil {
			host = h
		}
	}
	return "http://" + net.JoinHostPort(host, port)
}

// leaveCluster removes this node's heartbeat: the others stop forwarding
// to it at once.
func (n *Node) leaveCluster() {
	if n.cluster.members == nil {
		return
	}
	n.cluster.closeOnce.Do(func() {
		n.closing(func(ctx context.Context) {
			if err := n.cluster.members.Close(ctx); err != nil {
				n.log.Warn("leave the cluster", nimbus.LogErr, err)
			}
		})
	})
}

// Members is the node's view of the cluster (for tests).
func (n *Node) Members() *cluster.Membership { return n.cluster.members }

// Forwarder is the node's forwarder of invocations (for tests).
func (n *Node) Forwarder() *cluster.Forwarder { return n.cluster.forwarder }

// clusterEngine adapts the engine to cluster.Engine.
type clusterEngine struct{ e *engine.Engine }

func (c clusterEngine) Free(fn *nimbus.Function) (string, bool, error) { return c.e.Free(fn) }

func (c clusterEngine) Hold(ctx context.Context, fn *nimbus.Function, key string) (context.Context, func() bool, error) {
	h, err := c.e.Hold(fn, key)
	if err != nil {
		return ctx, nil, err
	}
	return engine.WithHeld(ctx, h), func() bool {
		used := h.Used()
		h.Release()
		return used
	}, nil
}

// validAdvertiseURL checks --advertise-url: "" or http(s)://host:port with
// no path.
func validAdvertiseURL(s string) error {
	if s == "" {
		return nil
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Port() == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil {
		return fmt.Errorf("--advertise-url must be http://host:port (or https://), with no path, not %q", s)
	}
	return nil
}

// clusterHeartbeat and clusterTTL are the settings, defaults filled in.
func (c *Config) clusterHeartbeat() time.Duration {
	if c.ClusterHeartbeat == 0 {
		return cluster.DefaultInterval
	}
	return c.ClusterHeartbeat
}

func (c *Config) clusterTTL() time.Duration {
	if c.ClusterTTL == 0 {
		return cluster.DefaultTTL
	}
	return c.ClusterTTL
}

// shareConcurrency shares concurrency settings across the cluster, every
// heartbeat interval: reserved concurrency is the cluster's (the engine
// learns what the other nodes use of each function's reservation and
// admits only the rest, a tolerance of about one interval), and
// provisioned concurrency is spread across the live nodes (each keeps its
// cluster.Share, taken anew when a node joins or is forgotten).
// docs/scaling.md.
func (n *Node) shareConcurrency(ctx context.Context, live []string) {
	t := time.NewTicker(n.cfg.clusterHeartbeat())
	defer t.Stop()
	for {
		if ids := n.cluster.members.LiveIDs(); !slices.Equal(ids, live) {
			live = ids
			n.spreadProvisioned(ids)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			n.engine.SetRemoteUse(n.cluster.members.RemoteReserved())
		}
	}
}

// spreadProvisioned has this node keep its cluster.Share of provisioned
// concurrency among the live nodes, as it sees them whenever a pool's
// share is taken (so that a setting that arrives just after a node joined
// is spread among all), and applies it to every pool now; it returns the
// live nodes' ids.
func (n *Node) spreadProvisioned(ids []string) []string {
	m := n.cluster.members
	self := m.Self()
	n.engine.SetProvisionShare(func(pool string, total int) int { return cluster.Share(m.LiveIDs(), self, pool, total) })
	return ids
}
