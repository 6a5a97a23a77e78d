package nats

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sys/unix"

	"github.com/nimbus-serverless/nimbus"
)

// A full disk, and what the store does about it.
//
// When a write of the embedded server fails for lack of space, JetStream
// marks the stream it was writing with a write error and refuses every
// later write to it, even once space returns, without answering the
// publisher. The store watches for that (healthCheck, every second): while
// a stream has a write error, every write fails at once with
// nimbus.ErrUnavailable (Healthy), and as soon as the disk has room again
// the embedded server is restarted in place. The connection reaches the new
// server by reconnecting (inProcess), so the parts using the store see a
// few failed writes and go on.

// healthEvery is how often the embedded server's health is checked.
const healthEvery = time.Second

// minFree is the free space (bytes) the data directory's disk needs before
// a server that failed to write is restarted.
const minFree = 4 << 20

// inProcess hands the connection to whichever embedded server runs now.
type inProcess struct {
	mu  sync.Mutex
	srv *server.Server
}

var _ nats.InProcessConnProvider = (*inProcess)(nil)

func (p *inProcess) InProcessConn() (net.Conn, error) {
	p.mu.Lock()
	srv := p.srv
	p.mu.Unlock()
	if srv == nil {
		return nil, errors.New("nats: the embedded server is restarting")
	}
	return srv.InProcessConn()
}

func (p *inProcess) server() *server.Server {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.srv
}

func (p *inProcess) set(srv *server.Server) {
	p.mu.Lock()
	p.srv = srv
	p.mu.Unlock()
}

// Healthy returns nil when the store can write, and an error wrapping
// nimbus.ErrUnavailable that says why not (a stream with a write error,
// a full disk) otherwise. A remote store is taken to be healthy: its
// server answers for itself.
func (s *Store) Healthy() error {
	s.healthMu.Lock()
	defer s.healthMu.Unlock()
	return s.unhealthy
}

// monitor checks the embedded server until ctx ends.
func (s *Store) monitor(ctx context.Context) {
	defer close(s.monitorDone)
	t := time.NewTicker(healthEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.healthCheck(ctx)
		}
	}
}

// healthCheck notes whether the embedded server can write, and restarts it
// once it could not and the disk has room again.
func (s *Store) healthCheck(ctx context.Context) {
	srv := s.proc.server()
	if srv == nil {
		return
	}
	werr := writeError(srv)
	free, ferr := freeBytes(s.cfg.DataDir)
	var why error
	switch {
	case werr != "" && ferr == nil && free < minFree:
		why = nimbus.Errorf(nimbus.ErrUnavailable, "the store cannot write: the data directory's disk is full (%d bytes free); free some space", free)
	case werr != "":
		why = nimbus.Errorf(nimbus.ErrUnavailable, "the store cannot write (%s); it is restarting", werr)
	}
	s.setHealth(why)
	if werr == "" || (ferr == nil && free < minFree) {
		return
	}
	s.log.Warn("the embedded NATS server could not write; restarting it now that its disk has room",
		"write_error", werr, "free_bytes", free)
	if err := s.restartServer(ctx); err != nil {
		s.log.Error("restart the embedded NATS server", nimbus.LogErr, err)
		return
	}
	s.setHealth(nil)
	s.log.Info("the embedded NATS server was restarted and writes again")
}

func (s *Store) setHealth(err error) {
	s.healthMu.Lock()
	s.unhealthy = err
	s.healthMu.Unlock()
}

// writeError returns the first write error of a stream, "" when none.
func writeError(srv *server.Server) string {
	h := srv.Healthz(&server.HealthzOptions{})
	if h == nil || h.Error == "" || !strings.Contains(h.Error, "write error") {
		return ""
	}
	return h.Error
}

// freeBytes is the space left for unprivileged writes on dir's disk.
func freeBytes(dir string) (uint64, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return 0, err
	}
	return st.Bavail * uint64(st.Bsize), nil
}

// restartServer replaces the embedded server with a new one on the same
// files; the connection reconnects to it.
func (s *Store) restartServer(ctx context.Context) error {
	old := s.proc.server()
	cfg := s.cfg
	if addr, ok := old.Addr().(*net.TCPAddr); ok && cfg.Listen != "" {
		cfg.Listen = addr.String() // the port it got, for clients elsewhere
	}
	s.proc.set(nil)
	old.Shutdown()
	old.WaitForShutdown()
	srv, err := startServer(ctx, cfg, s.log)
	if err != nil {
		return fmt.Errorf("start: %w", err)
	}
	s.proc.set(srv)
	s.restarts.Add(1)
	return nil
}

// storeErr wraps the error of operation op. One that says the store did
// not answer in time, is out of reach or cannot write becomes
// nimbus.ErrUnavailable (a 503 on the API): trying again later may work.
func storeErr(op string, err error) error {
	if unavailable(err) {
		return nimbus.Errorf(nimbus.ErrUnavailable, "%s: the store did not answer or could not write (%v); retry later", op, err)
	}
	return fmt.Errorf("%s: %w", op, err)
}

// insufficientResources is JetStream's error code for a write past its
// storage limit.
const insufficientResources = 10023

func unavailable(err error) bool {
	var api *jetstream.APIError
	switch {
	case errors.Is(err, nimbus.ErrUnavailable), errors.Is(err, context.DeadlineExceeded), errors.Is(err, nats.ErrTimeout),
		errors.Is(err, nats.ErrNoResponders), errors.Is(err, nats.ErrConnectionClosed), errors.Is(err, nats.ErrDisconnected),
		errors.Is(err, nats.ErrConnectionReconnecting), errors.Is(err, jetstream.ErrNoStreamResponse),
		errors.Is(err, jetstream.ErrAsyncPublishTimeout), errors.Is(err, jetstream.ErrJetStreamNotEnabled):
		return true
	case errors.As(err, &api) && api.ErrorCode == insufficientResources:
		return true
	}
	return strings.Contains(err.Error(), "no space left")
}
