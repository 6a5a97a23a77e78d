package s3

import (
	"errors"
	"strings"
	"testing"

	"github.com/nimbus-serverless/nimbus"
)

func TestParseConfig(t *testing.T) {
	tests := []struct {
		name, config, wantErr string
	}{
		{"bucket only", `{"bucket":"b"}`, ""},
		{"full", `{"bucket":"photos","events":["s3:ObjectCreated:*","s3:ObjectRemoved:Delete"],"prefix":"in/","suffix":".jpg","secret":"s3cr3t-token","keyEncoding":"none"}`, ""},
		{"events without s3: prefix", `{"bucket":"b","events":["ObjectCreated:Put"]}`, ""},
		{"every event", `{"bucket":"b","events":["s3:*"]}`, ""},
		{"empty", ``, "bucket is required"},
		{"bad JSON", `{"bucket":`, "unexpected EOF"},
		{"not an object", `"b"`, "cannot unmarshal string"},
		{"unknown field", `{"bucket":"b","filter":{}}`, `unknown field "filter"`},
		{"no bucket", `{"events":["s3:ObjectCreated:*"]}`, "bucket is required"},
		{"bucket with slash", `{"bucket":"a/b"}`, "not a bucket name"},
		{"bucket with space", `{"bucket":"a b"}`, "not a bucket name"},
		{"bucket too long", `{"bucket":"` + strings.Repeat("b", 256) + `"}`, "not a bucket name"},
		{"events not a list", `{"bucket":"b","events":"s3:ObjectCreated:*"}`, "events"},
		{"bad event", `{"bucket":"b","events":["object-created"]}`, `events[0] "object-created"`},
		{"wildcard inside", `{"bucket":"b","events":["s3:*:Put"]}`, `events[0]`},
		{"partial wildcard", `{"bucket":"b","events":["s3:ObjectCreated:P*"]}`, `events[0]`},
		{"empty event", `{"bucket":"b","events":["s3:ObjectCreated:*",""]}`, `events[1] ""`},
		{"too many events", `{"bucket":"b","events":[` + strings.Repeat(`"s3:*",`, 32) + `"s3:*"]}`, "at most 32"},
		{"prefix too long", `{"bucket":"b","prefix":"` + strings.Repeat("p", 1025) + `"}`, "prefix and suffix"},
		{"short secret", `{"bucket":"b","secret":"abc"}`, "secret must be 8 to 256"},
		{"secret with space", `{"bucket":"b","secret":"abc def ghi"}`, "printable ASCII"},
		{"bad key encoding", `{"bucket":"b","keyEncoding":"base64"}`, `keyEncoding "base64"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseConfig([]byte(tt.config))
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("ParseConfig: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("ParseConfig error = %v, want one containing %q", err, tt.wantErr)
			}
			if !errors.Is(err, nimbus.ErrInvalid) {
				t.Errorf("error %v is not nimbus.ErrInvalid", err)
			}
		})
	}
}

func TestMatch(t *testing.T) {
	rec := func(event, bucket, key string) Record {
		return Record{EventName: event, Bucket: bucket, RawKey: key}
	}
	put := "s3:ObjectCreated:Put"
	tests := []struct {
		name, config string
		rec          Record
		want         bool
	}{
		{"bucket", `{"bucket":"b"}`, rec(put, "b", "k"), true},
		{"other bucket", `{"bucket":"b"}`, rec(put, "c", "k"), false},
		{"any event by default", `{"bucket":"b"}`, rec("s3:ObjectRemoved:Delete", "b", "k"), true},
		{"wildcard", `{"bucket":"b","events":["s3:ObjectCreated:*"]}`, rec(put, "b", "k"), true},
		{"wildcard other category", `{"bucket":"b","events":["s3:ObjectCreated:*"]}`, rec("s3:ObjectRemoved:Delete", "b", "k"), false},
		{"wildcard is not a word prefix", `{"bucket":"b","events":["s3:Object:*"]}`, rec(put, "b", "k"), false},
		{"exact", `{"bucket":"b","events":["s3:ObjectCreated:Put"]}`, rec(put, "b", "k"), true},
		{"exact other", `{"bucket":"b","events":["s3:ObjectCreated:Copy"]}`, rec(put, "b", "k"), false},
		{"config without s3:", `{"bucket":"b","events":["ObjectCreated:*"]}`, rec(put, "b", "k"), true},
		{"all", `{"bucket":"b","events":["s3:*"]}`, rec("s3:ObjectTagging:Put", "b", "k"), true},
		{"second pattern", `{"bucket":"b","events":["s3:ObjectRemoved:*","s3:ObjectCreated:*"]}`, rec(put, "b", "k"), true},
		{"prefix and suffix", `{"bucket":"b","prefix":"in/","suffix":".jpg"}`, rec(put, "b", "in/x.jpg"), true},
		{"prefix misses", `{"bucket":"b","prefix":"in/","suffix":".jpg"}`, rec(put, "b", "out/x.jpg"), false},
		{"suffix misses", `{"bucket":"b","prefix":"in/","suffix":".jpg"}`, rec(put, "b", "in/x.png"), false},
		{"prefix on the decoded key", `{"bucket":"b","prefix":"in/my file"}`, rec(put, "b", "in%2Fmy+file.jpg"), true},
		{"suffix on the decoded key", `{"bucket":"b","suffix":"(1).jpg"}`, rec(put, "b", "a%281%29.jpg"), true},
		{"encoded key misses the raw prefix", `{"bucket":"b","prefix":"in%2F"}`, rec(put, "b", "in%2Fx"), false},
		{"raw key with a space is not decoded", `{"bucket":"b","suffix":"a+b.jpg"}`, rec(put, "b", "in/x a+b.jpg"), true},
		{"bad escape is kept", `{"bucket":"b","suffix":"100%.jpg"}`, rec(put, "b", "100%.jpg"), true},
		{"keyEncoding none", `{"bucket":"b","suffix":"a+b.jpg","keyEncoding":"none"}`, rec(put, "b", "a+b.jpg"), true},
		{"keyEncoding url", `{"bucket":"b","suffix":"a b.jpg"}`, rec(put, "b", "a+b.jpg"), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := ParseConfig([]byte(tt.config))
			if err != nil {
				t.Fatal(err)
			}
			if got := c.Match(tt.rec); got != tt.want {
				t.Errorf("Match(%+v) = %v, want %v", tt.rec, got, tt.want)
			}
		})
	}
}
