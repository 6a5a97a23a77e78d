package api_test

import (
	"bufio"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"

	"github.com/nimbus-serverless/nimbus/internal/node/nodetest"
)

// streamServer sends one line, waits two seconds, and sends another.
const streamServer = `import http.server, os, time
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for line in (b"first\n", b"second\n"):
            self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
            self.wfile.flush()
            if line == b"first\n":
                time.sleep(2)
        self.wfile.write(b"0\r\n\r\n")
http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
`

// TestFunctionURLStreams checks that a RESPONSE_STREAM URL hands an HTTP
// function's answer over as it is written: the first line arrives while
// the function still sleeps before the second.
func TestFunctionURLStreams(t *testing.T) {
	n := nodetest.Start(t, patientNode)
	c := client(n)
	deploy(t, c, fixture{name: "sse", runtime: "http", timeout: 30, zip: nodetest.Zip(t, map[string][]byte{
		"bootstrap": []byte("#!/bin/sh\nexec /usr/bin/python3 server.py\n"),
		"server.py": []byte(streamServer),
	}, "bootstrap")})
	if _, err := c.CreateFunctionUrlConfig(t.Context(), &lambda.CreateFunctionUrlConfigInput{
		FunctionName: aws.String("sse"), AuthType: types.FunctionUrlAuthTypeNone, InvokeMode: types.InvokeModeResponseStream,
	}); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get(nodetest.Endpoint(n) + "/fn/sse")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	r := bufio.NewReader(resp.Body)
	first, err := r.ReadString('\n')
	if err != nil || first != "first\n" {
		t.Fatalf("first line = %q, %v", first, err)
	}
	gotFirst := time.Now()
	second, err := r.ReadString('\n')
	if err != nil || second != "second\n" {
		t.Fatalf("second line = %q, %v", second, err)
	}
	if gap := time.Since(gotFirst); gap < 1500*time.Millisecond {
		t.Fatalf("the lines arrived %s apart: the answer was buffered, not streamed", gap)
	}
	if !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
		t.Errorf("Content-Type = %q", resp.Header.Get("Content-Type"))
	}
}
