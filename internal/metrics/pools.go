package metrics

import (
	"sort"

	"github.com/prometheus/client_golang/prometheus"
)

// Pool is one function's instances and queue at a moment (the engine's
// pools of the function summed: its current version's and a draining
// older one's).
type Pool struct {
	Function string
	// Busy instances have a request in flight, Idle ones none (Frozen of
	// them are frozen), Starting ones are being started.
	Busy, Idle, Frozen, Starting int
	// Waiting is the requests queued for an instance, InFlight those
	// running.
	Waiting, InFlight int
}

// Node is the node's instance slots and memory at a moment.
type Node struct {
	Instances, MaxInstances int
	MemoryMB, MaxMemoryMB   int // MaxMemoryMB 0: no cap
}

// Sources are what the metrics read at scrape time; each nil one is left
// out. They are called on the scraper's goroutine and must be cheap.
type Sources struct {
	// Pools lists the functions' pools (engine.Snapshot).
	Pools func() []Pool
	// Node is the node's figures (engine.Node).
	Node func() Node
	// Helpers is the sandbox's pre-started helpers: how many are ready and
	// how many are kept.
	Helpers func() (ready, target int)
	// AsyncBacklog is the Async Service's queue: messages waiting per
	// function (async.Service.Backlog).
	AsyncBacklog func() (map[string]int, error)
}

// Watch registers the collectors of what is read at scrape time. Call it
// once; later calls do nothing.
func (m *Metrics) Watch(s Sources) {
	m.watchOnce.Do(func() { m.reg.MustRegister(&scrapeCollector{s: s}) })
}

var (
	descInstances = prometheus.NewDesc("nimbus_instances", "Instances of the function on this node, by state: busy (a request in flight), idle (waiting for one, frozen or not), starting.",
		[]string{LabelFunction, LabelQualifier, "state"}, nil)
	descFrozen = prometheus.NewDesc("nimbus_instances_frozen", "Idle instances of the function that are frozen (cgroup freezer).",
		[]string{LabelFunction, LabelQualifier}, nil)
	descQueue = prometheus.NewDesc("nimbus_queue_depth", "Requests of the function waiting for an instance on this node.",
		[]string{LabelFunction, LabelQualifier}, nil)
	descConcurrent = prometheus.NewDesc("nimbus_concurrent_executions", "Requests of the function running on this node.",
		[]string{LabelFunction, LabelQualifier}, nil)
	descNodeInstances    = prometheus.NewDesc("nimbus_node_instances", "Instance slots in use on this node, starting instances included.", nil, nil)
	descNodeMaxInstances = prometheus.NewDesc("nimbus_node_instances_max", "Most instances this node runs (--max-instances).", nil, nil)
	descNodeMemory       = prometheus.NewDesc("nimbus_node_instance_memory_bytes", "Memory limits (MemorySize) of this node's instances, summed.", nil, nil)
	descNodeMaxMemory    = prometheus.NewDesc("nimbus_node_instance_memory_max_bytes", "Most memory of instance limits this node admits (--max-memory; 0: no cap).", nil, nil)
	descHelpersReady     = prometheus.NewDesc("nimbus_sandbox_helpers_ready", "Pre-started sandbox helpers waiting to take a cold start.", nil, nil)
	descHelpersTarget    = prometheus.NewDesc("nimbus_sandbox_helpers_target", "Pre-started sandbox helpers the node keeps (--prestarted-helpers).", nil, nil)
	descAsyncBacklog     = prometheus.NewDesc("nimbus_async_backlog_messages", "Messages of the function in the Async Service's queue (shared by the nodes): waiting, due later (retries) or running.",
		[]string{LabelFunction}, nil)
)

// scrapeCollector reads Sources when scraped.
type scrapeCollector struct{ s Sources }

func (c *scrapeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descInstances, descFrozen, descQueue, descConcurrent, descNodeInstances, descNodeMaxInstances,
		descNodeMemory, descNodeMaxMemory, descHelpersReady, descHelpersTarget, descAsyncBacklog} {
		ch <- d
	}
}

func (c *scrapeCollector) Collect(ch chan<- prometheus.Metric) {
	if c.s.Pools != nil {
		collectPools(ch, c.s.Pools())
	}
	if c.s.Node != nil {
		n := c.s.Node()
		gauge(ch, descNodeInstances, n.Instances)
		gauge(ch, descNodeMaxInstances, n.MaxInstances)
		gauge(ch, descNodeMemory, n.MemoryMB<<20)
		gauge(ch, descNodeMaxMemory, n.MaxMemoryMB<<20)
	}
	if c.s.Helpers != nil {
		ready, target := c.s.Helpers()
		gauge(ch, descHelpersReady, ready)
		gauge(ch, descHelpersTarget, target)
	}
	if c.s.AsyncBacklog != nil {
		backlog, err := c.s.AsyncBacklog()
		if err != nil {
			ch <- prometheus.NewInvalidMetric(descAsyncBacklog, err)
			return
		}
		for fn, n := range backlog {
			gauge(ch, descAsyncBacklog, n, fn)
		}
	}
}

func gauge(ch chan<- prometheus.Metric, d *prometheus.Desc, v int, labels ...string) {
	ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(v), labels...)
}

// collectPools sums the pools of each function and sends their gauges.
func collectPools(ch chan<- prometheus.Metric, pools []Pool) {
	byFn := make(map[string]*Pool, len(pools))
	for _, p := range pools {
		s := byFn[p.Function]
		if s == nil {
			s = &Pool{Function: p.Function}
			byFn[p.Function] = s
		}
		s.Busy += p.Busy
		s.Idle += p.Idle
		s.Frozen += p.Frozen
		s.Starting += p.Starting
		s.Waiting += p.Waiting
		s.InFlight += p.InFlight
	}
	names := make([]string, 0, len(byFn))
	for fn := range byFn {
		names = append(names, fn)
	}
	sort.Strings(names)
	for _, fn := range names {
		s := byFn[fn]
		gauge(ch, descInstances, s.Busy, fn, QualifierLatest, "busy")
		gauge(ch, descInstances, s.Idle, fn, QualifierLatest, "idle")
		gauge(ch, descInstances, s.Starting, fn, QualifierLatest, "starting")
		gauge(ch, descFrozen, s.Frozen, fn, QualifierLatest)
		gauge(ch, descQueue, s.Waiting, fn, QualifierLatest)
		gauge(ch, descConcurrent, s.InFlight, fn, QualifierLatest)
	}
}
