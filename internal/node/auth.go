package node

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/auth"
)

// The values of Config.Auth.
const (
	AuthSigV4 = "sigv4"
	AuthNone  = "none"
)

// authParts are the node's authentication: its access keys (always, so
// that keys can be made before authentication is turned on), and the
// verifier and limiter when it is on.
type authParts struct {
	keys     *auth.Keys
	verifier *auth.Verifier
	limiter  *auth.Limiter
}

// validateAuth checks --auth against --addr.
func (c *Config) validateAuth() error {
	switch c.Auth {
	case AuthSigV4:
	case AuthNone:
		if !loopback(c.Addr) && !c.AllowUnauthenticatedRemote {
			return fmt.Errorf("--auth none on %s would let anyone who reaches that address deploy and run code: use a loopback --addr (127.0.0.1:PORT), or add --allow-unauthenticated-remote if that is really what you want", c.Addr)
		}
	default:
		return fmt.Errorf("--auth must be sigv4 or none, not %q", c.Auth)
	}
	return nil
}

// loopback reports whether addr (host:port) listens on loopback only.
func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// openAuth opens the keys and, with authentication on, makes the first
// admin key when there is none and writes it to <data-dir>/credentials.
func (n *Node) openAuth(ctx context.Context) error {
	kv, err := n.store.KV(ctx, "keys")
	if err != nil {
		return fmt.Errorf("open keys bucket: %w", err)
	}
	n.auth.keys, err = auth.OpenKeys(ctx, kv, n.key, n.log)
	if err != nil {
		return err
	}
	if n.cfg.Auth == AuthNone {
		n.log.Warn("authentication is OFF (--auth none): anyone who reaches " + n.cfg.Addr + " can deploy and run code as this node")
		return nil
	}
	if n.auth.keys.Len() == 0 {
		if err := n.firstKey(ctx); err != nil {
			return err
		}
	}
	n.auth.verifier = &auth.Verifier{
		Region: n.cfg.Region, Service: "lambda", Secrets: n.auth.keys.Lookup,
		MaxBody: max(base64Len(n.cfg.MaxZipped)+64<<10, 8<<20),
	}
	n.auth.limiter = auth.NewLimiter(n.cfg.AuthFailureBurst, 3*time.Second)
	if !loopback(n.cfg.Addr) {
		n.log.Warn("the API is exposed beyond this host; every request must be signed by a Nimbus access key", "addr", n.cfg.Addr)
	}
	return nil
}

func (n *Node) credentialsPath() string {
	return filepath.Join(n.cfg.DataDir, auth.CredentialsFile)
}

// firstKey makes the admin key of a node with none, and writes it to the
// credentials file. Two nodes of a cluster starting at once: one makes it,
// the other finds it taken and writes nothing.
func (n *Node) firstKey(ctx context.Context) error {
	key, err := n.auth.keys.Create(ctx, "admin", auth.Admin, "*")
	if errors.Is(err, nimbus.ErrConflict) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("create the first admin key: %w", err)
	}
	if err := auth.WriteCredentials(n.credentialsPath(), key); err != nil {
		return err
	}
	n.log.Info("created the first admin key", "key", key.Name, "access_key_id", key.AccessKeyID,
		"credentials", n.credentialsPath(), "profile", auth.Profile)
	return nil
}

// nodeKeys is the API's KeyService: the keys, rewriting the credentials
// file when the key it holds is rotated.
type nodeKeys struct {
	*auth.Keys
	n *Node
}

func (k nodeKeys) Rotate(ctx context.Context, name string) (auth.Key, error) {
	var oldID string
	for _, key := range k.List() {
		if key.Name == name {
			oldID = key.AccessKeyID
		}
	}
	key, err := k.Keys.Rotate(ctx, name)
	if err != nil {
		return key, err
	}
	path := k.n.credentialsPath()
	if b, err := os.ReadFile(path); err == nil && oldID != "" && strings.Contains(string(b), oldID) {
		if err := auth.WriteCredentials(path, key); err != nil {
			k.n.log.Error("rewrite the credentials file with the rotated key", nimbus.LogErr, err)
		}
	}
	return key, nil
}
