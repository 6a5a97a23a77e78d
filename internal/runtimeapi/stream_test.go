package runtimeapi

import (
	"context"
	"encoding/base64"
	"errors"
	"io"
	"net/http"
	"sync"
	"testing"
)

// sink is an invocation's Stream: it keeps what it got and passes each
// write to got.
type sink struct {
	mu   sync.Mutex
	all  []string
	got  chan string
	done bool // set by the test once Invoke returned: no write may follow
	late []string
}

func newSink() *sink { return &sink{got: make(chan string, 16)} }

func (s *sink) Write(p []byte) (int, error) {
	s.mu.Lock()
	if s.done {
		s.late = append(s.late, string(p))
	}
	s.all = append(s.all, string(p))
	s.mu.Unlock()
	s.got <- string(p)
	return len(p), nil
}

// streamPost starts a streamed /response for id whose body the returned
// pipe writes and whose trailers are tr (filled before the pipe closes).
func streamPost(t *testing.T, s *Server, id string, tr http.Header) (*io.PipeWriter, <-chan reply) {
	t.Helper()
	pr, pw := io.Pipe()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, "http://"+s.Addr()+responsePath(id), pr)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set(hdrResponseMode, streamingMode)
	req.Trailer = tr
	ch := make(chan reply, 1)
	go func() {
		resp, err := http.DefaultTransport.RoundTrip(req)
		if err != nil {
			_ = pr.CloseWithError(err)
			ch <- reply{}
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		ch <- reply{resp.StatusCode, resp.Header, b}
	}()
	return pw, ch
}

// TestStreamedResponse: a streamed /response reaches Stream write by write
// (the second is written once the first has arrived), and the trailers'
// error is the result's.
func TestStreamedResponse(t *testing.T) {
	for _, fail := range []bool{false, true} {
		s := newServer(t)
		rt := newRuntime(t, s)
		out := newSink()
		done := invokeAsync(t.Context(), s, Invocation{RequestID: "r", Stream: out})
		rt.next()
		tr := http.Header{hdrErrorType: nil, hdrErrorBody: nil}
		pw, answered := streamPost(t, s, "r", tr)
		if _, err := pw.Write([]byte("first")); err != nil {
			t.Fatal(err)
		}
		if got := <-out.got; got != "first" {
			t.Fatalf("first write: %q", got)
		}
		if _, err := pw.Write([]byte("second")); err != nil {
			t.Fatal(err)
		}
		if fail {
			tr.Set(hdrErrorType, "TypeError")
			tr.Set(hdrErrorBody, base64.StdEncoding.EncodeToString([]byte(`{"errorType":"TypeError","errorMessage":"mid-stream"}`)))
		}
		_ = pw.Close()
		if r := <-answered; r.status != http.StatusAccepted {
			t.Fatalf("streamed response answered %d %s", r.status, r.body)
		}
		o := wait(t, done)
		if o.err != nil || len(o.res.Payload) != 0 {
			t.Fatalf("Invoke = %q, %v", o.res.Payload, o.err)
		}
		if len(out.all) != 2 || out.all[1] != "second" {
			t.Errorf("Stream got %q", out.all)
		}
		switch {
		case fail && (o.res.Err == nil || o.res.Err.Type != "TypeError" || o.res.Err.Message != "mid-stream"):
			t.Errorf("error in the trailers: %+v", o.res.Err)
		case !fail && o.res.Err != nil:
			t.Errorf("no error sent, got %+v", o.res.Err)
		}
	}
}

// TestStreamedResponseWithoutStream: an invocation without Stream reads a
// streamed response whole.
func TestStreamedResponseWithoutStream(t *testing.T) {
	s := newServer(t)
	rt := newRuntime(t, s)
	done := invokeAsync(t.Context(), s, Invocation{RequestID: "r"})
	rt.next()
	r := rt.post(responsePath("r"), "whole body", map[string]string{hdrResponseMode: streamingMode})
	if r.status != http.StatusAccepted {
		t.Fatalf("answered %d %s", r.status, r.body)
	}
	if o := wait(t, done); o.err != nil || string(o.res.Payload) != "whole body" || o.res.Err != nil {
		t.Errorf("Invoke = %q, %+v, %v", o.res.Payload, o.res.Err, o.err)
	}
}

// TestStreamClosedWhenInvokeReturns: once Invoke has returned (its context
// ended mid-stream), what the runtime still writes never reaches Stream.
func TestStreamClosedWhenInvokeReturns(t *testing.T) {
	s := newServer(t)
	rt := newRuntime(t, s)
	out := newSink()
	ctx, cancel := context.WithCancel(t.Context())
	done := invokeAsync(ctx, s, Invocation{RequestID: "r", Stream: out})
	rt.next()
	pw, answered := streamPost(t, s, "r", nil)
	if _, err := pw.Write([]byte("early")); err != nil {
		t.Fatal(err)
	}
	<-out.got
	cancel()
	if o := wait(t, done); !errors.Is(o.err, context.Canceled) {
		t.Fatalf("Invoke error = %v, want Canceled", o.err)
	}
	out.mu.Lock()
	out.done = true
	out.mu.Unlock()
	_, _ = pw.Write([]byte("late")) // may fail: the server stops reading
	_ = pw.Close()
	<-answered
	out.mu.Lock()
	defer out.mu.Unlock()
	if len(out.late) != 0 {
		t.Errorf("Stream got %q after Invoke returned", out.late)
	}
}
