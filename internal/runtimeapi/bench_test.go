package runtimeapi

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"testing"
)

// BenchmarkInvoke measures a warm invocation: Invoke, the runtime's /next
// and /response over one kept connection.
func BenchmarkInvoke(b *testing.B) {
	s, err := Listen(slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr}
	base := "http://" + s.Addr() + "/2018-06-01/runtime/invocation/"

	ctx, cancel := context.WithCancel(context.Background())
	loopDone := make(chan struct{})
	go func() { // an echo runtime
		defer close(loopDone)
		for ctx.Err() == nil {
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"next", nil)
			resp, err := hc.Do(req)
			if err != nil {
				return
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			id := resp.Header.Get("Lambda-Runtime-Aws-Request-Id")
			resp, err = hc.Post(base+id+"/response", "application/json", bytes.NewReader(body))
			if err != nil {
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}()
	inv := Invocation{RequestID: "bench", Payload: []byte(`{"hello":"world"}`)}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Invoke(ctx, inv); err != nil {
			b.Fatal(err)
		}
	}
	cancel()
	_ = s.Close()
	<-loopDone
}

// BenchmarkHTTPEcho is the baseline: one round trip to a plain net/http echo
// server over a kept connection.
func BenchmarkHTTPEcho(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	hs := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		_, _ = w.Write(body)
	})}
	go func() { _ = hs.Serve(ln) }()
	defer hs.Close()
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr}
	url := "http://" + ln.Addr().String() + "/"
	payload := []byte(`{"hello":"world"}`)
	b.ReportAllocs()
	for b.Loop() {
		resp, err := hc.Post(url, "application/json", bytes.NewReader(payload))
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
}
