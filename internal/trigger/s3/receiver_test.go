package s3

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/trigger"
	"github.com/nimbus-serverless/nimbus/internal/trigger/triggertest"
)

// record returns one record's JSON.
func record(event, bucket, key string) string {
	return fmt.Sprintf(`{"eventVersion":"2.1","eventSource":"aws:s3","awsRegion":"us-east-1","eventTime":"2026-05-04T10:20:30Z",`+
		`"eventName":%q,"s3":{"bucket":{"name":%q,"arn":"arn:aws:s3:::%s"},"object":{"key":%q,"size":1,"sequencer":"01"}}}`,
		event, bucket, bucket, key)
}

func notification(records ...string) []byte {
	return []byte(`{"Records":[` + strings.Join(records, ",") + `]}`)
}

func mustConfig(t *testing.T, s string) Config {
	t.Helper()
	c, err := ParseConfig([]byte(s))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

const photos = `{"bucket":"photos","events":["s3:ObjectCreated:*"],"prefix":"in/","suffix":".jpg"}`

func TestReceiveDeliversMatchingRecords(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent()) // versitygw's goroutines may outlive its test
	r, sink := NewReceiver(nil), &triggertest.Sink{}
	defer r.Register("fn", "tr", mustConfig(t, photos), sink, trigger.Options{BatchSize: 10})()
	body := notification(
		record("ObjectCreated:Put", "photos", "in/a.jpg"),
		record("ObjectCreated:Put", "photos", "out/b.jpg"),
		record("ObjectRemoved:Delete", "photos", "in/c.jpg"),
		record("s3:ObjectCreated:Copy", "other", "in/d.jpg"),
		record("s3:ObjectCreated:CompleteMultipartUpload", "photos", "in%2Fe+1.jpg"),
	)
	res, err := r.Receive(t.Context(), "fn", "tr", "", body)
	if err != nil {
		t.Fatalf("Receive: %v", err)
	}
	if res != (Result{Records: 5, Delivered: 2}) {
		t.Errorf("result = %+v, want 5 records, 2 delivered", res)
	}
	var subjects []string
	for _, m := range sink.Messages() {
		subjects = append(subjects, m.Type+" "+m.Subject)
	}
	want := "com.amazonaws.s3.ObjectCreated:Put in/a.jpg,com.amazonaws.s3.ObjectCreated:CompleteMultipartUpload in/e 1.jpg"
	if got := strings.Join(subjects, ","); got != want {
		t.Errorf("delivered %s, want %s", got, want)
	}
}

func TestReceiveBatches(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent()) // versitygw's goroutines may outlive its test
	r, sink := NewReceiver(nil), &triggertest.Sink{}
	defer r.Register("fn", "tr", mustConfig(t, `{"bucket":"b"}`), sink, trigger.Options{BatchSize: 2})()
	var recs []string
	for i := range 5 {
		recs = append(recs, record("s3:ObjectCreated:Put", "b", fmt.Sprintf("k%d", i)))
	}
	if _, err := r.Receive(t.Context(), "fn", "tr", "", notification(recs...)); err != nil {
		t.Fatal(err)
	}
	var sizes []int
	for _, b := range sink.Batches() {
		sizes = append(sizes, len(b))
	}
	if fmt.Sprint(sizes) != "[2 2 1]" {
		t.Errorf("batch sizes = %v, want [2 2 1]", sizes)
	}
}

func TestReceiveErrors(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent()) // versitygw's goroutines may outlive its test
	r := NewReceiver(nil)
	failing := &triggertest.Sink{Fail: func([]trigger.Message) error { return triggertest.ErrRefused }}
	defer r.Register("fn", "secret", mustConfig(t, `{"bucket":"b","secret":"0123456789"}`), &triggertest.Sink{}, trigger.Options{})()
	defer r.Register("fn", "failing", mustConfig(t, `{"bucket":"b"}`), failing, trigger.Options{})()
	good := notification(record("s3:ObjectCreated:Put", "b", "k"))
	tests := []struct {
		name, trigger, secret string
		body                  []byte
		want                  error
	}{
		{"unknown trigger", "nope", "", good, nimbus.ErrNotFound},
		{"missing secret", "secret", "", good, nimbus.ErrForbidden},
		{"wrong secret", "secret", "0123456788", good, nimbus.ErrForbidden},
		{"malformed", "secret", "0123456789", []byte(`{"Records":`), nimbus.ErrMalformed},
		{"sink fails", "failing", "", good, triggertest.ErrRefused},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := r.Receive(t.Context(), "fn", tt.trigger, tt.secret, tt.body)
			if !errors.Is(err, tt.want) {
				t.Errorf("Receive error = %v, want %v", err, tt.want)
			}
		})
	}
	if res, err := r.Receive(t.Context(), "fn", "secret", "0123456789", good); err != nil || res.Delivered != 1 {
		t.Errorf("with the secret: %+v, %v; want 1 delivered", res, err)
	}
}

func TestTestEventDeliversNothing(t *testing.T) {
	r, sink := NewReceiver(nil), &triggertest.Sink{}
	defer r.Register("fn", "tr", mustConfig(t, `{"bucket":"b"}`), sink, trigger.Options{})()
	res, err := r.Receive(t.Context(), "fn", "tr", "", []byte(`{"Service":"Amazon S3","Event":"s3:TestEvent","Bucket":"b"}`))
	if err != nil || !res.Test || len(sink.Messages()) != 0 {
		t.Errorf("Receive = %+v, %v, %d delivered; want a test event, nothing delivered", res, err, len(sink.Messages()))
	}
}

// blockingSink blocks every Deliver until its ctx ends.
type blockingSink struct{ started chan struct{} }

func (s *blockingSink) Deliver(ctx context.Context, _ []trigger.Message) error {
	s.started <- struct{}{}
	<-ctx.Done()
	return ctx.Err()
}

func TestUnregisterCancelsDeliveries(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent()) // versitygw's goroutines may outlive its test
	r, sink := NewReceiver(nil), &blockingSink{started: make(chan struct{}, 1)}
	unregister := r.Register("fn", "tr", mustConfig(t, `{"bucket":"b"}`), sink, trigger.Options{})
	errc := make(chan error, 1)
	go func() {
		_, err := r.Receive(context.Background(), "fn", "tr", "", notification(record("s3:ObjectCreated:Put", "b", "k")))
		errc <- err
	}()
	<-sink.started
	unregister()
	if err := <-errc; err == nil {
		t.Error("Receive succeeded after its trigger was unregistered mid-delivery")
	}
	if _, err := r.Receive(t.Context(), "fn", "tr", "", notification()); !errors.Is(err, nimbus.ErrNotFound) {
		t.Errorf("after unregister: error = %v, want not found", err)
	}
}

// countingSink holds each Deliver until released and records the most
// deliveries in flight at once.
type countingSink struct {
	mu            sync.Mutex
	inFlight, max int
	started       chan struct{}
	release       chan struct{}
}

func (s *countingSink) Deliver(ctx context.Context, _ []trigger.Message) error {
	s.mu.Lock()
	s.inFlight++
	s.max = max(s.max, s.inFlight)
	s.mu.Unlock()
	s.started <- struct{}{}
	<-s.release
	s.mu.Lock()
	s.inFlight--
	s.mu.Unlock()
	return nil
}

func TestConcurrencyBoundsDeliveries(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent()) // versitygw's goroutines may outlive its test
	r := NewReceiver(nil)
	sink := &countingSink{started: make(chan struct{}, 3), release: make(chan struct{})}
	defer r.Register("fn", "tr", mustConfig(t, `{"bucket":"b"}`), sink, trigger.Options{Concurrency: 1})()
	errc := make(chan error, 3)
	for range 3 {
		go func() {
			_, err := r.Receive(context.Background(), "fn", "tr", "", notification(record("s3:ObjectCreated:Put", "b", "k")))
			errc <- err
		}()
	}
	for range 3 {
		<-sink.started
		sink.release <- struct{}{}
	}
	for range 3 {
		if err := <-errc; err != nil {
			t.Error(err)
		}
	}
	if sink.max != 1 {
		t.Errorf("%d deliveries in flight at once with Concurrency 1", sink.max)
	}
}

func TestSourceRegistersWhileRunning(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent()) // versitygw's goroutines may outlive its test
	r, sink := NewReceiver(nil), &triggertest.Sink{}
	if _, err := r.Factory("fn", "tr")([]byte(`{"bucket":""}`)); !errors.Is(err, nimbus.ErrInvalid) {
		t.Errorf("Factory with a bad config: error = %v, want invalid", err)
	}
	src, err := r.Factory("fn", "tr")([]byte(`{"bucket":"b"}`))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	status := trigger.NewStatus()
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx, sink, trigger.Options{Status: status}) }()
	waitActive(t, status)
	if _, err := r.Receive(t.Context(), "fn", "tr", "", notification(record("s3:ObjectCreated:Put", "b", "k"))); err != nil {
		t.Fatalf("Receive while running: %v", err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run = %v, want nil", err)
	}
	if _, err := r.Receive(t.Context(), "fn", "tr", "", notification()); !errors.Is(err, nimbus.ErrNotFound) {
		t.Errorf("after Run returned: error = %v, want not found", err)
	}
}

// waitActive polls the status until the source reports it is active.
func waitActive(t *testing.T, st *trigger.Status) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for st.View().State != trigger.StateActive {
		if time.Now().After(deadline) {
			t.Fatalf("state = %s, want Active", st.View().State)
		}
		time.Sleep(time.Millisecond)
	}
}

// The trigger manager's NamedFactory shape.
var _ func(function, trigger string) trigger.Factory = (*Receiver)(nil).Factory

// TestReceiveRequireSecret: with RequireSecret (a node with authentication
// on), a trigger without a secret takes no notification; one with a
// secret takes those that carry it.
func TestReceiveRequireSecret(t *testing.T) {
	r, sink := NewReceiver(nil), &triggertest.Sink{}
	r.RequireSecret = true
	defer r.Register("fn", "open", mustConfig(t, `{"bucket":"b"}`), sink, trigger.Options{})()
	defer r.Register("fn", "locked", mustConfig(t, `{"bucket":"b","secret":"0123456789"}`), sink, trigger.Options{})()
	body := notification(record("s3:ObjectCreated:Put", "b", "k"))
	if _, err := r.Receive(t.Context(), "fn", "open", "", body); !errors.Is(err, nimbus.ErrForbidden) || !strings.Contains(err.Error(), "no secret") {
		t.Fatalf("open trigger under RequireSecret: %v, want ErrForbidden naming the missing secret", err)
	}
	if _, err := r.Receive(t.Context(), "fn", "locked", "wrong-secret", body); !errors.Is(err, nimbus.ErrForbidden) {
		t.Fatalf("wrong secret: %v", err)
	}
	if res, err := r.Receive(t.Context(), "fn", "locked", "0123456789", body); err != nil || res.Delivered != 1 {
		t.Fatalf("right secret: %+v %v", res, err)
	}
}
