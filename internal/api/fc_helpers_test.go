package api_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/nimbus-serverless/nimbus/internal/node"
	"github.com/nimbus-serverless/nimbus/internal/node/nodetest"
)

// fcAPI calls a node's Function Compute dialect unsigned (a node without
// authentication) and checks the status of each answer.
type fcAPI struct {
	t    *testing.T
	base string
}

func newFCAPI(t *testing.T, n *node.Node) fcAPI {
	return fcAPI{t: t, base: nodetest.Endpoint(n) + "/2023-03-30"}
}

// do sends method path (under /2023-03-30) with body ("" for none) and
// fails unless the answer is want; it returns the answer's body.
func (c fcAPI) do(method, path, body string, want int) []byte {
	c.t.Helper()
	req, _ := http.NewRequestWithContext(c.t.Context(), method, c.base+path, strings.NewReader(body))
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode != want || res.Header.Get("X-Fc-Request-Id") == "" {
		c.t.Fatalf("%s %s = %d %s (x-fc-request-id %q), want %d", method, path, res.StatusCode, b, res.Header.Get("X-Fc-Request-Id"), want)
	}
	return b
}

// json sends as do and decodes the answer into v.
func (c fcAPI) json(method, path, body string, want int, v any) {
	c.t.Helper()
	b := c.do(method, path, body, want)
	if err := json.Unmarshal(b, v); err != nil {
		c.t.Fatalf("%s %s: %v in %s", method, path, err, b)
	}
}

// fails sends as do, wanting status and Function Compute's error code
// whose message contains msg.
func (c fcAPI) fails(method, path, body string, status int, code, msg string) {
	c.t.Helper()
	var e struct{ Code, Message, RequestId string }
	c.json(method, path, body, status, &e)
	if e.Code != code || !strings.Contains(e.Message, msg) || e.RequestId == "" {
		c.t.Errorf("%s %s %s: %+v, want %s with %q", method, path, body, e, code, msg)
	}
}
