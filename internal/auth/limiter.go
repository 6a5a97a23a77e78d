package auth

import (
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Limiter bounds failed authentications per client address: each address
// has a bucket of Burst failures refilled at Rate; an address whose bucket
// is empty is refused (429) until it refills, whatever it sends.
type Limiter struct {
	Rate  rate.Limit // failures per second regained
	Burst int

	mu    sync.Mutex
	addrs map[string]*rate.Limiter
}

// maxTracked bounds the addresses a Limiter remembers; past it, addresses
// whose buckets are full are forgotten, then any.
const maxTracked = 10000

// NewLimiter returns a Limiter allowing burst failures, regaining one
// every per.
func NewLimiter(burst int, per time.Duration) *Limiter {
	return &Limiter{Rate: rate.Every(per), Burst: burst, addrs: map[string]*rate.Limiter{}}
}

func clientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// Check returns an error when r's address has failed too often.
func (l *Limiter) Check(r *http.Request) error {
	if l == nil {
		return nil
	}
	l.mu.Lock()
	lim := l.addrs[clientAddr(r)]
	l.mu.Unlock()
	if lim == nil || lim.Tokens() >= 1 {
		return nil
	}
	wait := time.Duration(float64(time.Second) / float64(l.Rate))
	return &Error{Status: http.StatusTooManyRequests, Type: "TooManyRequestsException", RetryAfter: wait,
		Message: "Too many failed authentication attempts from this address; retry in " + strconv.Itoa(int(wait.Seconds()+0.5)) + " s."}
}

// Failed counts a failed authentication from r's address.
func (l *Limiter) Failed(r *http.Request) {
	if l == nil {
		return
	}
	addr := clientAddr(r)
	l.mu.Lock()
	defer l.mu.Unlock()
	lim := l.addrs[addr]
	if lim == nil {
		if len(l.addrs) >= maxTracked {
			l.forgetLocked()
		}
		lim = rate.NewLimiter(l.Rate, l.Burst)
		l.addrs[addr] = lim
	}
	lim.Allow()
}

func (l *Limiter) forgetLocked() {
	for a, lim := range l.addrs {
		if lim.Tokens() >= float64(l.Burst) {
			delete(l.addrs, a)
		}
	}
	for a := range l.addrs {
		if len(l.addrs) < maxTracked {
			return
		}
		delete(l.addrs, a)
	}
}
