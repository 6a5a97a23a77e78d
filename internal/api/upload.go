package api

import (
	"context"
	"errors"
	"net/http"
	"time"

	"golang.org/x/sync/semaphore"

	"github.com/nimbus-serverless/nimbus"
)

// Code uploads (CreateFunction, UpdateFunctionCode) carry up to
// MaxCodeBody of base64 in JSON, which the handler holds in memory twice
// over while it decodes and validates it. uploadGate bounds the bytes of
// such bodies being handled at once (Config.UploadMemory): a request takes
// its declared Content-Length (the whole MaxCodeBody when it declares
// none) before its body is read, waits for room at most
// Config.UploadWait (and no longer than its caller), and otherwise gets
// 429 TooManyRequestsException.
type uploadGate struct {
	sem      *semaphore.Weighted
	capacity int64
	wait     time.Duration
}

// Defaults of Config.UploadMemory and Config.UploadWait.
const (
	DefaultUploadMemory = 256 << 20
	DefaultUploadWait   = 30 * time.Second
)

func newUploadGate(capacity int64, wait time.Duration) *uploadGate {
	if capacity <= 0 {
		capacity = DefaultUploadMemory
	}
	if wait <= 0 {
		wait = DefaultUploadWait
	}
	return &uploadGate{sem: semaphore.NewWeighted(capacity), capacity: capacity, wait: wait}
}

// codeUploads are the routes whose bodies carry a code package.
var codeUploads = map[string]bool{
	"POST /2015-03-31/functions":            true,
	"POST /2015-03-31/functions/{$}":        true,
	"PUT /2015-03-31/functions/{name}/code": true,
	"POST /2023-03-30/functions":            true,
	"PUT /2023-03-30/functions/{name}":      true,
}

// admitUpload takes room in the upload budget for a request to a code
// upload route (pattern), before anything reads its body (authentication
// reads a signed one whole); release gives it back. Other requests pass.
func (s *Server) admitUpload(r *http.Request, pattern string) (release func(), err error) {
	if !codeUploads[pattern] {
		return func() {}, nil
	}
	return s.uploads.acquire(r, s.cfg.MaxCodeBody)
}

// acquire takes room for r's body, whose size is at most limit; release
// gives it back.
func (g *uploadGate) acquire(r *http.Request, limit int64) (release func(), err error) {
	n := limit
	if r.ContentLength > 0 && r.ContentLength < limit {
		n = r.ContentLength
	}
	n = min(max(n, 1), g.capacity) // one body larger than the room still goes, alone
	ctx, cancel := context.WithTimeout(r.Context(), g.wait)
	defer cancel()
	if err := g.sem.Acquire(ctx, n); err != nil {
		if errors.Is(r.Context().Err(), context.Canceled) {
			return func() {}, r.Context().Err()
		}
		return func() {}, nimbus.Errorf(nimbus.ErrThrottled,
			"Rate Exceeded. Too many code uploads are in progress on this node: none finished within %s. Retry later.", g.wait)
	}
	return func() { g.sem.Release(n) }, nil
}
