package destination

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// natsServer starts an embedded NATS server with JetStream on a random
// loopback port and returns a connection to it.
func natsServer(t *testing.T) *nats.Conn {
	t.Helper()
	srv, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: server.RANDOM_PORT, JetStream: true,
		StoreDir: t.TempDir(), NoLog: true, NoSigs: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	t.Cleanup(func() {
		srv.Shutdown()
		srv.WaitForShutdown()
	})
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats server not ready")
	}
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

func TestNATSCoreSubject(t *testing.T) {
	nc := natsServer(t)
	sub, err := nc.SubscribeSync("results.done")
	if err != nil {
		t.Fatal(err)
	}
	s := New(Config{NATS: nc})
	if err := s.Send(t.Context(), "nats:results.done", "", testRecord()); err != nil {
		t.Fatalf("Send: %v", err)
	}
	msg, err := sub.NextMsg(5 * time.Second)
	if err != nil {
		t.Fatalf("subscriber got nothing: %v", err)
	}
	var rec Record
	if err := json.Unmarshal(msg.Data, &rec); err != nil || rec.RequestContext.Condition != ConditionRetriesExhausted {
		t.Errorf("message %s: %v", msg.Data, err)
	}
}

func TestNATSJetStream(t *testing.T) {
	nc := natsServer(t)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	stream, err := js.CreateStream(t.Context(), jetstream.StreamConfig{Name: "OUTCOMES", Subjects: []string{"outcomes.>"}})
	if err != nil {
		t.Fatal(err)
	}
	s := New(Config{NATS: nc})
	for range 2 { // the same record twice: deduplicated by its delivery id
		if err := s.Send(t.Context(), "nats:outcomes.f", "", testRecord()); err != nil {
			t.Fatalf("Send: %v", err)
		}
	}
	other := testRecord()
	other.RequestContext.RequestID = "req-2"
	if err := s.Send(t.Context(), "nats:outcomes.f", "", other); err != nil {
		t.Fatalf("Send: %v", err)
	}
	info, err := stream.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 2 {
		t.Errorf("stream holds %d messages, want 2 (one per delivery)", info.State.Msgs)
	}
	msg, err := stream.GetMsg(t.Context(), 1)
	if err != nil {
		t.Fatal(err)
	}
	if id := msg.Header.Get(jetstream.MsgIDHeader); id != "req-1:RetriesExhausted" {
		t.Errorf("message id = %q", id)
	}
}

func TestNATSErrors(t *testing.T) {
	nc := natsServer(t)
	s := New(Config{NATS: nc, Reserved: []string{"nimbus."}})
	if err := s.Send(t.Context(), "nats:nimbus.async.ev.victim", "", testRecord()); err == nil || !strings.Contains(err.Error(), "reserved") {
		t.Errorf("Send to a reserved subject: %v, want refused", err)
	}
	if err := New(Config{}).Send(t.Context(), "nats:x", "", testRecord()); err == nil || !strings.Contains(err.Error(), "not available") {
		t.Errorf("Send without a connection: %v", err)
	}
	big := testRecord()
	big.RequestPayload = json.RawMessage(fmt.Sprintf("%q", strings.Repeat("x", int(nc.MaxPayload()))))
	if err := s.Send(t.Context(), "nats:big", "", big); err == nil || !strings.Contains(err.Error(), "nats:big") {
		t.Errorf("Send of a record over the max payload: %v, want an error", err)
	}
	nc.Close()
	if err := s.Send(t.Context(), "nats:x", "", testRecord()); err == nil || !strings.Contains(err.Error(), "closed") {
		t.Errorf("Send on a closed connection: %v, want an error", err)
	}
}

func TestRecordJSON(t *testing.T) {
	rec := testRecord()
	rec.RequestPayload = []byte("not json \xff")
	rec.ResponseContext, rec.ResponsePayload = nil, nil
	rec.RequestContext.Condition, rec.RequestContext.Reason = ConditionEventAgeExceeded, "too old"
	b, err := json.Marshal(rec)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"version":"1.0","timestamp":"2026-03-01T12:00:00.568Z","requestContext":{"requestId":"req-1",` +
		`"functionArn":"arn:aws:lambda:us-east-1:123456789012:function:f:$LATEST","condition":"EventAgeExceeded",` +
		`"approximateInvokeCount":3,"nimbusReason":"too old"},"requestPayload":"not json \ufffd"}`
	if string(b) != want {
		t.Errorf("record JSON\n got %s\nwant %s", b, want)
	}
	b, err = json.Marshal(testRecord())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"responseContext":{"statusCode":200,"executedVersion":"$LATEST","functionError":"Unhandled"},"responsePayload":{"errorMessage":"boom","errorType":"Error"}`) {
		t.Errorf("record JSON %s lacks the response", b)
	}
	var back Record
	if err := json.Unmarshal(b, &back); err != nil || !back.Timestamp.Equal(testRecord().Timestamp) {
		t.Errorf("decode: %v, timestamp %v", err, back.Timestamp)
	}
}
