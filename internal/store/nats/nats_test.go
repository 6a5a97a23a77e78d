package nats_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/store"
	natsstore "github.com/nimbus-serverless/nimbus/internal/store/nats"
	"github.com/nimbus-serverless/nimbus/internal/store/storetest"
	"github.com/nimbus-serverless/nimbus/internal/testenv"
)

// checkLeaks fails t if goroutines started during the test outlive it
// (including its cleanups, which run before this check).
func checkLeaks(t *testing.T) {
	t.Helper()
	t.Cleanup(func() { goleak.VerifyNone(t, natsGoRace) })
}

// natsGoRace ignores a goroutine nats.go (v1.55) can leak: the first async
// publish starts resetPendingAcksOnReconnect, which reads the status
// channel that closing the connection sets to nil; when the close comes
// first, the goroutine waits on a nil channel for good.
var natsGoRace = goleak.IgnoreTopFunction("github.com/nats-io/nats.go/jetstream.(*jetStream).resetPendingAcksOnReconnect")

// openEmbedded opens an embedded store in dir and closes it at the end of
// the test.
func openEmbedded(t *testing.T, dir string) *natsstore.Store {
	t.Helper()
	s, err := natsstore.Open(t.Context(), natsstore.Config{DataDir: dir})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(context.Background()); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// remoteURL is the NATS server the remote tests use.
func remoteURL() string {
	if u := os.Getenv("NIMBUS_NATS_URL"); u != "" {
		return u
	}
	return "nats://127.0.0.1:4222"
}

// openRemote connects to the machine's NATS server with a prefix unique to
// this test, and deletes the test's buckets at the end. It skips the test
// when the server is unreachable, unless NIMBUS_REQUIRE_SERVICES=1.
func openRemote(t *testing.T) *natsstore.Store {
	t.Helper()
	url := remoteURL()
	conn, err := net.DialTimeout("tcp", strings.TrimPrefix(url, "nats://"), time.Second)
	if err != nil {
		testenv.Unavailable(t, "NATS server (set NIMBUS_NATS_URL, or start nats-server -js)", url, err)
	}
	conn.Close()

	prefix := "nimbustest_" + rand.Text()[:10]
	s, err := natsstore.Open(t.Context(), natsstore.Config{URL: url, Prefix: prefix})
	if err != nil {
		t.Fatalf("Open(%s): %v", url, err)
	}
	t.Cleanup(func() {
		deleteStreams(t, s, prefix)
		if err := s.Close(context.Background()); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// deleteStreams deletes the streams behind the buckets named prefix_*.
func deleteStreams(t *testing.T, s *natsstore.Store, prefix string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	js := s.JetStream()
	names := js.StreamNames(ctx)
	var mine []string
	for name := range names.Name() {
		if strings.HasPrefix(name, "KV_"+prefix+"_") || strings.HasPrefix(name, "OBJ_"+prefix+"_") {
			mine = append(mine, name)
		}
	}
	if err := names.Err(); err != nil {
		t.Errorf("list streams: %v", err)
	}
	if len(mine) == 0 {
		t.Errorf("no streams with prefix %s to delete", prefix)
	}
	for _, name := range mine {
		if err := js.DeleteStream(ctx, name); err != nil {
			t.Errorf("delete stream %s: %v", name, err)
		}
	}
}

// newBucket returns a function that opens a new bucket of s on each call.
func newBucket(s *natsstore.Store) func(t *testing.T) store.KV {
	var n atomic.Int64
	return func(t *testing.T) store.KV {
		t.Helper()
		kv, err := s.KV(t.Context(), fmt.Sprintf("conformance%d", n.Add(1)))
		if err != nil {
			t.Fatalf("KV: %v", err)
		}
		return kv
	}
}

func TestEmbeddedKV(t *testing.T) {
	checkLeaks(t)
	s := openEmbedded(t, t.TempDir())
	storetest.TestKV(t, newBucket(s))
}

func TestEmbeddedBlobs(t *testing.T) {
	checkLeaks(t)
	s := openEmbedded(t, t.TempDir())
	storetest.TestBlobs(t, func(*testing.T) store.Blobs { return s.Blobs() })
}

func TestRemoteKV(t *testing.T) {
	checkLeaks(t)
	s := openRemote(t)
	storetest.TestKV(t, newBucket(s))
}

func TestRemoteBlobs(t *testing.T) {
	checkLeaks(t)
	s := openRemote(t)
	storetest.TestBlobs(t, func(*testing.T) store.Blobs { return s.Blobs() })
}

func TestRestart(t *testing.T) {
	checkLeaks(t)
	dir := t.TempDir()
	ctx := t.Context()
	content := []byte("package contents")

	s, err := natsstore.Open(ctx, natsstore.Config{DataDir: dir})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	kv, err := s.KV(ctx, "functions")
	if err != nil {
		t.Fatalf("KV: %v", err)
	}
	rev, err := kv.Create(ctx, "kept", []byte("v1"))
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	if _, err := kv.Create(ctx, "deleted", []byte("v1")); err != nil {
		t.Fatalf("Create: %v", err)
	}
	if err := kv.Delete(ctx, "deleted"); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	digest, _, err := s.Blobs().Put(ctx, strings.NewReader(string(content)))
	if err != nil {
		t.Fatalf("Put blob: %v", err)
	}
	if err := s.Close(context.Background()); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := s.Close(context.Background()); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := kv.Get(ctx, "kept"); err == nil {
		t.Errorf("Get after Close: got nil error")
	}
	if _, err := os.Stat(filepath.Join(dir, "jetstream")); err != nil {
		t.Errorf("JetStream files not in DataDir/jetstream: %v", err)
	}

	s2 := openEmbedded(t, dir)
	kv2, err := s2.KV(ctx, "functions")
	if err != nil {
		t.Fatalf("KV after reopen: %v", err)
	}
	e, err := kv2.Get(ctx, "kept")
	if err != nil {
		t.Fatalf("Get after reopen: %v", err)
	}
	if string(e.Value) != "v1" || e.Revision != rev {
		t.Errorf("Get after reopen = %q at %d, want %q at %d", e.Value, e.Revision, "v1", rev)
	}
	if _, err := kv2.Get(ctx, "deleted"); !errors.Is(err, nimbus.ErrNotFound) {
		t.Errorf("Get(deleted) after reopen: got %v, want ErrNotFound", err)
	}
	if _, err := kv2.Create(ctx, "kept", []byte("v2")); !errors.Is(err, nimbus.ErrConflict) {
		t.Errorf("Create(kept) after reopen: got %v, want ErrConflict", err)
	}
	r, err := s2.Blobs().Get(ctx, digest)
	if err != nil {
		t.Fatalf("Get blob after reopen: %v", err)
	}
	defer r.Close()
	got, err := io.ReadAll(r)
	if err != nil || string(got) != string(content) {
		t.Errorf("blob after reopen = %q, %v; want %q", got, err, content)
	}
}

// TestListen serves the embedded server on TCP and reaches it from a
// second, remote-mode store.
func TestListen(t *testing.T) {
	checkLeaks(t)
	ctx := t.Context()
	if u := openEmbedded(t, t.TempDir()).ClientURL(); u != "" {
		t.Errorf("ClientURL() without Listen = %q, want \"\"", u)
	}

	srv, err := natsstore.Open(ctx, natsstore.Config{DataDir: t.TempDir(), Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatalf("Open with Listen: %v", err)
	}
	t.Cleanup(func() { srv.Close(context.Background()) })
	url := srv.ClientURL()
	if !strings.HasPrefix(url, "nats://127.0.0.1:") || strings.HasSuffix(url, ":0") || strings.HasSuffix(url, ":4222") {
		t.Fatalf("ClientURL() = %q, want nats://127.0.0.1:<random port>", url)
	}
	client, err := natsstore.Open(ctx, natsstore.Config{URL: url})
	if err != nil {
		t.Fatalf("Open(%s): %v", url, err)
	}
	t.Cleanup(func() { client.Close(context.Background()) })
	if got := client.ClientURL(); got != url {
		t.Errorf("remote ClientURL() = %q, want %q", got, url)
	}

	ckv, err := client.KV(ctx, "shared")
	if err != nil {
		t.Fatalf("client KV: %v", err)
	}
	rev, err := ckv.Create(ctx, "k", []byte("from client"))
	if err != nil {
		t.Fatalf("client Create: %v", err)
	}
	skv, err := srv.KV(ctx, "shared")
	if err != nil {
		t.Fatalf("server KV: %v", err)
	}
	e, err := skv.Get(ctx, "k")
	if err != nil || string(e.Value) != "from client" || e.Revision != rev {
		t.Errorf("server Get = %q at %d, %v; want %q at %d", e.Value, e.Revision, err, "from client", rev)
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name    string
		cfg     natsstore.Config
		wantErr string // "" for valid
	}{
		{"embedded", natsstore.Config{DataDir: "/d"}, ""},
		{"embedded listen", natsstore.Config{DataDir: "/d", Listen: "127.0.0.1:0", Prefix: "a-B_9"}, ""},
		{"remote", natsstore.Config{URL: "nats://h:4222"}, ""},
		{"remote ignores DataDir", natsstore.Config{URL: "nats://h:4222", DataDir: "/d"}, ""},
		{"no DataDir", natsstore.Config{}, "DataDir"},
		{"bad prefix dot", natsstore.Config{DataDir: "/d", Prefix: "a.b"}, "Prefix"},
		{"bad prefix space", natsstore.Config{URL: "nats://h:4222", Prefix: "a b"}, "Prefix"},
		{"listen no port", natsstore.Config{DataDir: "/d", Listen: "127.0.0.1"}, "Listen"},
		{"listen bad port", natsstore.Config{DataDir: "/d", Listen: "127.0.0.1:99999"}, "Listen"},
		{"listen text port", natsstore.Config{DataDir: "/d", Listen: "127.0.0.1:nats"}, "Listen"},
		{"listen in remote mode", natsstore.Config{URL: "nats://h:4222", Listen: ":4223"}, "Listen"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("Validate() = %v, want nil", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("Validate() = %v, want an error naming %s", err, tt.wantErr)
			}
			if tt.wantErr == "" {
				return
			}
			if s, err := natsstore.Open(t.Context(), tt.cfg); err == nil {
				s.Close(context.Background())
				t.Errorf("Open accepted an invalid config")
			}
		})
	}
}

func TestOpenErrors(t *testing.T) {
	checkLeaks(t)
	notDir := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(notDir, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		cfg     natsstore.Config
		wantErr string
	}{
		{"unreachable server", natsstore.Config{URL: "nats://127.0.0.1:1"}, "connect"},
		{"data dir is a file", natsstore.Config{DataDir: notDir}, "not a directory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := natsstore.Open(t.Context(), tt.cfg)
			if err == nil {
				s.Close(context.Background())
				t.Fatalf("Open(%+v) = nil error, want an error", tt.cfg)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Open: got %v, want an error containing %q", err, tt.wantErr)
			}
		})
	}
}

// TestServerLogs checks that the embedded server logs through Config.Logger:
// its banner and notices at debug level, nothing at info.
func TestServerLogs(t *testing.T) {
	checkLeaks(t)
	for _, tt := range []struct {
		level      slog.Level
		want, dont []string
	}{
		{slog.LevelDebug, []string{`msg="Starting nats-server"`, "component=nats-server", "level=DEBUG"}, nil},
		{slog.LevelInfo, nil, []string{"nats-server"}},
	} {
		var buf testenv.Buffer
		log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: tt.level}))
		s, err := natsstore.Open(t.Context(), natsstore.Config{DataDir: t.TempDir(), Logger: log})
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		if err := s.Close(context.Background()); err != nil {
			t.Fatalf("Close: %v", err)
		}
		got := buf.String()
		for _, want := range tt.want {
			if !strings.Contains(got, want) {
				t.Errorf("level %s: log does not contain %s; log:\n%s", tt.level, want, got)
			}
		}
		for _, dont := range tt.dont {
			if strings.Contains(got, dont) {
				t.Errorf("level %s: log contains %s; log:\n%s", tt.level, dont, got)
			}
		}
	}
}

func TestBadBucket(t *testing.T) {
	checkLeaks(t)
	s := openEmbedded(t, t.TempDir())
	for _, bucket := range []string{"", "a.b", "a b", "a*", "a>", "ä"} {
		if _, err := s.KV(t.Context(), bucket); !errors.Is(err, nimbus.ErrInvalid) {
			t.Errorf("KV(%q): got %v, want ErrInvalid", bucket, err)
		}
	}
	// Two opens of one bucket share it.
	a, err := s.KV(t.Context(), "same")
	if err != nil {
		t.Fatalf("KV: %v", err)
	}
	if _, err := a.Create(t.Context(), "k", []byte("v")); err != nil {
		t.Fatalf("Create: %v", err)
	}
	b, err := s.KV(t.Context(), "same")
	if err != nil {
		t.Fatalf("KV again: %v", err)
	}
	if e, err := b.Get(t.Context(), "k"); err != nil || string(e.Value) != "v" {
		t.Errorf("Get through second KV = %q, %v; want %q", e.Value, err, "v")
	}
}

func TestPrefixIsolation(t *testing.T) {
	checkLeaks(t)
	ctx := t.Context()
	s, err := natsstore.Open(ctx, natsstore.Config{DataDir: t.TempDir(), Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close(context.Background()) })
	other, err := natsstore.Open(ctx, natsstore.Config{URL: s.ClientURL(), Prefix: "other"})
	if err != nil {
		t.Fatalf("Open other: %v", err)
	}
	t.Cleanup(func() { other.Close(context.Background()) })

	for _, st := range []*natsstore.Store{s, other} {
		kv, err := st.KV(ctx, "functions")
		if err != nil {
			t.Fatalf("KV: %v", err)
		}
		if _, err := kv.Create(ctx, "k", []byte("v")); err != nil {
			t.Errorf("Create in each prefix: %v", err)
		}
	}
	want := map[string]bool{"KV_nimbus_functions": true, "KV_other_functions": true, "OBJ_nimbus_code": true, "OBJ_other_code": true}
	names := s.JetStream().StreamNames(ctx)
	got := map[string]bool{}
	for n := range names.Name() {
		got[n] = true
	}
	if err := names.Err(); err != nil {
		t.Fatalf("StreamNames: %v", err)
	}
	for n := range want {
		if !got[n] {
			t.Errorf("stream %s missing; have %v", n, got)
		}
	}
	if len(got) != len(want) {
		t.Errorf("streams = %v, want %v", got, want)
	}
}

// BenchmarkKVPut measures an acknowledged (fsynced) KV Put on the embedded
// server.
func BenchmarkKVPut(b *testing.B) {
	s, err := natsstore.Open(b.Context(), natsstore.Config{DataDir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close(context.Background())
	kv, err := s.KV(b.Context(), "bench")
	if err != nil {
		b.Fatal(err)
	}
	value := []byte(hex.EncodeToString(make([]byte, 256)))
	for i := 0; b.Loop(); i++ {
		if _, err := kv.Put(b.Context(), fmt.Sprintf("k%d", i%100), value); err != nil {
			b.Fatal(err)
		}
	}
}

func TestKVWithTTL(t *testing.T) {
	s := openEmbedded(t, t.TempDir())
	kv, err := s.KVWithTTL(t.Context(), "ticks", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Create(t.Context(), "a", []byte("1")); err != nil {
		t.Fatal(err)
	}
	st, err := s.JetStream().Stream(t.Context(), "KV_nimbus_ticks")
	if err != nil {
		t.Fatal(err)
	}
	if got := st.CachedInfo().Config.MaxAge; got != time.Hour {
		t.Fatalf("bucket max age = %s, want 1h", got)
	}
}
