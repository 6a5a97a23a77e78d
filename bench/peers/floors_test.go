package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
)

func TestMain(m *testing.M) {
	code := m.Run()
	if built.dir != "" {
		os.RemoveAll(built.dir)
	}
	os.Exit(code)
}

// built are the binaries of the floors' tests, built once.
var built struct {
	once sync.Once
	dir  string
	bins map[string]string
	err  error
}

// testBins builds the echo server, the lean proxy, the relay and the no-op
// (once) and returns their paths by name.
func testBins(t *testing.T) map[string]string {
	t.Helper()
	built.once.Do(func() {
		if built.dir, built.err = os.MkdirTemp("", "peers-test-"); built.err != nil {
			return
		}
		pkgs := map[string]string{}
		for _, name := range []string{"echo", "leanproxy", "relay", "noop"} {
			pkgs[name] = packages[name]
		}
		built.bins, built.err = buildBins(context.Background(), built.dir, pkgs)
	})
	if built.err != nil {
		t.Fatal(built.err)
	}
	return built.bins
}

// startPrinting starts argv, a server that prints its address first, and
// returns its URL; it is stopped when the test ends.
func startPrinting(t *testing.T, argv ...string) string {
	t.Helper()
	p, err := start(t.TempDir(), "server", nil, argv...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.stop(time.Second) })
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	addr, err := p.firstLine(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return "http://" + addr
}

// send makes one request and returns its answer, read to the end.
func send(t *testing.T, method, url string, body []byte, header http.Header) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

func TestLeanProxyForwardsBothWays(t *testing.T) {
	bins := testBins(t)
	type seen struct {
		method, uri, keepAlive string
		header                 []string
		body                   []byte
	}
	got := make(chan seen, 1)
	var conns atomic.Int64
	up := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- seen{r.Method, r.RequestURI, r.Header.Get("Keep-Alive"), r.Header.Values("X-Test"), b}
		w.Header()["X-Answer"] = []string{"one", "two"}
		w.WriteHeader(http.StatusCreated)
		_, _ = w.Write(append([]byte("got "), b...))
	}))
	up.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	up.Start()
	defer up.Close()
	url := startPrinting(t, bins["leanproxy"], strings.TrimPrefix(up.URL, "http://"))
	for i, tc := range []struct {
		method string
		body   []byte
	}{
		{http.MethodPost, []byte(`{"a":1}`)}, {http.MethodPut, bytes.Repeat([]byte("x"), 100<<10)},
		{http.MethodGet, nil}, {http.MethodDelete, nil}, {http.MethodPatch, []byte("patch")},
	} {
		path := fmt.Sprintf("/a/b%d?x=1&y=two", i)
		resp, b := send(t, tc.method, url+path, tc.body, http.Header{"X-Test": {"v1", "v2"}, "Keep-Alive": {"timeout=5"}})
		s := <-got
		if s.method != tc.method || s.uri != path || !slices.Equal(s.header, []string{"v1", "v2"}) || !bytes.Equal(s.body, tc.body) || s.keepAlive != "" {
			t.Errorf("%s: the upstream got %s %s, X-Test %q, Keep-Alive %q, %d bytes; want %s %s, X-Test [v1 v2], no Keep-Alive (hop by hop), %d bytes",
				tc.method, s.method, s.uri, s.header, s.keepAlive, len(s.body), tc.method, path, len(tc.body))
		}
		if resp.StatusCode != http.StatusCreated || !slices.Equal(resp.Header.Values("X-Answer"), []string{"one", "two"}) ||
			!bytes.Equal(b, append([]byte("got "), tc.body...)) || resp.ContentLength != int64(len(b)) {
			t.Errorf("%s: got %d, X-Answer %q, Content-Length %d, %d bytes; want 201, [one two], the answer's %d bytes",
				tc.method, resp.StatusCode, resp.Header.Values("X-Answer"), resp.ContentLength, len(b), len(tc.body)+4)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("the upstream saw %d connections for sequential requests, want 1 kept alive", n)
	}
}

func TestLeanProxyOneRequestPerUpstream(t *testing.T) {
	bins := testBins(t)
	const delay = 200 * time.Millisecond
	for _, tc := range []struct {
		flags       []string
		oneEach     bool
		wantAtLeast time.Duration
	}{
		{flags: []string{"-one-each"}, oneEach: true, wantAtLeast: 2 * delay}, // 4 requests, 2 at a time
		{flags: nil}, // the upstreams in turn, shared: 2 at once on each
	} {
		t.Run(fmt.Sprint(tc.flags), func(t *testing.T) {
			var busy, most [2]atomic.Int64
			var served atomic.Int64
			var addrs []string
			for i := range 2 {
				up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					n := busy[i].Add(1)
					defer busy[i].Add(-1)
					for m := most[i].Load(); n > m && !most[i].CompareAndSwap(m, n); m = most[i].Load() {
					}
					served.Add(1)
					time.Sleep(delay)
				}))
				defer up.Close()
				addrs = append(addrs, strings.TrimPrefix(up.URL, "http://"))
			}
			url := startPrinting(t, append(append([]string{bins["leanproxy"]}, tc.flags...), addrs...)...)
			began := time.Now()
			var wg sync.WaitGroup
			var ok atomic.Int64
			for range 4 {
				wg.Go(func() {
					resp, err := http.Post(url+"/", "text/plain", strings.NewReader("x"))
					if err == nil {
						resp.Body.Close()
						if resp.StatusCode == http.StatusOK {
							ok.Add(1)
						}
					}
				})
			}
			wg.Wait()
			took := time.Since(began)
			if ok.Load() != 4 || served.Load() != 4 {
				t.Fatalf("got %d answers of 4, the upstreams served %d", ok.Load(), served.Load())
			}
			if most := max(most[0].Load(), most[1].Load()); (most == 1) != tc.oneEach {
				t.Errorf("an upstream served %d requests at once; want 1 with -one-each, more without", most)
			}
			if took < tc.wantAtLeast {
				t.Errorf("4 requests of %s through 2 upstreams took %s, want at least %s", delay, took, tc.wantAtLeast)
			}
		})
	}
}

func TestRelayAnswersWithTheRuntimes(t *testing.T) {
	bins := testBins(t)
	url := startPrinting(t, bins["relay"], "-n", "4", bins["noop"]) + "/"
	hc := &http.Client{Timeout: 10 * time.Second}
	invoke := func(event string) error {
		resp, err := hc.Post(url, "application/json", strings.NewReader(event))
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			return err
		}
		if resp.StatusCode != http.StatusOK || string(b) != event {
			return fmt.Errorf("got %d %q, want 200 %q (the no-op's answer: its event)", resp.StatusCode, b, event)
		}
		return nil
	}
	for i := range 200 {
		if err := invoke(`{"sleep_ms":0}`); err != nil {
			t.Fatalf("sequential request %d: %v", i, err)
		}
	}
	// More clients than runtimes, each runtime busy for a while: the
	// others wait for a /next.
	errs := make(chan error, 16*20)
	var wg sync.WaitGroup
	for c := range 16 {
		wg.Go(func() {
			for i := range 20 {
				if err := invoke(fmt.Sprintf(`{"sleep_ms":%d}`, (c+i)%3)); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestRelayColdStart(t *testing.T) {
	b := &bench{bins: testBins(t)}
	s, err := (&coldRow{name: "floor", once: b.relayCold}).measure(t.Context(), 3)
	if err != nil {
		t.Fatal(err)
	}
	if s.Errors != 0 || s.Value <= 0 || s.Value > 5000 {
		t.Errorf("got %d errors and a median of %.3f ms, want none and a positive duration", s.Errors, s.Value)
	}
}

func TestFloorRows(t *testing.T) {
	b := &bench{cfg: Config{Conns: []int{1, 3}}, dir: t.TempDir(), bins: testBins(t)}
	defer b.stopAll()
	_, direct, err := b.launchEcho(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	unsigned := func(url string) Requester { return poster(url, body, aws.Credentials{}) }
	rows := b.floorRows(direct, unsigned)
	if len(rows) != 3 {
		t.Fatalf("got %d floor rows, want 3", len(rows))
	}
	for _, row := range rows {
		for _, conns := range b.cfg.Conns {
			s, err := row.measure(t.Context(), Load{Conns: conns, Duration: 200 * time.Millisecond})
			if err != nil {
				t.Fatalf("%s: %v", row.name, err)
			}
			if s.Value <= 0 || s.Errors != 0 {
				t.Errorf("%s at %d: got %.0f req/s and %d errors", row.name, conns, s.Value, s.Errors)
			}
		}
	}
	// One echo server per client of the largest count, behind the
	// one-each proxy.
	n := 0
	for _, p := range b.procs {
		if strings.HasPrefix(p.name, "echo-") && p.alive() {
			n++
		}
	}
	if n != 3 {
		t.Errorf("got %d echo servers running behind the one-each proxy, want 3", n)
	}
}
