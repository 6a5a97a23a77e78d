package node_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/node"
	"github.com/nimbus-serverless/nimbus/internal/node/nodetest"
	"github.com/nimbus-serverless/nimbus/internal/sandbox/sandboxtest"
	"github.com/nimbus-serverless/nimbus/internal/testenv"
)

// probePy is a Python function that tries connections from its instance:
// each of event["addrs"] ("host:port" over TCP, "@name" an abstract unix
// socket) maps to "ok" or "fail ERROR". With event["hold"] it first binds
// the abstract socket of that name and keeps it while the instance lives.
// It answers its own Runtime API's address too.
const probePy = `
import os, socket
held = []
def connect(a):
    try:
        if a.startswith("@"):
            s = socket.socket(socket.AF_UNIX)
            s.settimeout(2)
            s.connect("\0" + a[1:])
        else:
            h, p = a.rsplit(":", 1)
            s = socket.create_connection((h, int(p)), timeout=2)
        s.close()
        return "ok"
    except OSError as e:
        return "fail " + type(e).__name__
def handler(event, context):
    if event.get("hold"):
        u = socket.socket(socket.AF_UNIX)
        u.bind("\0" + event["hold"])
        u.listen(4)
        held.append(u)
    return {"api": os.environ["AWS_LAMBDA_RUNTIME_API"], "got": {a: connect(a) for a in event.get("addrs", [])}}
`

// outside is a server in a network namespace the test makes, an address
// outside the node's host as instances see it.
type outside struct{ addr string }

// startOutside makes network namespace nimbus-test-<pid> joined to the
// host by a veth pair on a /30 of 198.18.0.0/15 (the benchmarking range)
// and runs a TCP server there; everything goes when the test ends. With
// linkLocal the /30 is one of 169.254.0.0/16 instead, the range of clouds'
// metadata services (namespace nimbus-test-<pid>-ll).
func startOutside(t *testing.T, linkLocal bool) outside {
	t.Helper()
	ipTool := testenv.Tool(t, "ip")
	pid := os.Getpid()
	ns, host, peer := fmt.Sprintf("nimbus-test-%d", pid), fmt.Sprintf("ntst%da", pid%100000), fmt.Sprintf("ntst%db", pid%100000)
	k := pid % 16384 * 4
	base := fmt.Sprintf("198.%d.%d.", 18+k>>16, k>>8&255)
	if linkLocal {
		ns, host, peer = ns+"-ll", fmt.Sprintf("ntst%dc", pid%100000), fmt.Sprintf("ntst%dd", pid%100000)
		base = fmt.Sprintf("169.254.%d.", 1+k>>8%250)
	}
	hostIP, peerIP := base+fmt.Sprint(k&255+1), base+fmt.Sprint(k&255+2)
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(ipTool, args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	t.Cleanup(func() {
		_ = exec.Command(ipTool, "link", "del", host).Run()
		_ = exec.Command(ipTool, "netns", "del", ns).Run()
	})
	run("netns", "add", ns)
	run("link", "add", host, "type", "veth", "peer", "name", peer, "netns", ns)
	run("addr", "add", hostIP+"/30", "dev", host)
	run("link", "set", host, "up")
	run("-n", ns, "addr", "add", peerIP+"/30", "dev", peer)
	run("-n", ns, "link", "set", peer, "up")
	run("-n", ns, "link", "set", "lo", "up")
	srv := exec.Command(ipTool, "netns", "exec", ns, "/usr/bin/python3", "-c",
		"import socket\ns=socket.socket()\ns.bind(('0.0.0.0',8080))\ns.listen(8)\nprint('ready',flush=True)\nwhile True:\n c,_=s.accept(); c.sendall(b'hi'); c.close()\n")
	stdout, err := srv.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Process.Kill(); _ = srv.Wait() })
	line := make([]byte, 6)
	if _, err := io.ReadFull(stdout, line); err != nil || string(line) != "ready\n" {
		t.Fatalf("outside server: %q, %v", line, err)
	}
	return outside{addr: peerIP + ":8080"}
}

// loopbackServer listens on the host's loopback until the test ends.
func loopbackServer(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sandboxtest.Greet(t, ln)
	return ln.Addr().String()
}

// probeResult is probePy's answer.
type probeResult struct {
	API string            `json:"api"`
	Got map[string]string `json:"got"`
}

// TestNetworkIsolation tries, from a Python function, every door network
// isolation closes, in each network, host being the control where every
// one is open: the host's loopback (a port of the test's, the Nimbus API),
// a neighbour's Runtime API and abstract unix socket (the neighbour runs on
// the host's network, so that its Runtime API is on the host's loopback),
// and a server outside the host (in a network namespace of the test's).
func TestNetworkIsolation(t *testing.T) {
	if _, err := os.Stat("/usr/bin/python3"); err != nil {
		testenv.Missing(t, "/usr/bin/python3", err)
	}
	n := nodetest.Start(t, nil)
	if !n.Isolation().NetworkIsolation {
		t.Skip("the node's sandbox has no network isolation on this host (needs root and network namespaces)")
	}
	out, meta := startOutside(t, false), startOutside(t, true)
	c := lambdaClient(n)
	abstract := fmt.Sprintf("nimbus-test-%d", os.Getpid())
	createProbe(t, n, c, "neighbour", nimbus.NetworkHost)
	nb := invokeProbe(t, n, "neighbour", map[string]any{"hold": abstract})
	doors := map[string]string{
		"host loopback":         loopbackServer(t),
		"Nimbus API":            n.Addr(),
		"neighbour Runtime API": nb.API,
		"neighbour abstract":    "@" + abstract,
		"outside":               out.addr,
		"link-local (metadata)": meta.addr,
	}
	open := map[string][]string{ // the doors open in each network
		nimbus.NetworkEgress: {"outside"},
		nimbus.NetworkNone:   nil,
		nimbus.NetworkHost:   {"host loopback", "Nimbus API", "neighbour Runtime API", "neighbour abstract", "outside", "link-local (metadata)"},
	}
	var addrs []string
	for _, a := range doors {
		addrs = append(addrs, a)
	}
	for _, network := range []string{nimbus.NetworkEgress, nimbus.NetworkNone, nimbus.NetworkHost} {
		name := "probe-" + network
		createProbe(t, n, c, name, network)
		res := invokeProbe(t, n, name, map[string]any{"addrs": addrs})
		for door, a := range doors {
			want := "refused"
			for _, o := range open[network] {
				if o == door {
					want = "open"
				}
			}
			if got := res.Got[a]; (got == "ok") != (want == "open") {
				t.Errorf("%s: %s (%s): %q, want %s", network, door, a, got, want)
			}
		}
		if wantAPI := network != nimbus.NetworkHost; wantAPI != (res.API == "127.0.0.1:9001") {
			t.Errorf("%s: AWS_LAMBDA_RUNTIME_API %s", network, res.API)
		}
	}
}

// createProbe deploys probePy as name with network network.
func createProbe(t *testing.T, n *node.Node, c *lambda.Client, name, network string) {
	t.Helper()
	_, err := c.CreateFunction(t.Context(), &lambda.CreateFunctionInput{
		FunctionName: aws.String(name), Runtime: types.RuntimePython311, Handler: aws.String("app.handler"),
		Role:    aws.String("arn:aws:iam::000000000000:role/test"),
		Code:    &types.FunctionCode{ZipFile: nodetest.Zip(t, map[string]string{"app.py": probePy})},
		Timeout: aws.Int32(30),
	})
	if err != nil {
		t.Fatalf("create %s: %v", name, err)
	}
	setNetwork(t, n, name, network)
	waitActive(t, c, name)
}

// setNetwork sets the function's NimbusNetwork.
func setNetwork(t testing.TB, n *node.Node, name, network string) {
	t.Helper()
	body := fmt.Sprintf(`{"NimbusNetwork":%q}`, network)
	req, _ := http.NewRequest(http.MethodPut, nodetest.Endpoint(n)+"/2015-03-31/functions/"+name+"/configuration", strings.NewReader(body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("set network of %s: %s", name, resp.Status)
	}
}

// waitActive polls until the function's last update is done.
func waitActive(t *testing.T, c *lambda.Client, name string) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		out, err := c.GetFunctionConfiguration(t.Context(), &lambda.GetFunctionConfigurationInput{FunctionName: aws.String(name)})
		if err == nil && out.State == types.StateActive && out.LastUpdateStatus == types.LastUpdateStatusSuccessful {
			return
		}
	}
	t.Fatalf("%s did not become active", name)
}

// invokeProbe invokes name with event and decodes its answer.
func invokeProbe(t *testing.T, n *node.Node, name string, event map[string]any) probeResult {
	t.Helper()
	body, _ := json.Marshal(event)
	resp, err := http.Post(nodetest.Endpoint(n)+"/2015-03-31/functions/"+name+"/invocations", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var res probeResult
	if resp.StatusCode != http.StatusOK || resp.Header.Get("X-Amz-Function-Error") != "" || json.Unmarshal(raw, &res) != nil {
		t.Fatalf("invoke %s: %s %q", name, resp.Status, raw)
	}
	return res
}
