package runtimes

import (
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/nimbus-serverless/nimbus/internal/runtimeapi"
)

// streamHandlers are streaming handlers (awslambda.streamifyResponse). gate
// writes "first\n", then waits (at most 10 s) for the file "release" in its
// code directory, which the test makes once it has received "first\n", and
// writes "released\n" or "timed out\n".
const streamHandlers = `const fs = require('node:fs');
const path = require('node:path');
const { pipeline } = require('node:stream/promises');
const { Readable } = require('node:stream');
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
exports.gate = awslambda.streamifyResponse(async (event, responseStream) => {
  responseStream.setContentType('text/plain');
  responseStream.write('first\n');
  const release = path.join(process.env.LAMBDA_TASK_ROOT, 'release');
  let released = false;
  for (let i = 0; i < 1000 && !released; i++) {
    released = fs.existsSync(release);
    if (!released) await sleep(10);
  }
  responseStream.write(released ? 'released\n' : 'timed out\n');
  responseStream.end();
});
exports.pieces = awslambda.streamifyResponse(async (event, responseStream) => {
  await pipeline(Readable.from(['a', 'b', 'c']), responseStream);
});
exports.noEnd = awslambda.streamifyResponse(async (event, responseStream) => {
  responseStream.write(JSON.stringify(event));
});
exports.midFail = awslambda.streamifyResponse(async (event, responseStream) => {
  responseStream.write('partial');
  await sleep(5);
  throw new TypeError('broke mid-stream');
});
exports.earlyFail = awslambda.streamifyResponse(async () => {
  throw new RangeError('before any byte');
});
exports.http = awslambda.streamifyResponse(async (event, responseStream) => {
  const s = awslambda.HttpResponseStream.from(responseStream, { statusCode: 201, headers: { 'x-a': 'b' } });
  s.end('body');
});
`

// chunks collects what a streamed invocation writes, and calls on for
// each write.
type chunks struct {
	mu  sync.Mutex
	got []string
	on  func(string)
}

func (c *chunks) Write(p []byte) (int, error) {
	c.mu.Lock()
	c.got = append(c.got, string(p))
	c.mu.Unlock()
	if c.on != nil {
		c.on(string(p))
	}
	return len(p), nil
}

func (c *chunks) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return strings.Join(c.got, "")
}

// TestNodeStreamifyResponse: a streamifyResponse handler's writes reach the
// invocation's Stream as they are made (the last one is written only once
// the test has received the first), an error after the first write comes
// in the trailers, one before in /error; without a Stream the answer is
// read whole.
func TestNodeStreamifyResponse(t *testing.T) {
	node := runtimeOf(t, KindNode)
	code := writeFiles(t, map[string]string{"index.js": streamHandlers})
	run := func(handler, event string, c *chunks) runtimeapi.Result {
		t.Helper()
		in := start(t, node, code, "index."+handler, nil)
		inv := runtimeapi.Invocation{Payload: []byte(event)}
		if c != nil {
			inv.Stream = c
		}
		return in.invoke(t, inv)
	}

	gate := &chunks{on: func(p string) {
		if p == "first\n" {
			if err := os.WriteFile(filepath.Join(code, "release"), nil, 0o644); err != nil {
				t.Error(err)
			}
		}
	}}
	res := run("gate", `{}`, gate)
	if res.Err != nil || len(res.Payload) != 0 || gate.String() != "first\nreleased\n" {
		t.Errorf("gate: streamed %q, result %q %+v; want first then released", gate.got, res.Payload, res.Err)
	}

	pieces := &chunks{}
	if res := run("pieces", `{}`, pieces); res.Err != nil || pieces.String() != "abc" {
		t.Errorf("pipeline: streamed %q, %+v", pieces.got, res.Err)
	}
	noEnd := &chunks{}
	if res := run("noEnd", `{"k":1}`, noEnd); res.Err != nil || noEnd.String() != `{"k":1}` {
		t.Errorf("a handler that does not end its stream: %q, %+v", noEnd.got, res.Err)
	}
	if res := run("noEnd", `{"k":2}`, nil); res.Err != nil || string(res.Payload) != `{"k":2}` {
		t.Errorf("no Stream: the answer read whole: %q, %+v", res.Payload, res.Err)
	}

	mid := &chunks{}
	res = run("midFail", `{}`, mid)
	if mid.String() != "partial" {
		t.Errorf("midFail streamed %q", mid.got)
	}
	checkError(t, res.Err, errorCase{typ: "TypeError", message: "broke mid-stream"})
	early := &chunks{}
	res = run("earlyFail", `{}`, early)
	if len(early.got) != 0 {
		t.Errorf("earlyFail streamed %q", early.got)
	}
	checkError(t, res.Err, errorCase{typ: "RangeError", message: "before any byte"})

	h := &chunks{}
	if res := run("http", `{}`, h); res.Err != nil ||
		h.String() != `{"statusCode":201,"headers":{"x-a":"b"}}`+strings.Repeat("\x00", 8)+"body" {
		t.Errorf("HttpResponseStream: %q, %+v", h.String(), res.Err)
	}
}
