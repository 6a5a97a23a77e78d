package node

import (
	"net/http"
	"time"

	"github.com/nimbus-serverless/nimbus/internal/auth"
	"github.com/nimbus-serverless/nimbus/internal/console"
	"github.com/nimbus-serverless/nimbus/internal/version"
)

// handler is what the node's listener serves: the API, and the web
// console under /console/ unless NoConsole.
func (n *Node) handler(started time.Time) (http.Handler, error) {
	if n.cfg.NoConsole {
		return n.api, nil
	}
	var secrets auth.Secrets
	var verify func(*http.Request) (auth.Principal, error)
	if v := n.auth.verifier; v != nil {
		secrets = n.auth.keys.Lookup
		verify = func(r *http.Request) (auth.Principal, error) { return v.Verify(r, false) }
	}
	c, err := console.New(console.Config{
		API: n.api, Secrets: secrets, Verify: verify, Limiter: n.auth.limiter,
		SessionKey: n.key.Derive("console session"),
		Node:       func() console.NodeInfo { return n.consoleInfo(started) },
		Logger:     n.log,
	})
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("/console", c)
	mux.Handle("/console/", c)
	mux.Handle("/", n.api)
	return mux, nil
}

// consoleInfo is the node as the console's overview shows it.
func (n *Node) consoleInfo(started time.Time) console.NodeInfo {
	s := n.engine.Node()
	info := console.NodeInfo{ID: n.ID(), Version: version.String(), Address: n.Addr(), Started: started,
		Instances: s.Instances, MemoryMB: s.MemoryMB, MaxInstances: s.MaxInstances, MaxMemoryMB: s.MaxMemoryMB}
	for _, p := range n.engine.Snapshot() {
		info.Busy += p.Busy
	}
	return info
}
