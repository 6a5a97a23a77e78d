package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/config"

	"github.com/nimbus-serverless/nimbus/internal/auth"
	"github.com/nimbus-serverless/nimbus/internal/codepkg"
)

// region is the node's region (nimbus serve's default), which signatures
// name.
const region = "us-east-1"

// nimbusNode is a `nimbus serve` started by the benchmark, with its own data
// directory, on a free port of 127.0.0.1, with authentication on (the
// default): the API's requests are signed with the admin key it wrote.
type nimbusNode struct {
	*proc
	endpoint string
	creds    aws.Credentials
	hc       *http.Client
	versions int // environment changes made by newInstance
}

// servingRE finds the API's address in the node's log.
var servingRE = regexp.MustCompile(`msg="nimbus is serving" addr=(http://\S+)`)

// startNimbus starts bin as a node under dir, its data in dir/data, with
// the serve flags args.
func startNimbus(ctx context.Context, dir, data, bin string, args ...string) (*nimbusNode, error) {
	argv := append([]string{bin, "serve", "--addr", "127.0.0.1:0", "--data-dir", filepath.Join(dir, data)}, args...)
	p, err := start(dir, data, nil, argv...) // its log: <data>.log
	if err != nil {
		return nil, err
	}
	data = filepath.Join(dir, data)
	n := &nimbusNode{proc: p, hc: &http.Client{Timeout: time.Minute}}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for n.endpoint == "" {
		if m := servingRE.FindSubmatch(p.output()); m != nil {
			n.endpoint = string(m[1])
		} else if err := p.wait(ctx); err != nil {
			p.stop(5 * time.Second)
			return nil, err
		}
	}
	sc, err := config.LoadSharedConfigProfile(ctx, auth.Profile, func(o *config.LoadSharedConfigOptions) {
		o.CredentialsFiles = []string{filepath.Join(data, auth.CredentialsFile)}
		o.ConfigFiles = []string{}
	})
	if err != nil {
		p.stop(5 * time.Second)
		return nil, fmt.Errorf("read the node's admin key: %w", err)
	}
	n.creds = sc.Credentials
	return n, nil
}

// call sends a signed API request with in as its JSON body (none if nil)
// and decodes the answer into out (unless nil).
func (n *nimbusNode) call(ctx context.Context, method, path string, in, out any) error {
	var body []byte
	if in != nil {
		var err error
		if body, err = json.Marshal(in); err != nil {
			return err
		}
	}
	b, err := n.send(ctx, method, path, body)
	if err != nil || out == nil {
		return err
	}
	return json.Unmarshal(b, out)
}

// send sends a signed API request and returns the body of its 2xx answer.
func (n *nimbusNode) send(ctx context.Context, method, path string, body []byte) ([]byte, error) {
	req, err := request(ctx, method, n.endpoint+path, body, bodyHash(body), n.creds)
	if err != nil {
		return nil, err
	}
	resp, err := n.hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode/100 != 2 {
		return nil, fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, b)
	}
	return b, nil
}

// fn is a function to deploy.
type fn struct {
	Name, Runtime, Handler string
	Files                  map[string][]byte // name in the package -> content
	Memory, Concurrency    int               // 0: the node's default
}

// deploy creates f and waits until it is Active.
func (n *nimbusNode) deploy(ctx context.Context, dir string, f fn) error {
	zip, err := pack(filepath.Join(dir, "fn-"+f.Name), f.Files)
	if err != nil {
		return err
	}
	in := map[string]any{
		"FunctionName": f.Name, "Runtime": f.Runtime, "Timeout": 30,
		"Role": "arn:aws:iam::000000000000:role/bench",
		"Code": map[string]string{"ZipFile": base64.StdEncoding.EncodeToString(zip)},
	}
	if f.Handler != "" {
		in["Handler"] = f.Handler
	}
	if f.Memory != 0 {
		in["MemorySize"] = f.Memory
	}
	if f.Concurrency != 0 {
		in["NimbusHttpConcurrency"] = f.Concurrency
	}
	if err := n.call(ctx, http.MethodPost, "/2015-03-31/functions", in, nil); err != nil {
		return err
	}
	return n.waitUpdated(ctx, f.Name)
}

// pack writes files into dir and zips it.
func pack(dir string, files map[string][]byte) ([]byte, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o755); err != nil {
			return nil, err
		}
	}
	var buf bytes.Buffer
	if _, err := codepkg.Zip(dir, &buf); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// waitUpdated polls until the function is Active and its last update done.
func (n *nimbusNode) waitUpdated(ctx context.Context, name string) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for {
		var c struct{ State, LastUpdateStatus, StateReason string }
		if err := n.call(ctx, http.MethodGet, "/2015-03-31/functions/"+name+"/configuration", nil, &c); err != nil {
			return err
		}
		switch {
		case c.State == "Failed":
			return fmt.Errorf("function %s failed: %s", name, c.StateReason)
		case c.State == "Active" && c.LastUpdateStatus == "Successful":
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("function %s still %s/%s", name, c.State, c.LastUpdateStatus)
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// addURL gives the function a URL that needs no signature, and returns it.
func (n *nimbusNode) addURL(ctx context.Context, name string) (string, error) {
	err := n.call(ctx, http.MethodPost, "/2021-10-31/functions/"+name+"/url", map[string]string{"AuthType": "NONE"}, nil)
	return n.endpoint + "/fn/" + name + "/", err
}

// newInstance changes an environment variable of the function, so that
// its next invoke runs on a new instance (a new version: a new pool).
func (n *nimbusNode) newInstance(ctx context.Context, name string) error {
	n.versions++
	env := map[string]any{"Environment": map[string]any{"Variables": map[string]string{"BENCH_VERSION": strconv.Itoa(n.versions)}}}
	if err := n.call(ctx, http.MethodPut, "/2015-03-31/functions/"+name+"/configuration", env, nil); err != nil {
		return err
	}
	return n.waitUpdated(ctx, name)
}

// invokeURL is the Invoke API's URL of a function.
func (n *nimbusNode) invokeURL(name string) string {
	return n.endpoint + "/2015-03-31/functions/" + name + "/invocations"
}

// signer signs every request of the benchmark (it caches derived keys and
// is safe for concurrent use).
var signer = v4.NewSigner()

// request makes a request of body to url with header's name and value
// pairs, signed with SigV4 by creds as an AWS SDK signs a Lambda request,
// unless creds has no keys.
func request(ctx context.Context, method, url string, body []byte, hash string, creds aws.Credentials, header ...string) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, method, url, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	if !creds.HasKeys() {
		return req, nil
	}
	return req, signer.SignHTTP(ctx, creds, req, hash, "lambda", region, time.Now())
}

// bodyHash is the hex SHA-256 of body, as a signature names it.
func bodyHash(body []byte) string {
	sum := sha256.Sum256(body)
	return hex.EncodeToString(sum[:])
}

// poster is a Requester of POSTs of body to url with header's name and
// value pairs, signed by creds unless it has no keys.
func poster(url string, body []byte, creds aws.Credentials, header ...string) Requester {
	hash := bodyHash(body)
	return func(ctx context.Context) (*http.Request, error) {
		return request(ctx, http.MethodPost, url, body, hash, creds, header...)
	}
}

// successes is how many invocations of the function ended in success on
// the node, from its metrics.
func (n *nimbusNode) successes(ctx context.Context, name string) (int, error) {
	b, err := n.send(ctx, http.MethodGet, "/metrics", nil)
	if err != nil {
		return 0, err
	}
	total := 0
	for line := range strings.Lines(string(b)) {
		if !strings.HasPrefix(line, "faas_invocations_total{") || !strings.Contains(line, `function="`+name+`"`) ||
			!strings.Contains(line, `outcome="success"`) {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(line[strings.LastIndexByte(line, ' ')+1:]), 64)
		if err != nil {
			return 0, fmt.Errorf("metrics: %q: %w", line, err)
		}
		total += int(v)
	}
	return total, nil
}
