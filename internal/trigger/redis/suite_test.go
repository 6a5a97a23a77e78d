package redis

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/nimbus-serverless/nimbus/internal/trigger"
	"github.com/nimbus-serverless/nimbus/internal/trigger/triggertest"
)

// TestSourceSuite runs the message source conformance suite on Redis
// Streams with the default order (none).
func TestSourceSuite(t *testing.T) {
	triggertest.RunSourceSuite(t, triggertest.Harness{Setup: setupTarget, DeadLetter: true})
}

// target is a fresh stream (created by the source's group), read by
// consumer "c1", with stream-dlq as its dead-letter stream.
type target struct {
	rc *goredis.Client
	s  string
}

func setupTarget(t *testing.T) triggertest.Target {
	rc := server(t)
	return &target{rc: rc, s: stream(t, rc)}
}

func (tg *target) Addr() string { return tg.rc.Options().Addr }

func (tg *target) Source(t *testing.T, s triggertest.SourceSetup) trigger.Source {
	url := serverURL()
	if s.Via != "" {
		url = strings.Replace(url, tg.Addr(), s.Via, 1)
	}
	cfg := Config{URL: url, Stream: tg.s, StartPosition: StartTrimHorizon, Consumer: "c1", DataField: "body"}
	if s.DeadLetter {
		cfg.DeadLetterStream = tg.s + "-dlq"
	}
	raw, _ := json.Marshal(cfg)
	src, err := newSource(raw)
	if err != nil {
		t.Fatal(err)
	}
	src.minBackoff, src.maxBackoff = 10*time.Millisecond, 100*time.Millisecond
	src.idleBlock, src.lagEvery = 50*time.Millisecond, 50*time.Millisecond
	return src
}

func (tg *target) Publish(t *testing.T, _ int, bodies ...[]byte) {
	t.Helper()
	p := tg.rc.Pipeline()
	for _, b := range bodies {
		p.XAdd(t.Context(), &goredis.XAddArgs{Stream: tg.s, Values: []any{"body", b}})
	}
	if _, err := p.Exec(t.Context()); err != nil {
		t.Fatal(err)
	}
}

func (tg *target) DeadLetters(t *testing.T) [][]byte {
	t.Helper()
	entries, err := tg.rc.XRange(t.Context(), tg.s+"-dlq", "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for _, e := range entries {
		s, _ := e.Values["data"].(string)
		out = append(out, []byte(s))
	}
	return out
}

func (tg *target) Check(t *testing.T, m trigger.Message) {
	t.Helper()
	if want := "redis://" + tg.Addr() + "/" + dbOf(t) + "/" + tg.s; m.Source != want {
		t.Errorf("source %q, want %q", m.Source, want)
	}
	if m.Type != EventType || m.Subject != tg.s || m.Key != "" {
		t.Errorf("type %q, subject %q, key %q; want %s, the stream %s, no key", m.Type, m.Subject, m.Key, EventType, tg.s)
	}
	if g, _ := m.Extensions["group"].(string); !strings.HasPrefix(g, "nimbus-test-") || m.Extensions["consumer"] != "c1" {
		t.Errorf("extensions %v, want the suite's group and consumer c1", m.Extensions)
	}
}

// dbOf is the database number of serverURL.
func dbOf(t *testing.T) string {
	opt, err := goredis.ParseURL(serverURL())
	if err != nil {
		t.Fatal(err)
	}
	return strconv.Itoa(opt.DB)
}
