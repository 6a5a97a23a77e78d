package nats

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// A cluster of embedded servers.
//
// With Config.Cluster.Listen set, the embedded server is a member of a NATS
// cluster: it listens for routes from the other members on Cluster.Listen,
// dials the members in Cluster.Peers, and JetStream runs clustered (its
// metadata and every stream replicated with Raft). Each member needs a
// server name of its own (Cluster.ServerName: the node's id). Open then
// waits, up to Cluster.Wait, until the cluster has a JetStream quorum and,
// on a cluster that holds no stream yet, until enough members are connected
// to place Config.Replicas replicas: the node started first waits for its
// peers instead of failing.

// MaxReplicas is the most replicas JetStream keeps of a stream.
const MaxReplicas = 5

// DefaultClusterWait is how long Open waits for the cluster's quorum.
const DefaultClusterWait = 60 * time.Second

// DefaultClusterName is the cluster's name when Cluster.Name is empty.
const DefaultClusterName = "nimbus"

// Cluster makes the embedded server a member of a NATS cluster.
type Cluster struct {
	// Name is the cluster's name, the same on every member
	// (--cluster-name; DefaultClusterName when empty).
	Name string
	// Listen is the host:port the member takes routes on
	// (--cluster-listen). Empty: no cluster, a single node.
	Listen string
	// Peers are the other members' route addresses, host:port
	// (--peers). Listing this member too is harmless.
	Peers []string
	// ServerName names this member in the cluster; it must differ between
	// members and stay the same across restarts (the node's id).
	ServerName string
	// Wait bounds how long Open waits for the quorum (0: DefaultClusterWait).
	Wait time.Duration
	// Secret, when set, is the password every member presents on its
	// routes and asks of the others (the node derives it from the node
	// key, the same on every member): a server without it cannot join.
	Secret string
}

// TLSFiles are PEM files: a certificate, its key and the CA that signed
// the certificates of the other side. With them, routes between members,
// the embedded server's client listener (Config.Listen) and the connection
// to a remote server (Config.URL) use TLS, and both sides present a
// certificate the CA signed (mutual TLS).
type TLSFiles struct {
	Cert, Key, CA string
}

func (t TLSFiles) set() bool { return t.Cert != "" || t.Key != "" || t.CA != "" }

// Members is how many members the cluster has as this node sees it: this
// node and its peers, not counting a peer that names this node itself
// (its route address, or this host's name with the route port). 1 without
// a cluster.
func (c Cluster) Members() int {
	if c.Listen == "" {
		return 1
	}
	return 1 + len(c.others())
}

// others are the peers but this node itself, each once.
func (c Cluster) others() []string {
	host, _ := os.Hostname()
	_, lport, _ := net.SplitHostPort(c.Listen)
	var out []string
	seen := map[string]bool{}
	for _, p := range c.Peers {
		h, port, err := net.SplitHostPort(p)
		if err != nil || seen[p] {
			continue
		}
		seen[p] = true
		self := p == c.Listen ||
			(port == lport && host != "" && (h == host || strings.HasPrefix(h, host+".")))
		if !self {
			out = append(out, p)
		}
	}
	return out
}

// replicas is the replica count of every bucket and stream: r when set,
// otherwise 3 when the cluster has 3 members or more and 1 when not.
func replicas(r int, c Cluster) int {
	if r > 0 {
		return r
	}
	if c.Members() >= 3 {
		return 3
	}
	return 1
}

// validateCluster reports the first bad cluster, replica or TLS setting.
func (c Config) validateCluster() error {
	cl := c.Cluster
	switch {
	case c.Replicas < 0 || c.Replicas > MaxReplicas:
		return fmt.Errorf("--replicas must be 1 to %d (0: the default), not %d", MaxReplicas, c.Replicas)
	case c.URL != "" && (cl.Listen != "" || len(cl.Peers) > 0):
		return errors.New("--cluster-listen and --peers make the embedded server a cluster member; they cannot go with --nats-url")
	case len(cl.Peers) > 0 && cl.Listen == "":
		return errors.New("--peers needs --cluster-listen (this member's route address)")
	case cl.Name != "" && cl.Listen == "":
		return errors.New("--cluster-name needs --cluster-listen (this member's route address)")
	case cl.Name != "" && !validName().MatchString(cl.Name):
		return fmt.Errorf("--cluster-name %q: only letters, digits, \"-\" and \"_\" are allowed", cl.Name)
	case cl.Wait < 0:
		return fmt.Errorf("--cluster-wait must not be negative, not %s", cl.Wait)
	}
	if cl.Listen != "" {
		if _, _, err := splitListen(cl.Listen); err != nil {
			return fmt.Errorf("--cluster-listen %q: %v", cl.Listen, err)
		}
		for _, p := range cl.Peers {
			if err := checkPeer(p); err != nil {
				return fmt.Errorf("--peers: %q: %v", p, err)
			}
		}
	}
	if m := cl.Members(); c.URL == "" && c.Replicas > m {
		return fmt.Errorf("--replicas %d is more than the cluster's %d member(s) (this node and --peers)", c.Replicas, m)
	}
	if c.TLS.set() {
		if c.URL == "" && cl.Listen == "" && c.Listen == "" {
			return errors.New("--cluster-tls-* need --cluster-listen, --nats-listen or --nats-url: there is nothing to secure")
		}
		if _, err := c.TLS.config(); err != nil {
			return err
		}
	}
	return nil
}

// checkPeer checks a route address: host:port with a port from 1 to 65535.
func checkPeer(p string) error {
	h, port, err := net.SplitHostPort(p)
	if err != nil {
		return err
	}
	if h == "" {
		return errors.New("missing host")
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("bad port %q", port)
	}
	return nil
}

// config loads the files into a tls.Config for both sides of a connection:
// its certificate, the CA's pool for the peer's certificate, and the
// peer's certificate required.
func (t TLSFiles) config() (*tls.Config, error) {
	switch {
	case t.Cert == "" || t.Key == "" || t.CA == "":
		return nil, errors.New("--cluster-tls-cert, --cluster-tls-key and --cluster-tls-ca go together (mutual TLS): give all three")
	}
	for _, f := range []struct{ flag, path string }{{"cert", t.Cert}, {"key", t.Key}, {"ca", t.CA}} {
		if _, err := os.ReadFile(f.path); err != nil {
			return nil, fmt.Errorf("--cluster-tls-%s: %v", f.flag, err)
		}
	}
	if _, err := tls.LoadX509KeyPair(t.Cert, t.Key); err != nil {
		return nil, fmt.Errorf("--cluster-tls-cert and --cluster-tls-key: %v", err)
	}
	cfg, err := server.GenTLSConfig(&server.TLSConfigOpts{CertFile: t.Cert, KeyFile: t.Key, CaFile: t.CA, Verify: true})
	if err != nil {
		return nil, fmt.Errorf("--cluster-tls-ca: %v", err)
	}
	cfg.RootCAs = cfg.ClientCAs // a member dialling a route checks the other's certificate too
	return cfg, nil
}

// clusterOptions makes opts a cluster member (and sets its TLS).
func clusterOptions(opts *server.Options, cfg Config) error {
	if cfg.TLS.set() {
		tc, err := cfg.TLS.config()
		if err != nil {
			return err
		}
		if cfg.Listen != "" {
			opts.TLSConfig, opts.TLS, opts.TLSVerify = tc, true, true
			opts.TLSTimeout = 5
		}
		if cfg.Cluster.Listen != "" {
			opts.Cluster.TLSConfig = tc.Clone()
			opts.Cluster.TLSTimeout = 5
		}
	}
	cl := cfg.Cluster
	if cl.Listen == "" {
		return nil
	}
	host, port, err := splitListen(cl.Listen)
	if err != nil {
		return fmt.Errorf("--cluster-listen: %w", err)
	}
	if cl.ServerName == "" {
		return errors.New("nats config: Cluster.ServerName is required with Cluster.Listen")
	}
	opts.ServerName = cl.ServerName
	opts.Cluster.Name = cl.Name
	if opts.Cluster.Name == "" {
		opts.Cluster.Name = DefaultClusterName
	}
	opts.Cluster.Host, opts.Cluster.Port = host, port
	for _, p := range cl.others() {
		u := &url.URL{Scheme: "nats-route", Host: p}
		if cl.Secret != "" {
			u.User = url.UserPassword(routeUser, cl.Secret)
		}
		opts.Routes = append(opts.Routes, u)
	}
	if cl.Secret != "" {
		opts.Cluster.Username, opts.Cluster.Password = routeUser, cl.Secret
	}
	if cfg.Listen == "" {
		// The server starts its routes only once its client listener is
		// up: a member without Config.Listen gets one on loopback that
		// only this process can use (a random token).
		opts.DontListen = false
		opts.Host, opts.Port = "127.0.0.1", server.RANDOM_PORT
		opts.Authorization = cfg.clientToken
	}
	return nil
}

// routeUser is the user name of the members' routes.
const routeUser = "nimbus"

// waitForCluster waits until the cluster's JetStream answers (it has a
// meta leader, hence a quorum) and, while the cluster holds no stream yet,
// until a test stream of the configured replicas can be placed. It logs
// once that it waits and once when the cluster is ready.
func (s *Store) waitForCluster(ctx context.Context) error {
	wait := s.cfg.Cluster.Wait
	if wait == 0 {
		wait = DefaultClusterWait
	}
	s.js = clusterJS{JetStream: s.js, wait: wait}
	deadline := time.Now().Add(wait)
	logged := false
	var last error
	for {
		last = s.clusterReady(ctx)
		if last == nil {
			s.log.Info("nats cluster ready", "cluster", s.proc.server().ClusterName(),
				"members_connected", s.connectedMembers(), "replicas", s.cfg.Replicas)
			return nil
		}
		if !logged {
			s.log.Info("waiting for the cluster's peers: JetStream needs a quorum before Nimbus can start",
				"peers", strings.Join(s.cfg.Cluster.Peers, ","), "wait", wait, "replicas", s.cfg.Replicas)
			logged = true
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("nats cluster: no JetStream quorum of %d replicas after %s (%d of %d members connected: %v); start the other members, or check --peers and --cluster-listen",
				s.cfg.Replicas, wait, s.connectedMembers(), s.cfg.Cluster.Members(), last)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("nats cluster: waiting for the quorum: %w", ctx.Err())
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// clusterReady returns nil when the cluster can hold Nimbus's streams.
func (s *Store) clusterReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	info, err := s.js.AccountInfo(ctx)
	if err != nil {
		return err
	}
	if info.Streams > 0 || s.cfg.Replicas == 1 {
		return nil // made before: its streams are placed already
	}
	// A fresh cluster: can it place a stream of the replicas asked for?
	name := s.cfg.Prefix + "_probe_" + s.cfg.Cluster.ServerName
	if _, err := s.js.CreateStream(ctx, jetstream.StreamConfig{
		Name: name, Subjects: []string{"_nimbus_probe." + s.cfg.Cluster.ServerName},
		Storage: jetstream.MemoryStorage, Replicas: s.cfg.Replicas, MaxMsgs: 1,
	}); err != nil && !errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
		return err
	}
	if err := s.js.DeleteStream(ctx, name); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
		return err
	}
	return nil
}

// connectedMembers is this member and the members it has routes to.
func (s *Store) connectedMembers() int {
	srv := s.proc.server()
	if srv == nil {
		return 0
	}
	rz, err := srv.Routez(&server.RoutezOptions{})
	if err != nil {
		return 1
	}
	ids := map[string]bool{}
	for _, r := range rz.Routes {
		ids[r.RemoteID] = true
	}
	return 1 + len(ids)
}

// clientTLS is the options of the connection to a remote server over TLS.
func clientTLS(t TLSFiles) []nats.Option {
	if !t.set() {
		return nil
	}
	return []nats.Option{nats.ClientCert(t.Cert, t.Key), nats.RootCAs(t.CA)}
}

// clusterJS retries the creation of streams and buckets that got no answer
// in time: in a cluster that has just formed, the meta leader can leave a
// create unanswered (several members make the same buckets at once, or
// a leader changes), and trying again finds the stream made or makes it.
// Every part that makes a stream gets the store's JetStream, so this is the
// one place for it.
type clusterJS struct {
	jetstream.JetStream
	wait time.Duration
}

// createTimeout bounds one attempt at a create.
const createTimeout = 2 * time.Second

// retryable reports whether a create may succeed when tried again.
func retryable(err error) bool {
	var api *jetstream.APIError
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, nats.ErrTimeout), errors.Is(err, nats.ErrNoResponders),
		errors.Is(err, jetstream.ErrJetStreamNotEnabled):
		return true
	case errors.As(err, &api):
		// 10008: JetStream temporarily unavailable (no meta leader).
		return api.ErrorCode == 10008
	}
	return false
}

func retryCreate[T any](ctx context.Context, wait time.Duration, f func(context.Context) (T, error)) (T, error) {
	deadline := time.Now().Add(wait)
	for {
		tctx, cancel := context.WithTimeout(ctx, createTimeout)
		v, err := f(tctx)
		cancel()
		if err == nil || !retryable(err) || ctx.Err() != nil || time.Now().After(deadline) {
			return v, err
		}
		select {
		case <-ctx.Done():
			return v, err
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (j clusterJS) CreateStream(ctx context.Context, c jetstream.StreamConfig) (jetstream.Stream, error) {
	return retryCreate(ctx, j.wait, func(ctx context.Context) (jetstream.Stream, error) { return j.JetStream.CreateStream(ctx, c) })
}

func (j clusterJS) CreateOrUpdateStream(ctx context.Context, c jetstream.StreamConfig) (jetstream.Stream, error) {
	return retryCreate(ctx, j.wait, func(ctx context.Context) (jetstream.Stream, error) {
		return j.JetStream.CreateOrUpdateStream(ctx, c)
	})
}

func (j clusterJS) CreateKeyValue(ctx context.Context, c jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	return retryCreate(ctx, j.wait, func(ctx context.Context) (jetstream.KeyValue, error) { return j.JetStream.CreateKeyValue(ctx, c) })
}

func (j clusterJS) CreateOrUpdateKeyValue(ctx context.Context, c jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	return retryCreate(ctx, j.wait, func(ctx context.Context) (jetstream.KeyValue, error) {
		return j.JetStream.CreateOrUpdateKeyValue(ctx, c)
	})
}

func (j clusterJS) KeyValue(ctx context.Context, bucket string) (jetstream.KeyValue, error) {
	return retryCreate(ctx, j.wait, func(ctx context.Context) (jetstream.KeyValue, error) { return j.JetStream.KeyValue(ctx, bucket) })
}

func (j clusterJS) CreateObjectStore(ctx context.Context, c jetstream.ObjectStoreConfig) (jetstream.ObjectStore, error) {
	return retryCreate(ctx, j.wait, func(ctx context.Context) (jetstream.ObjectStore, error) {
		return j.JetStream.CreateObjectStore(ctx, c)
	})
}

func (j clusterJS) ObjectStore(ctx context.Context, bucket string) (jetstream.ObjectStore, error) {
	return retryCreate(ctx, j.wait, func(ctx context.Context) (jetstream.ObjectStore, error) {
		return j.JetStream.ObjectStore(ctx, bucket)
	})
}
