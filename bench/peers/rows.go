package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/nimbus-serverless/nimbus/internal/runtimes"
)

// launcher starts a server of the run and returns it with its URL once it
// has answered a request.
type launcher func(ctx context.Context) (*proc, string, error)

// warmRow is a row measured under load: a server kept running across
// rounds (started again, and counted, when it died) and the requests it
// gets.
type warmRow struct {
	name     string
	launch   launcher
	request  func(url string) Requester
	p        *proc
	url      string
	restarts int
}

// measure runs l against the row's server.
func (w *warmRow) measure(ctx context.Context, l Load) (Sample, error) {
	if w.p == nil || !w.p.alive() {
		if w.p != nil {
			w.p.stop(time.Second)
			w.restarts++
		}
		var err error
		if w.p, w.url, err = w.launch(ctx); err != nil {
			return Sample{}, err
		}
	}
	o := l.Run(ctx, w.request(w.url))
	return Sample{Row: w.name, Value: o.PerSecond(), P50: o.Percentile(0.5), P99: o.Percentile(0.99), Errors: o.Errors}, nil
}

// coldRow is a row of single starts, each timed to its first answer.
type coldRow struct {
	name string
	once func(ctx context.Context) (time.Duration, error)
}

// measure times n starts; its value is their median in milliseconds.
// Failed starts are counted as errors; all failing is an error.
func (c *coldRow) measure(ctx context.Context, n int) (Sample, error) {
	s := Sample{Row: c.name}
	var took []time.Duration
	var last error
	for range n {
		d, err := c.once(ctx)
		if err != nil {
			s.Errors++
			last = err
			continue
		}
		took = append(took, d)
	}
	if len(took) == 0 {
		return s, last
	}
	s.Value = float64(median(took)) / float64(time.Millisecond)
	return s, nil
}

// timedLaunch is a cold row's start of a server: from its exec to its
// first answer; the server is stopped after.
func timedLaunch(launch launcher) func(ctx context.Context) (time.Duration, error) {
	return func(ctx context.Context) (time.Duration, error) {
		began := time.Now()
		p, _, err := launch(ctx)
		took := time.Since(began)
		if p != nil {
			p.stop(0)
		}
		return took, err
	}
}

// timedExec is a cold-start baseline: argv's exec to its exit, in an
// instance-like clean environment.
func timedExec(argv ...string) func(ctx context.Context) (time.Duration, error) {
	return func(ctx context.Context) (time.Duration, error) {
		cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
		cmd.Env = []string{"LANG=en_US.UTF-8", "PATH=/usr/local/bin:/usr/bin:/bin", "TZ=:UTC"}
		began := time.Now()
		if out, err := cmd.CombinedOutput(); err != nil {
			return 0, fmt.Errorf("%v: %v: %s", argv, err, out)
		}
		return time.Since(began), nil
	}
}

// launchEcho starts the echo server on a free port.
func (b *bench) launchEcho(ctx context.Context) (*proc, string, error) {
	return b.launchEchoAs(ctx, "echo")
}

// launchEchoAs starts the echo server on a free port, its log named after
// name.
func (b *bench) launchEchoAs(ctx context.Context, name string) (*proc, string, error) {
	ports, err := freePorts(1)
	if err != nil {
		return nil, "", err
	}
	return b.launched(ctx, name, "http://127.0.0.1:"+ports[0]+"/", []string{"PORT=" + ports[0]}, b.bins["echo"])
}

// launchOfWatchdog starts of-watchdog in http mode on a free port, in front
// of the echo server, which it starts itself.
func (b *bench) launchOfWatchdog(ctx context.Context) (*proc, string, error) {
	ports, err := freePorts(2)
	if err != nil {
		return nil, "", err
	}
	port, up := ports[0], ports[1]
	env := []string{"port=" + port, "metrics_port=0", "mode=http", "upstream_url=http://127.0.0.1:" + up,
		"fprocess=" + b.bins["echo"], "PORT=" + up}
	return b.launched(ctx, "of-watchdog", "http://127.0.0.1:"+port+"/", env, b.cfg.OfWatchdog)
}

// launchRIE starts the Runtime Interface Emulator on free ports with the
// no-op function as its bootstrap.
func (b *bench) launchRIE(ctx context.Context) (*proc, string, error) {
	ports, err := freePorts(2)
	if err != nil {
		return nil, "", err
	}
	port, api := ports[0], ports[1]
	url := "http://127.0.0.1:" + port + "/2015-03-31/functions/function/invocations"
	return b.launched(ctx, "rie", url, nil, b.cfg.RIE,
		"--runtime-interface-emulator-address", "127.0.0.1:"+port, "--runtime-api-address", "127.0.0.1:"+api, b.bins["noop"])
}

// launched starts argv and waits until url answers.
func (b *bench) launched(ctx context.Context, name, url string, env []string, argv ...string) (*proc, string, error) {
	began := time.Now()
	p, err := b.start(name, env, argv...)
	if err != nil {
		return nil, "", err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if _, err := p.answered(ctx, url, body, began); err != nil {
		p.stop(time.Second)
		return nil, "", err
	}
	return p, url, nil
}

// setUp starts the servers of the warm rows (each at its first
// measurement), the node, and deploys the node's functions; it returns the
// rows that cfg.Rows selects.
func (b *bench) setUp(ctx context.Context) ([]*warmRow, []*coldRow, error) {
	echo, direct, err := b.launchEcho(ctx)
	if err != nil {
		return nil, nil, err
	}
	unsigned := func(url string) Requester { return poster(url, body, aws.Credentials{}) }
	fixed := func(p *proc, url string) launcher {
		return func(context.Context) (*proc, string, error) { return p, url, nil }
	}
	nodes := b.cfg.Nodes
	if len(nodes) == 0 {
		nodes = []NodeSpec{{}}
	}
	var n *nimbusNode // the first: the async rows'
	var nimbusRows []*warmRow
	var nimbusColds []*coldRow
	for i, spec := range nodes {
		bin := spec.Bin
		if bin == "" {
			bin = b.bins["nimbus"]
		}
		ni, err := startNimbus(ctx, b.dir, fmt.Sprintf("nimbus-data-%d", i), bin, spec.Args...)
		if err != nil {
			return nil, nil, fmt.Errorf("node %q: %w", spec.Label, err)
		}
		b.procs = append(b.procs, ni.proc)
		d, err := b.deploy(ctx, ni)
		if err != nil {
			return nil, nil, fmt.Errorf("node %q: %w", spec.Label, err)
		}
		if i == 0 {
			n = ni
		}
		suffix := ""
		if spec.Label != "" {
			suffix = " [" + spec.Label + "]"
		}
		signed := func(url string) Requester { return poster(url, body, ni.creds) }
		for _, mb := range b.cfg.Memory {
			nimbusRows = append(nimbusRows,
				&warmRow{name: fmt.Sprintf("Nimbus function URL -> http function, %d MB%s", mb, suffix), launch: fixed(ni.proc, d.urls[mb]), request: unsigned},
				&warmRow{name: fmt.Sprintf("Nimbus Invoke API (SigV4) -> aws-lambda-go, %d MB%s", mb, suffix), launch: fixed(ni.proc, ni.invokeURL(noopName(mb))), request: signed},
			)
		}
		nimbusColds = append(nimbusColds, b.nimbusColds(ni, d, suffix, i == 0)...)
	}
	signedBy := func(url string) Requester { return poster(url, body, n.creds) }
	rows := []*warmRow{
		{name: "direct", launch: fixed(echo, direct), request: unsigned},
		{name: "direct, SigV4-signed requests", launch: fixed(echo, direct), request: signedBy},
		{name: "proxy (httputil.ReverseProxy)", launch: b.launchProxy(direct), request: unsigned},
	}
	colds := []*coldRow{{name: "direct", once: timedLaunch(b.launchEcho)}}
	if b.has(b.cfg.OfWatchdog, "of-watchdog") {
		rows = append(rows, &warmRow{name: "of-watchdog (mode http)", launch: b.launchOfWatchdog, request: unsigned})
		colds = append(colds, &coldRow{name: "of-watchdog (mode http) + server", once: timedLaunch(b.launchOfWatchdog)})
	}
	if b.has(b.cfg.RIE, "rie") {
		rows = append(rows, &warmRow{name: "RIE + aws-lambda-go", launch: b.launchRIE, request: unsigned})
		colds = append(colds, &coldRow{name: "RIE + aws-lambda-go", once: timedLaunch(b.launchRIE)})
	}
	rows = append(rows, b.floorRows(direct, unsigned)...)
	rows = append(rows, nimbusRows...)
	colds = append(colds, nimbusColds...)
	if b.cfg.Async > 0 {
		b.async = &asyncRows{n: n, fn: "async", count: b.cfg.Async, conns: slices.Max(b.cfg.Conns)}
	}
	keep := func(name string) bool { return name == "direct" || b.cfg.Rows.MatchString(name) }
	rows = slices.DeleteFunc(rows, func(r *warmRow) bool { return !keep(r.name) })
	colds = slices.DeleteFunc(colds, func(r *coldRow) bool { return !keep(r.name) })
	return rows, colds, nil
}

// launchProxy starts the reverse proxy in front of url.
func (b *bench) launchProxy(url string) launcher {
	return func(ctx context.Context) (*proc, string, error) {
		p, err := b.start("proxy", nil, b.bins["proxy"], url)
		if err != nil {
			return nil, "", err
		}
		addr, err := p.firstLine(ctx)
		if err != nil {
			return nil, "", err
		}
		return p, "http://" + addr + "/", nil
	}
}

// floorRows are the floors of the Nimbus rows, measured beside them:
// the lean proxy in front of the direct row's echo server, and in front of
// one echo server per client, each serving one request at a time (the
// URL rows' floor); the Runtime API relay in front of aws-lambda-go
// runtimes (the Invoke rows').
func (b *bench) floorRows(direct string, request func(string) Requester) []*warmRow {
	n := strconv.Itoa(slices.Max(b.cfg.Conns))
	return []*warmRow{
		{name: "floor: lean proxy -> echo", request: request,
			launch: b.launchLean("leanproxy", func(context.Context) ([]string, error) { return []string{hostOf(direct)}, nil })},
		// As many echo servers as the most clients of a row: at fewer,
		// the proxy's stack of free ones keeps as many busy as there are
		// clients.
		{name: "floor: lean proxy -> N echoes, one request each", request: request,
			launch: b.launchLean("leanproxy-one-each", b.echoes(slices.Max(b.cfg.Conns)), "-one-each")},
		{name: "floor: Runtime API relay -> aws-lambda-go", request: request,
			launch: func(ctx context.Context) (*proc, string, error) {
				return b.launchPrinting(ctx, "relay", b.bins["relay"], "-n", n, b.bins["noop"])
			}},
	}
}

// launchLean starts the lean proxy, with flags, in front of the upstreams
// that ups starts; its log is named after name.
func (b *bench) launchLean(name string, ups func(context.Context) ([]string, error), flags ...string) launcher {
	return func(ctx context.Context) (*proc, string, error) {
		addrs, err := ups(ctx)
		if err != nil {
			return nil, "", err
		}
		argv := append(append([]string{b.bins["leanproxy"]}, flags...), addrs...)
		return b.launchPrinting(ctx, name, argv...)
	}
}

// echoes starts n echo servers and returns their addresses, stopping the
// ones it started before (the proxy in front of them is started again).
func (b *bench) echoes(n int) func(context.Context) ([]string, error) {
	var ps []*proc
	return func(ctx context.Context) ([]string, error) {
		for _, p := range ps {
			p.stop(time.Second)
		}
		ps = nil
		var addrs []string
		for i := range n {
			p, url, err := b.launchEchoAs(ctx, fmt.Sprintf("echo-%d", i+1))
			if err != nil {
				return nil, err
			}
			ps = append(ps, p)
			addrs = append(addrs, hostOf(url))
		}
		return addrs, nil
	}
}

// hostOf is the host:port of an http:// URL.
func hostOf(url string) string {
	h, _, _ := strings.Cut(strings.TrimPrefix(url, "http://"), "/")
	return h
}

// launchPrinting starts argv, a server that prints its address as its
// first line, and waits until it answers a POST to /.
func (b *bench) launchPrinting(ctx context.Context, name string, argv ...string) (*proc, string, error) {
	began := time.Now()
	p, err := b.start(name, nil, argv...)
	if err != nil {
		return nil, "", err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	addr, err := p.firstLine(ctx)
	if err == nil {
		_, err = p.answered(ctx, "http://"+addr+"/", body, began)
	}
	if err != nil {
		p.stop(time.Second)
		return nil, "", err
	}
	return p, "http://" + addr + "/", nil
}

// relayCold is a cold start of the no-op under the relay (`relay -cold`):
// from its exec, with one invocation waiting, to its /response.
func (b *bench) relayCold(ctx context.Context) (time.Duration, error) {
	cmd := exec.CommandContext(ctx, b.bins["relay"], "-cold", b.bins["noop"])
	cmd.Env = []string{"PATH=/usr/local/bin:/usr/bin:/bin"}
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return 0, fmt.Errorf("relay -cold: %v: %s", err, lastLines(ee.Stderr, 5))
		}
		return 0, fmt.Errorf("relay -cold: %w", err)
	}
	d, err := time.ParseDuration(strings.TrimSpace(string(out)))
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("relay -cold printed %q, not a duration", out)
	}
	return d, nil
}

// has tells whether a peer's binary is there, noting it when not.
func (b *bench) has(bin, name string) bool {
	if _, err := os.Stat(bin); err != nil {
		b.notes = append(b.notes, fmt.Sprintf("no %s row: %v (docs/BENCHMARKS.md says how to build it)", name, err))
		return false
	}
	return true
}

// deployed is what deploy made on the node.
type deployed struct {
	urls map[int]string // the http functions' URLs by memory size
	rts  map[string]runtimes.Runtime
}

// echoName and noopName are the names of the warm rows' functions of a
// memory size.
func echoName(mb int) string { return fmt.Sprintf("echo-%d", mb) }
func noopName(mb int) string { return fmt.Sprintf("noop-%d", mb) }

// deploy makes the node's functions: for each memory size the echo server
// as an `http` function with a URL and the no-op as provided.al2023 (warm
// rows), and one function per runtime kind for the cold rows.
func (b *bench) deploy(ctx context.Context, n *nimbusNode) (deployed, error) {
	echo, err := os.ReadFile(b.bins["echo"])
	if err != nil {
		return deployed{}, err
	}
	noop, err := os.ReadFile(b.bins["noop"])
	if err != nil {
		return deployed{}, err
	}
	d := deployed{urls: map[int]string{}, rts: map[string]runtimes.Runtime{}}
	for _, rt := range runtimes.Discover(slog.New(slog.DiscardHandler)) {
		if _, ok := d.rts[rt.Kind]; !ok {
			d.rts[rt.Kind] = rt
		}
	}
	var fns []fn
	for _, mb := range b.cfg.Memory {
		fns = append(fns,
			fn{Name: echoName(mb), Runtime: "http", Files: map[string][]byte{"bootstrap": echo}, Memory: mb, Concurrency: b.cfg.HTTPConcurrency},
			fn{Name: noopName(mb), Runtime: "provided.al2023", Files: map[string][]byte{"bootstrap": noop}, Memory: mb})
	}
	fns = append(fns, fn{Name: "cold-go", Runtime: "provided.al2023", Files: map[string][]byte{"bootstrap": noop}},
		fn{Name: "async", Runtime: "provided.al2023", Files: map[string][]byte{"bootstrap": noop}, Memory: slices.Max(b.cfg.Memory)})
	if rt, ok := d.rts[runtimes.KindPython]; ok {
		fns = append(fns, fn{Name: "cold-python", Runtime: rt.ID, Handler: "app.handler",
			Files: map[string][]byte{"app.py": []byte("def handler(event, context):\n    return event\n")}})
	}
	if rt, ok := d.rts[runtimes.KindNode]; ok {
		fns = append(fns, fn{Name: "cold-node", Runtime: rt.ID, Handler: "index.handler",
			Files: map[string][]byte{"index.js": []byte("exports.handler = async (event) => event;\n")}})
	}
	for _, f := range fns {
		if f.Memory == 0 {
			f.Memory = b.cfg.Memory[0]
		}
		if err := n.deploy(ctx, b.dir, f); err != nil {
			return d, err
		}
	}
	for _, mb := range b.cfg.Memory {
		if d.urls[mb], err = n.addURL(ctx, echoName(mb)); err != nil {
			return d, err
		}
	}
	return d, nil
}

// nimbusColds are the node's cold rows, their names ending in suffix, and
// with bare, the bare execs beside them.
func (b *bench) nimbusColds(n *nimbusNode, d deployed, suffix string, bare bool) []*coldRow {
	hc := &http.Client{Timeout: time.Minute}
	invoke := func(name string) func(ctx context.Context) (time.Duration, error) {
		return func(ctx context.Context) (time.Duration, error) {
			if err := n.newInstance(ctx, name); err != nil {
				return 0, err
			}
			select {
			case <-ctx.Done():
				return 0, ctx.Err()
			case <-time.After(b.cfg.ColdGap):
			}
			req, err := poster(n.invokeURL(name), body, n.creds)(ctx)
			if err != nil {
				return 0, err
			}
			began := time.Now()
			ok, err := do(hc, req)
			took := time.Since(began)
			if !ok && err == nil {
				err = fmt.Errorf("invoke %s: not a 2xx", name)
			}
			return took, err
		}
	}
	var rows []*coldRow
	add := func(name string, once func(context.Context) (time.Duration, error), exec string, execOnce func(context.Context) (time.Duration, error)) {
		rows = append(rows, &coldRow{name: name + suffix, once: once})
		if bare {
			rows = append(rows, &coldRow{name: exec, once: execOnce})
		}
	}
	add(fmt.Sprintf("Nimbus Go (provided.al2023), %d MB", b.cfg.Memory[0]), invoke("cold-go"),
		"`bootstrap -exit` (the Go no-op's exec)", timedExec(b.bins["noop"], "-exit"))
	if bare {
		rows = append(rows, &coldRow{name: "floor: Runtime API relay, aws-lambda-go cold", once: b.relayCold})
	}
	if rt, ok := d.rts[runtimes.KindPython]; ok {
		add(fmt.Sprintf("Nimbus Python (%s), %d MB", rt.ID, b.cfg.Memory[0]), invoke("cold-python"),
			"`python3 -c pass`", timedExec(rt.Interp, "-c", "pass"))
	}
	if rt, ok := d.rts[runtimes.KindNode]; ok {
		add(fmt.Sprintf("Nimbus Node (%s), %d MB", rt.ID, b.cfg.Memory[0]), invoke("cold-node"),
			"`node -e 0`", timedExec(rt.Interp, "-e", "0"))
	}
	return rows
}
