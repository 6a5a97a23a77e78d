package node

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/nimbus-serverless/nimbus"
)

// changeRetry is how often a function whose change could not be read is
// read again (every), and how many times before the node gives up.
type changeRetry struct {
	every time.Duration
	times int
}

// defaultChangeRetry reads again every second for a minute.
var defaultChangeRetry = changeRetry{every: time.Second, times: 60}

// functionChanged is the registry's OnChange: the engine, the provisioned
// instances and the metrics learn of a function's change or deletion.
func (n *Node) functionChanged(ctx context.Context, name string) {
	lock := func() func() { return n.changeLocks.lock(name) }
	followChange(ctx, n.log, defaultChangeRetry, name, lock, n.registry.Get, func(fn *nimbus.Function) {
		n.engine.Refresh(name, fn)
		n.provisionVersions(name, fn)
		n.forgetMetrics(name, fn)
	})
}

// followChange reads the function name that changed and calls apply with
// it, or with nil when read says it is not found: deleted. Each read and
// its apply hold lock's lock, so that of two changes told at once (two
// writers, or a retry and a later change) the one read last is applied
// last: the registry's view only moves forward. A read that
// fails otherwise (the store out of reach for a moment) is no deletion,
// which would stop the function's instances and drop its reservation,
// recent log lines and metrics: it is read again as retry says, on a
// goroutine of its own, until it is read or found gone, or ctx ends.
func followChange(ctx context.Context, log *slog.Logger, retry changeRetry, name string, lock func() (unlock func()),
	read func(context.Context, string) (*nimbus.Function, error), apply func(*nimbus.Function)) {
	try := func() error {
		defer lock()()
		fn, err := read(ctx, name)
		if errors.Is(err, nimbus.ErrNotFound) {
			fn, err = nil, nil
		}
		if err == nil {
			apply(fn)
		}
		return err
	}
	err := try()
	if err == nil || ctx.Err() != nil {
		return
	}
	log.Warn("a function changed and reading it failed: it is read again before the change is acted on",
		nimbus.LogFunction, name, nimbus.LogErr, err)
	go func() {
		for range retry.times {
			select {
			case <-ctx.Done():
				return
			case <-time.After(retry.every):
			}
			if err = try(); err == nil || ctx.Err() != nil {
				return
			}
		}
		log.Error("a function changed and could not be read: its instances keep its former configuration until its next change",
			nimbus.LogFunction, name, nimbus.LogErr, err)
	}()
}

// nameLocks is a mutex per name, kept while it is held or waited for.
type nameLocks struct {
	mu    sync.Mutex
	locks map[string]*nameLock
}

type nameLock struct {
	sync.Mutex
	users int // holding or waiting, under nameLocks.mu
}

// lock locks name's mutex and returns its unlock.
func (l *nameLocks) lock(name string) (unlock func()) {
	l.mu.Lock()
	if l.locks == nil {
		l.locks = make(map[string]*nameLock)
	}
	nl := l.locks[name]
	if nl == nil {
		nl = &nameLock{}
		l.locks[name] = nl
	}
	nl.users++
	l.mu.Unlock()
	nl.Lock()
	return func() {
		nl.Unlock()
		l.mu.Lock()
		if nl.users--; nl.users == 0 {
			delete(l.locks, name)
		}
		l.mu.Unlock()
	}
}
