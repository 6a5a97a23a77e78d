package nats_test

import (
	"bytes"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	natsstore "github.com/nimbus-serverless/nimbus/internal/store/nats"
)

// TestReadRangeLargeMessages: ReadRange reads every message of a range
// whose messages, together, are far past the client's pending limit for
// one pull (64 MB), and messages of other subjects between them are left
// out. (Pulls of 256 large messages used to lose the ones past the limit,
// silently.) With pulls that ask for too much at first, the client drops
// messages (anywhere, the last ones too), and ReadRange reads them again.
func TestReadRangeLargeMessages(t *testing.T) {
	if testing.Short() {
		t.Skip("writes 150 MB")
	}
	t.Run("default", testReadRangeLargeMessages)
	t.Run("drops", func(t *testing.T) {
		defer natsstore.SetFirstBatch(256)()
		for range 2 {
			testReadRangeLargeMessages(t)
		}
	})
}

func testReadRangeLargeMessages(t *testing.T) {
	s, err := natsstore.Open(t.Context(), natsstore.Config{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close(t.Context()) })
	js := s.JetStream()
	st, err := js.CreateStream(t.Context(), jetstream.StreamConfig{Name: "BIG", Subjects: []string{"big.>"}})
	if err != nil {
		t.Fatal(err)
	}
	const count = 200
	payload := bytes.Repeat([]byte("x"), 750<<10)
	for i := range count {
		payload[0] = byte(i)
		if _, err := js.Publish(t.Context(), "big.a", payload); err != nil {
			t.Fatal(err)
		}
		if _, err := js.Publish(t.Context(), "big.b", []byte("small")); err != nil {
			t.Fatal(err)
		}
	}
	var seqs []uint64
	err = natsstore.ReadRange(t.Context(), st, "big.a", 1, 2*count, func(m natsstore.Msg) bool {
		if len(m.Data) != len(payload) || m.Data[0] != byte(len(seqs)) {
			t.Fatalf("message %d: %d bytes, first %d", m.Seq, len(m.Data), m.Data[0])
		}
		if len(seqs) == 0 {
			time.Sleep(300 * time.Millisecond) // a slow reader: the pull's messages pile up in the client
		}
		seqs = append(seqs, m.Seq)
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(seqs) != count {
		t.Fatalf("read %d of %d messages", len(seqs), count)
	}
	for i, seq := range seqs {
		if seq != uint64(2*i+1) {
			t.Fatalf("message %d has sequence %d, want %d", i, seq, 2*i+1)
		}
	}
	// A range that starts and ends inside.
	n := 0
	err = natsstore.ReadRange(t.Context(), st, "big.a", 101, 201, func(m natsstore.Msg) bool { n++; return true })
	if err != nil || n != 51 {
		t.Fatalf("read %d of 51 messages: %v", n, err)
	}
}
