package sdkhttp_test

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/nimbus-serverless/nimbus/internal/sdkhttp"
)

// closedBody is a request body as the SDK leaves it once closed: Read gives
// io.EOF, and WriteTo gives io.EOF as an error. It reads data until closed.
type closedBody struct {
	r      *bytes.Reader
	closed bool
}

func (b *closedBody) Read(p []byte) (int, error) {
	if b.closed {
		return 0, io.EOF
	}
	n, err := b.r.Read(p)
	if b.r.Len() == 0 {
		b.closed = true // the answer came, and the SDK closed the body
	}
	return n, err
}

func (b *closedBody) WriteTo(io.Writer) (int64, error) { return 0, io.EOF }
func (b *closedBody) Close() error                     { b.closed = true; return nil }

// TestClosedBodyKeepsTheConnection: a request whose body is closed once its
// bytes are sent (as the SDK's is when the answer's headers arrive first)
// gets its whole answer through Transport. Through net/http's own transport
// the same request fails (its write, then the connection, end in io.EOF), so
// the test shows what Transport is for.
func TestClosedBodyKeepsTheConnection(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		// The answer waits until the client has had time to fail its
		// write (net/http then closes the connection, which ends r's
		// context): whether the answer or the failure comes first is not
		// left to the scheduler.
		select {
		case <-r.Context().Done():
			return
		case <-time.After(500 * time.Millisecond):
		}
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		_, _ = w.Write([]byte("got " + string(body)))
	}))
	defer srv.Close()

	send := func(rt http.RoundTripper) (string, error) {
		req, err := http.NewRequest(http.MethodPost, srv.URL, nil)
		if err != nil {
			t.Fatal(err)
		}
		payload := []byte(`{"wait":true}`)
		req.Body = &closedBody{r: bytes.NewReader(payload)}
		req.ContentLength = int64(len(payload))
		resp, err := (&http.Client{Transport: rt}).Do(req)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return string(b), err
	}

	plain := http.DefaultTransport.(*http.Transport).Clone()
	defer plain.CloseIdleConnections()
	if got, err := send(plain); err == nil {
		t.Fatalf("net/http's transport sent the request and read %q: the test no longer shows the fault", got)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	defer tr.CloseIdleConnections()
	got, err := send(sdkhttp.Transport(tr))
	if err != nil || got != `got {"wait":true}` {
		t.Fatalf("through Transport: %q, %v", got, err)
	}
}

// TestRequestUnchanged: Transport leaves the caller's request as it was, and
// a request without a body passes as it is.
func TestRequestUnchanged(t *testing.T) {
	var seen []string
	rt := sdkhttp.Transport(roundTripFunc(func(r *http.Request) (*http.Response, error) {
		if r.Body != nil {
			b, _ := io.ReadAll(r.Body)
			seen = append(seen, string(b))
		} else {
			seen = append(seen, "<nil>")
		}
		return &http.Response{StatusCode: 204, Body: http.NoBody, Request: r}, nil
	}))
	req, _ := http.NewRequest(http.MethodPost, "http://127.0.0.1:1/", strings.NewReader("x"))
	body := req.Body
	if _, err := rt.RoundTrip(req); err != nil {
		t.Fatal(err)
	}
	if req.Body != body {
		t.Error("Transport replaced the caller's request body")
	}
	get, _ := http.NewRequest(http.MethodGet, "http://127.0.0.1:1/", nil)
	if _, err := rt.RoundTrip(get); err != nil {
		t.Fatal(err)
	}
	if strings.Join(seen, ",") != "x,<nil>" {
		t.Errorf("bodies sent: %q", seen)
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// TestCloseIdle: http.Client's CloseIdleConnections reaches the transport
// under Transport, which closes its idle connection.
func TestCloseIdle(t *testing.T) {
	closed := make(chan struct{}, 1)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateClosed {
			closed <- struct{}{}
		}
	}
	srv.Start()
	defer srv.Close()
	c := sdkhttp.Client()
	resp, err := c.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	c.CloseIdleConnections()
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("the idle connection is still open 10 s after CloseIdleConnections")
	}
}
