package trigger

import (
	"bytes"
	"encoding/json"
	"flag"
	"math"
	"os"
	"path/filepath"
	"testing"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2/event"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// sampleMessages covers the ways data and extensions are carried.
func sampleMessages() []Message {
	at := time.Date(2024, 5, 1, 12, 0, 0, 123456789, time.FixedZone("CEST", 2*3600))
	return []Message{
		{ID: "0-41", Source: "kafka://127.0.0.1:9092/orders", Type: "com.nimbus.kafka.message", Subject: "orders",
			Time: at, Key: "k1", DataContentType: "application/json", Data: []byte(`{"order": 1}`),
			Extensions: map[string]any{"partition": int32(0), "offset": int64(41), "Kafka-Key": "k1"}},
		{ID: "0-42", Source: "kafka://127.0.0.1:9092/orders", Type: "com.nimbus.kafka.message", Subject: "orders",
			Time: at, Data: []byte(`[1,2,3]`),
			Extensions: map[string]any{"offset": int64(math.MaxInt32) + 1, "redelivered": true, "id": "shadowed", "nothing": nil}},
		{ID: "m-3", Source: "amqp://127.0.0.1:5672/jobs", Type: "com.nimbus.rabbitmq.message", Time: at,
			DataContentType: "text/plain; charset=utf-8", Data: []byte("héllo\n")},
		{ID: "m-4", Source: "amqp://127.0.0.1:5672/jobs", Type: "com.nimbus.rabbitmq.message", Time: at,
			Data: []byte{0xff, 0x00, 0x01}},
		{ID: "m-5", Source: "amqp://127.0.0.1:5672/jobs", Type: "com.nimbus.rabbitmq.message", Time: at,
			DataContentType: "application/json", Data: []byte(`not json`)},
		{ID: "m-6", Source: "nats://127.0.0.1:4222/x", Type: "com.nimbus.nats.message", Time: at,
			Extensions: map[string]any{"ratio": 0.5, "stamp": at, "raw": []byte("ab")}},
	}
}

func TestEncodeBatchGolden(t *testing.T) {
	var pretty bytes.Buffer
	if err := json.Indent(&pretty, EncodeBatch(sampleMessages()), "", "  "); err != nil {
		t.Fatalf("EncodeBatch wrote invalid JSON: %v", err)
	}
	pretty.WriteByte('\n')
	path := filepath.Join("testdata", "batch.golden.json")
	if *update {
		if err := os.WriteFile(path, pretty.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if got := pretty.String(); got != string(want) {
		t.Errorf("EncodeBatch: got\n%s\nwant\n%s", got, want)
	}
}

// TestEncodeEventConformance reads each event back with the CloudEvents Go
// SDK and checks that it is valid and carries the message.
func TestEncodeEventConformance(t *testing.T) {
	for _, m := range sampleMessages() {
		var ev cloudevents.Event
		if err := json.Unmarshal(EncodeEvent(m), &ev); err != nil {
			t.Errorf("%s: the SDK cannot read the event: %v", m.ID, err)
			continue
		}
		if err := ev.Validate(); err != nil {
			t.Errorf("%s: invalid event: %v", m.ID, err)
		}
		if ev.ID() != m.ID || ev.Source() != m.Source || ev.Type() != m.Type || ev.Subject() != m.Subject ||
			!ev.Time().Equal(m.Time) || ev.SpecVersion() != SpecVersion {
			t.Errorf("%s: attributes: got %s", m.ID, ev.String())
		}
		if len(m.Data) > 0 && !bytes.Equal(ev.Data(), m.Data) && !json.Valid(m.Data) {
			t.Errorf("%s: data: got %q, want %q", m.ID, ev.Data(), m.Data)
		}
	}
}

func TestEncodeEventDataForms(t *testing.T) {
	tests := []struct {
		name   string
		ct     string
		data   string
		wantCT string
		want   string // the data member
	}{
		{"json", "application/json", `{"a":1}`, "application/json", `"data":{"a":1}`},
		{"json suffix", "application/vnd.x+json", `3`, "application/vnd.x+json", `"data":3`},
		{"untyped json", "", `"s"`, "application/json", `"data":"s"`},
		{"untyped bytes", "", "\x00", "application/octet-stream", `"data_base64":"AA=="`},
		{"text", "text/csv", "a,b", "text/csv", `"data":"a,b"`},
		{"bad utf-8 text", "text/plain", "\xff", "text/plain", `"data_base64":"/w=="`},
		{"invalid json", "application/json", "{", "application/json", `"data_base64":"ew=="`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := string(EncodeEvent(Message{ID: "1", Source: "s", Type: "t", DataContentType: tt.ct, Data: []byte(tt.data)}))
			if !bytes.Contains([]byte(got), []byte(`"datacontenttype":"`+tt.wantCT+`"`)) || !bytes.HasSuffix([]byte(got), []byte(tt.want+"}")) {
				t.Errorf("got %s, want datacontenttype %s and %s", got, tt.wantCT, tt.want)
			}
		})
	}
}

func FuzzEncodeEvent(f *testing.F) {
	f.Add("id", "application/json", []byte(`{"a":1}`), "Ext-Name", "v")
	f.Add("", "text/plain", []byte("\xff"), "", "")
	f.Fuzz(func(t *testing.T, id, ct string, data []byte, extName, extVal string) {
		m := Message{ID: id, Source: "s", Type: "t", DataContentType: ct, Data: data,
			Extensions: map[string]any{extName: extVal}}
		b := EncodeEvent(m)
		var v map[string]any
		if err := json.Unmarshal(b, &v); err != nil {
			t.Fatalf("invalid JSON %q: %v", b, err)
		}
		if v["id"] != validUTF8(id) || v["specversion"] != SpecVersion {
			t.Fatalf("attributes lost: %s", b)
		}
	})
}
