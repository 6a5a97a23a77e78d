package s3

import (
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nimbus-serverless/nimbus"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// TestGoldenNotifications parses notifications in the formats AWS S3,
// MinIO and versitygw send and compares the CloudEvents they become with
// testdata/*.golden.
func TestGoldenNotifications(t *testing.T) {
	files, err := filepath.Glob("testdata/*.json")
	if err != nil || len(files) == 0 {
		t.Fatalf("no testdata: %v", err)
	}
	cfg := Config{Bucket: "any", KeyEncoding: KeyEncodingURL}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			body, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			n, err := ParseNotification(body)
			if err != nil {
				t.Fatalf("ParseNotification: %v", err)
			}
			type event struct {
				Test     bool            `json:"test,omitempty"`
				Messages []any           `json:"messages"`
				Records  json.RawMessage `json:"-"`
			}
			out := event{Test: n.Test, Messages: []any{}}
			for _, r := range n.Records {
				m := cfg.Message(r)
				out.Messages = append(out.Messages, map[string]any{
					"id": m.ID, "source": m.Source, "type": m.Type, "subject": m.Subject,
					"time": m.Time, "key": m.Key, "datacontenttype": m.DataContentType,
					"data": json.RawMessage(m.Data), "eventName": r.EventName,
				})
			}
			got, _ := json.MarshalIndent(out, "", "  ")
			golden := strings.TrimSuffix(f, ".json") + ".golden"
			if *update {
				if err := os.WriteFile(golden, append(got, '\n'), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update to write it)", err)
			}
			if strings.TrimSpace(string(got)) != strings.TrimSpace(string(want)) {
				t.Errorf("events of %s:\n%s\nwant (%s):\n%s", f, got, golden, want)
			}
		})
	}
}

func TestParseNotificationErrors(t *testing.T) {
	const good = `"eventName":"s3:ObjectCreated:Put","eventTime":"2026-01-01T00:00:00Z"`
	tests := []struct{ name, body, wantErr string }{
		{"empty", ``, "unexpected end of JSON input"},
		{"not JSON", `hello`, "invalid character"},
		{"array", `[]`, "cannot unmarshal array"},
		{"no Records", `{"Event":"s3:ObjectCreated:Put"}`, "no Records field"},
		{"Records null", `{"Records":null}`, "no Records field"},
		{"Records not a list", `{"Records":{}}`, "cannot unmarshal object"},
		{"record not an object", `{"Records":[1]}`, "Records[0]: cannot unmarshal number"},
		{"no eventName", `{"Records":[{"eventTime":"2026-01-01T00:00:00Z","s3":{"bucket":{"name":"b"},"object":{"key":"k"}}}]}`, "Records[0]: eventName is missing"},
		{"no s3", `{"Records":[{` + good + `}]}`, "s3.bucket.name is missing"},
		{"no bucket", `{"Records":[{` + good + `,"s3":{"object":{"key":"k"}}}]}`, "s3.bucket.name is missing"},
		{"no key", `{"Records":[{` + good + `,"s3":{"bucket":{"name":"b"},"object":{}}}]}`, "s3.object.key is missing"},
		{"bad key type", `{"Records":[{` + good + `,"s3":{"bucket":{"name":"b"},"object":{"key":5}}}]}`, "Records[0]: cannot unmarshal number"},
		{"bad time", `{"Records":[{"eventName":"s3:ObjectCreated:Put","eventTime":"yesterday","s3":{"bucket":{"name":"b"},"object":{"key":"k"}}}]}`, `eventTime "yesterday"`},
		{"second record bad", `{"Records":[{` + good + `,"s3":{"bucket":{"name":"b"},"object":{"key":"k"}}},{}]}`, "Records[1]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseNotification([]byte(tt.body))
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error = %v, want one containing %q", err, tt.wantErr)
			}
			if !errors.Is(err, nimbus.ErrMalformed) {
				t.Errorf("error %v is not nimbus.ErrMalformed", err)
			}
		})
	}
}

func TestEmptyRecords(t *testing.T) {
	n, err := ParseNotification([]byte(`{"Records":[]}`))
	if err != nil || n.Test || len(n.Records) != 0 {
		t.Errorf("ParseNotification = %+v, %v; want no records", n, err)
	}
}

func FuzzParseNotification(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.json")
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"Records":[{"eventName":"x","eventTime":"2026-01-01T00:00:00Z","s3":{"bucket":{"name":"b"},"object":{"key":"%zz"}}}]}`))
	cfg := Config{Bucket: "b", Events: []string{"s3:ObjectCreated:*"}, Prefix: "in/", KeyEncoding: KeyEncodingURL}
	f.Fuzz(func(t *testing.T, body []byte) {
		n, err := ParseNotification(body)
		if err != nil {
			if !errors.Is(err, nimbus.ErrMalformed) {
				t.Fatalf("error %v is not nimbus.ErrMalformed", err)
			}
			return
		}
		for _, r := range n.Records {
			if !strings.HasPrefix(r.EventName, "s3:") || r.Bucket == "" || r.RawKey == "" || !json.Valid(r.Raw) {
				t.Fatalf("bad record %+v", r)
			}
			m := cfg.Message(r)
			if m.ID == "" || m.Source != "s3://"+r.Bucket || !strings.HasPrefix(m.Type, TypePrefix) {
				t.Fatalf("bad message %+v", m)
			}
			_ = cfg.Match(r)
		}
	})
}
