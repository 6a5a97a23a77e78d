package image

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"
)

// stallError says a registry sent nothing for the stall timeout.
type stallError struct {
	host    string
	timeout time.Duration
}

func (e *stallError) Error() string {
	return fmt.Sprintf("registry %s sent no data for %s (stalled)", e.host, e.timeout)
}

// stallTransport fails a request, and the reads of its response body, when
// no byte arrives for timeout: the deadline starts with the request and is
// pushed back by every read that returns data.
type stallTransport struct {
	inner   http.RoundTripper
	timeout time.Duration
}

func newStallTransport(inner http.RoundTripper, timeout time.Duration) *stallTransport {
	return &stallTransport{inner: inner, timeout: timeout}
}

func (t *stallTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx, cancel := context.WithCancelCause(req.Context())
	stall := &stallError{host: req.URL.Host, timeout: t.timeout}
	timer := time.AfterFunc(t.timeout, func() { cancel(stall) })
	resp, err := t.inner.RoundTrip(req.WithContext(ctx))
	if err != nil {
		timer.Stop()
		cancel(nil)
		if context.Cause(ctx) == error(stall) {
			return nil, stall
		}
		return nil, err
	}
	timer.Reset(t.timeout)
	resp.Body = &stallBody{rc: resp.Body, ctx: ctx, cancel: cancel, timer: timer, timeout: t.timeout, stall: stall}
	return resp, nil
}

type stallBody struct {
	rc      io.ReadCloser
	ctx     context.Context
	cancel  context.CancelCauseFunc
	timer   *time.Timer
	timeout time.Duration
	stall   *stallError
	once    sync.Once
}

func (b *stallBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if n > 0 {
		b.timer.Reset(b.timeout)
	}
	if err != nil && err != io.EOF && context.Cause(b.ctx) == error(b.stall) {
		err = b.stall
	}
	return n, err
}

func (b *stallBody) Close() error {
	b.once.Do(func() {
		b.timer.Stop()
		b.cancel(nil)
	})
	return b.rc.Close()
}
