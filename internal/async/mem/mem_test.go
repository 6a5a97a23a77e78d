package mem_test

import (
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/nimbus-serverless/nimbus/internal/async"
	"github.com/nimbus-serverless/nimbus/internal/async/asynctest"
	"github.com/nimbus-serverless/nimbus/internal/async/mem"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// clock is a clock the suite moves.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func TestSuite(t *testing.T) {
	c := &clock{now: time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)}
	const ttl = 30 * time.Second
	asynctest.Run(t, asynctest.Harness{
		New: func(t *testing.T) func(*testing.T) async.Backend {
			s := mem.New(c.Now, ttl)
			return func(*testing.T) async.Backend { return s.Node() }
		},
		Crash: func(_ *testing.T, b async.Backend) { b.(*mem.Node).Crash() },
		Now:   c.Now,
		Advance: func(_ *testing.T, d time.Duration) {
			c.mu.Lock()
			c.now = c.now.Add(d)
			c.mu.Unlock()
		},
		ClaimTTL: ttl,
	})
}
