package s3

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/trigger"
)

// TestEvent is the event name of the notification a store sends when
// notifications are set up (it has no records).
const TestEvent = "s3:TestEvent"

// TypePrefix starts the CloudEvents type of an S3 event, as the CloudEvents
// AWS S3 adapter names it: "com.amazonaws.s3.ObjectCreated:Put".
const TypePrefix = "com.amazonaws.s3."

// Notification is the body of an S3 bucket event notification.
type Notification struct {
	Records []Record
	// Test marks the s3:TestEvent message (no records).
	Test bool
}

// Record is one event of a Notification.
type Record struct {
	// EventName always has the "s3:" prefix (AWS leaves it out in records,
	// MinIO and versitygw do not).
	EventName string
	EventTime time.Time
	Bucket    string
	// RawKey is the object key as received (see Config.Key).
	RawKey string
	// Raw is the record's JSON as received, compacted.
	Raw json.RawMessage
}

// wireNotification is a notification as stores send it.
type wireNotification struct {
	Records *[]json.RawMessage `json:"Records"`
	Event   string             `json:"Event"` // s3:TestEvent messages
}

// wireRecord holds the fields of a record Nimbus reads.
type wireRecord struct {
	EventName string `json:"eventName"`
	EventTime string `json:"eventTime"`
	S3        *struct {
		Bucket struct {
			Name string `json:"name"`
		} `json:"bucket"`
		Object struct {
			Key string `json:"key"`
		} `json:"object"`
	} `json:"s3"`
}

// ParseNotification decodes an S3 event notification body: {"Records":
// [...]} as AWS S3, MinIO and versitygw send it, or the s3:TestEvent
// message. Errors are user errors (nimbus.ErrInvalid).
func ParseNotification(body []byte) (Notification, error) {
	var w wireNotification
	if err := json.Unmarshal(body, &w); err != nil {
		return Notification{}, nimbus.Errorf(nimbus.ErrMalformed, "S3 event notification: %s", strings.TrimPrefix(err.Error(), "json: "))
	}
	if w.Records == nil {
		if w.Event == TestEvent {
			return Notification{Test: true}, nil
		}
		return Notification{}, nimbus.Errorf(nimbus.ErrMalformed, "S3 event notification: no Records field")
	}
	n := Notification{Records: make([]Record, 0, len(*w.Records))}
	for i, raw := range *w.Records {
		r, err := parseRecord(raw)
		if err != nil {
			return Notification{}, nimbus.Errorf(nimbus.ErrMalformed, "S3 event notification: Records[%d]: %s", i, err)
		}
		n.Records = append(n.Records, r)
	}
	return n, nil
}

func parseRecord(raw json.RawMessage) (Record, error) {
	var w wireRecord
	if err := json.Unmarshal(raw, &w); err != nil {
		return Record{}, fmt.Errorf("%s", strings.TrimPrefix(err.Error(), "json: "))
	}
	switch {
	case w.EventName == "":
		return Record{}, fmt.Errorf("eventName is missing")
	case w.S3 == nil || w.S3.Bucket.Name == "":
		return Record{}, fmt.Errorf("s3.bucket.name is missing")
	case w.S3.Object.Key == "":
		return Record{}, fmt.Errorf("s3.object.key is missing")
	}
	t, err := time.Parse(time.RFC3339, w.EventTime)
	if err != nil {
		return Record{}, fmt.Errorf("eventTime %q is not an RFC 3339 time", w.EventTime)
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, raw); err != nil {
		return Record{}, err
	}
	name := w.EventName
	if !strings.HasPrefix(name, "s3:") {
		name = "s3:" + name
	}
	return Record{EventName: name, EventTime: t.UTC(), Bucket: w.S3.Bucket.Name, RawKey: w.S3.Object.Key, Raw: compact.Bytes()}, nil
}

// Message is the record as a CloudEvent: type TypePrefix + the event name
// without "s3:", source "s3://<bucket>", subject the decoded key, time the
// event time, data the record's JSON. The id is a digest of the record, so
// a notification the store sends again has the same ids.
func (c Config) Message(r Record) trigger.Message {
	sum := sha256.Sum256(r.Raw)
	key := c.Key(r)
	return trigger.Message{
		ID:              hex.EncodeToString(sum[:16]),
		Source:          "s3://" + r.Bucket,
		Type:            TypePrefix + strings.TrimPrefix(r.EventName, "s3:"),
		Subject:         key,
		Time:            r.EventTime,
		Key:             r.Bucket + "/" + key,
		DataContentType: "application/json",
		Data:            r.Raw,
	}
}
