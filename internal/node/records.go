package node

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/nimbus-serverless/nimbus/internal/api"
	"github.com/nimbus-serverless/nimbus/internal/observe"
	"github.com/nimbus-serverless/nimbus/internal/records"
)

// openRecords opens the invocation records (and the usage metered from
// them) and the observed invoker every caller of the engine goes through.
func (n *Node) openRecords(ctx context.Context) error {
	id, err := nodeID(n.cfg.DataDir)
	if err != nil {
		return err
	}
	if n.cfg.NoObservability {
		n.invoker = &observe.Invoker{Engine: n.engine, Node: id}
		return nil
	}
	n.records, err = records.Open(ctx, records.Config{
		JS: n.store.JetStream(), Prefix: n.cfg.NATSPrefix, Replicas: n.store.Replicas(), Retention: n.cfg.InvocationRetention,
		Health: n.store.Healthy, Node: id, Prices: n.cfg.Prices, Aggregate: true, Counter: n.metrics.m, Logger: n.log,
	})
	if err != nil {
		return err
	}
	n.invoker = &observe.Invoker{Engine: n.engine, Sink: n.records, Node: id, Observers: []observe.Observer{n.metrics.m.Observer()}}
	if ob := n.tracing.Observer(n.cfg.Region, n.cfg.Account); ob != nil {
		n.invoker.Observers = append(n.invoker.Observers, ob)
	}
	return nil
}

// recordsAPI is what the API lists records and usage from (nil: none).
func (n *Node) recordsAPI() api.Records {
	if n.records == nil {
		return nil
	}
	return n.records
}

// LoadPrices reads a price table file (JSON or YAML, records.Prices'
// fields), over the defaults.
func LoadPrices(path string) (records.Prices, error) {
	p := records.DefaultPrices()
	b, err := os.ReadFile(path)
	if err != nil {
		return p, fmt.Errorf("--prices: %w", err)
	}
	if strings.HasSuffix(path, ".json") {
		dec := json.NewDecoder(strings.NewReader(string(b)))
		dec.DisallowUnknownFields()
		err = dec.Decode(&p)
	} else {
		dec := yaml.NewDecoder(strings.NewReader(string(b)))
		dec.KnownFields(true)
		err = dec.Decode(&yamlPrices{&p})
	}
	if err != nil {
		return p, fmt.Errorf("--prices %s: %v", path, err)
	}
	if err := p.Check(); err != nil {
		return p, fmt.Errorf("--prices %s: %v", path, err)
	}
	return p, nil
}

// yamlPrices reads Prices under the same names as JSON.
type yamlPrices struct{ p *records.Prices }

func (y *yamlPrices) UnmarshalYAML(v *yaml.Node) error {
	var m map[string]any
	if err := v.Decode(&m); err != nil {
		return err
	}
	b, _ := json.Marshal(m)
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	return dec.Decode(y.p)
}

// Records is the node's invocation records and usage (nil with
// NoObservability): for tests and benchmarks that seed records.
func (n *Node) Records() *records.Store { return n.records }
