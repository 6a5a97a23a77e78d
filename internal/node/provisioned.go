package node

import (
	"context"
	"sync"

	"github.com/nimbus-serverless/nimbus"
)

// provisionedVersions is what this node keeps warm of functions' versions
// (provisioned concurrency on a version or an alias): function -> version
// -> instances.
type provisionedVersions struct {
	mu   sync.Mutex
	kept map[string]map[int]int
}

// provisionVersions brings the warm instances of fn's versions to what
// its provisioned concurrency asks (fn nil: a deleted function, whose
// pools the engine retires itself).
func (n *Node) provisionVersions(name string, fn *nimbus.Function) {
	want := map[int]int{}
	if fn != nil {
		want = n.registry.ProvisionedTargets(context.Background(), fn)
	}
	n.provisioned.mu.Lock()
	defer n.provisioned.mu.Unlock()
	if n.provisioned.kept == nil {
		n.provisioned.kept = map[string]map[int]int{}
	}
	had := n.provisioned.kept[name]
	for v, min := range want {
		if had[v] == min {
			continue
		}
		n.provision(name, v, min)
	}
	for v := range had {
		if _, ok := want[v]; !ok && fn != nil {
			n.provision(name, v, 0)
		}
	}
	if len(want) == 0 {
		delete(n.provisioned.kept, name)
	} else {
		n.provisioned.kept[name] = want
	}
}

func (n *Node) provision(name string, version, min int) {
	v, err := n.registry.Version(context.Background(), name, version)
	if err != nil {
		return // deleted: the engine retires its pool
	}
	if err := n.engine.Provision(v, min); err != nil {
		n.log.Warn("provisioned concurrency", nimbus.LogFunction, name, "version", version, nimbus.LogErr, err)
	}
}
