package s3_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/versity/versitygw/backend/meta"
	"github.com/versity/versitygw/backend/posix"
	"github.com/versity/versitygw/embedgw"

	"github.com/nimbus-serverless/nimbus/internal/api"
	"github.com/nimbus-serverless/nimbus/internal/testenv"
	"github.com/nimbus-serverless/nimbus/internal/trigger"
	s3trigger "github.com/nimbus-serverless/nimbus/internal/trigger/s3"
	"github.com/nimbus-serverless/nimbus/internal/trigger/triggertest"
)

// counter counts the notifications that reached the endpoint, so the test
// knows when the store has sent everything (versitygw sends them
// asynchronously, in no particular order).
type counter struct {
	mu      sync.Mutex
	records int
	changed chan struct{}
	next    http.Handler
}

func (c *counter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	r.Body = io.NopCloser(bytes.NewReader(body))
	var n struct{ Records []json.RawMessage }
	_ = json.Unmarshal(body, &n)
	rec := httptest.NewRecorder()
	c.next.ServeHTTP(rec, r)
	for k, v := range rec.Header() {
		w.Header()[k] = v
	}
	w.WriteHeader(rec.Code)
	_, _ = w.Write(rec.Body.Bytes())
	c.mu.Lock()
	c.records += len(n.Records)
	close(c.changed)
	c.changed = make(chan struct{})
	c.mu.Unlock()
}

func (c *counter) wait(t *testing.T, records int) {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		c.mu.Lock()
		got, ch := c.records, c.changed
		c.mu.Unlock()
		if got >= records {
			return
		}
		select {
		case <-ch:
		case <-deadline:
			t.Fatalf("the store sent %d records, want %d", got, records)
		}
	}
}

// Environment of the versitygw helper process.
const (
	envHelper  = "NIMBUS_TEST_VERSITYGW"
	envDir     = "NIMBUS_TEST_VERSITYGW_DIR"
	envAddr    = "NIMBUS_TEST_VERSITYGW_ADDR"
	envWebhook = "NIMBUS_TEST_VERSITYGW_WEBHOOK"
)

// TestVersityGWProcess is not a test: it is the versitygw gateway that
// TestVersityGW runs in a child process (this test binary again). A process
// of its own keeps versitygw apart from the tests: it changes the working
// directory, allows one gateway per process, leaves goroutines behind and
// has data races of its own (its webhook sender reads request buffers that
// fasthttp reuses), which must not fail the race-enabled run of Nimbus's
// code. The child's race reports go to a file and do not change its exit
// code.
func TestVersityGWProcess(t *testing.T) {
	if os.Getenv(envHelper) != "1" {
		return
	}
	dir := os.Getenv(envDir)
	be, err := posix.New(dir, meta.XattrMeta{}, posix.PosixOpts{NewDirPerm: 0o755, Concurrency: 16, CopyObjectThreshold: 1 << 20})
	if err != nil {
		fmt.Fprintf(os.Stderr, "versitygw posix backend in %s: %v\n", dir, err)
		os.Exit(3)
	}
	err = embedgw.RunVersityGW(context.Background(), be, &embedgw.Config{
		RootUserAccess: "nimbus", RootUserSecret: "nimbus-secret", Ports: []string{os.Getenv(envAddr)},
		MaxConnections: 64, MaxRequests: 64, MultipartMaxParts: 10000, Quiet: true,
		EventWebhookURL: os.Getenv(envWebhook),
	})
	fmt.Fprintf(os.Stderr, "versitygw: %v\n", err)
	os.Exit(1)
}

// startVersityGW runs versitygw with a posix backend in a temporary
// directory, in a child process, sending its bucket event notifications to
// webhook, until the test ends; it returns an S3 client for it.
func startVersityGW(t *testing.T, webhook string) *s3.Client {
	t.Helper()
	dir, addr := t.TempDir(), freeAddr(t)
	var out bytes.Buffer
	cmd := exec.Command(os.Args[0], "-test.run=^TestVersityGWProcess$")
	cmd.Env = append(os.Environ(), envHelper+"=1", envDir+"="+filepath.Join(dir, "data"),
		envAddr+"="+addr, envWebhook+"="+webhook, "GORACE=exitcode=0 log_path="+filepath.Join(dir, "race"))
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := os.Mkdir(filepath.Join(dir, "data"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start versitygw: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
	})
	client := s3.New(s3.Options{
		Region: "us-east-1", BaseEndpoint: aws.String("http://" + addr), UsePathStyle: true,
		Credentials: credentials.NewStaticCredentialsProvider("nimbus", "nimbus-secret", ""),
	})
	if err := waitReady(t, client, done); err != nil {
		if strings.Contains(out.String(), "posix backend") && !testenv.RequireServices() {
			t.Skipf("versitygw cannot run here: %s", out.String())
		}
		t.Fatalf("versitygw: %v; its output:\n%s", err, out.String())
	}
	return client
}

// waitReady polls the gateway until it answers (it has no readiness
// signal) or its process ends.
func waitReady(t *testing.T, client *s3.Client, done chan error) error {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		_, err := client.ListBuckets(t.Context(), &s3.ListBucketsInput{})
		if err == nil {
			return nil
		}
		select {
		case werr := <-done:
			done <- werr // for the cleanup
			return fmt.Errorf("the process ended: %v", werr)
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready after a minute: %w", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestVersityGW runs a real S3-compatible server (versitygw, embedded)
// whose webhook notifications go to the Nimbus API's endpoint, and checks
// that only the events passing the trigger's filters reach its sink.
func TestVersityGW(t *testing.T) {
	recv, sink := s3trigger.NewReceiver(nil), &triggertest.Sink{}
	cfg, err := s3trigger.ParseConfig([]byte(`{"bucket":"photos","events":["s3:ObjectCreated:*"],` +
		`"prefix":"in/","suffix":".jpg","keyEncoding":"none","secret":"webhook-secret"}`))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(recv.Register("thumbs", "uploads", cfg, sink, trigger.Options{BatchSize: 10}))
	count := &counter{changed: make(chan struct{}), next: api.New(api.Config{S3: recv})}
	srv := httptest.NewServer(count)
	t.Cleanup(srv.Close)

	client := startVersityGW(t, srv.URL+"/nimbus/v1/s3-events/thumbs/uploads?secret=webhook-secret")
	ctx := t.Context()
	for _, b := range []string{"photos", "other"} {
		if _, err := client.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(b)}); err != nil {
			t.Fatalf("create bucket %s: %v", b, err)
		}
	}
	ops := []func() error{
		put(client, "photos", "in/a.jpg"),        // delivered
		put(client, "photos", "in/my photo.jpg"), // delivered
		put(client, "photos", "in/b.png"),        // suffix
		put(client, "photos", "out/c.jpg"),       // prefix
		put(client, "other", "in/d.jpg"),         // bucket
		func() error { // delivered: ObjectCreated:Copy
			_, err := client.CopyObject(ctx, &s3.CopyObjectInput{Bucket: aws.String("photos"),
				Key: aws.String("in/copy.jpg"), CopySource: aws.String("photos/in/a.jpg")})
			return err
		},
		func() error { // event type: ObjectTagging:Put
			_, err := client.PutObjectTagging(ctx, &s3.PutObjectTaggingInput{Bucket: aws.String("photos"), Key: aws.String("in/a.jpg"),
				Tagging: &types.Tagging{TagSet: []types.Tag{{Key: aws.String("k"), Value: aws.String("v")}}}})
			return err
		},
		func() error { // event type: ObjectRemoved:Delete
			_, err := client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String("photos"), Key: aws.String("in/a.jpg")})
			return err
		},
	}
	for i, op := range ops {
		if err := op(); err != nil {
			t.Fatalf("S3 operation %d: %v", i, err)
		}
		// One at a time: versitygw builds a notification from request
		// buffers that its next request may reuse before it is sent.
		count.wait(t, i+1)
	}

	var got []string
	for _, m := range sink.Messages() {
		got = append(got, m.Type+" "+m.Source+" "+m.Subject)
	}
	slices.Sort(got)
	want := []string{
		"com.amazonaws.s3.ObjectCreated:Copy s3://photos in/copy.jpg",
		"com.amazonaws.s3.ObjectCreated:Put s3://photos in/a.jpg",
		"com.amazonaws.s3.ObjectCreated:Put s3://photos in/my photo.jpg",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("delivered:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func put(client *s3.Client, bucket, key string) func() error {
	return func() error {
		_, err := client.PutObject(context.Background(), &s3.PutObjectInput{
			Bucket: aws.String(bucket), Key: aws.String(key), Body: strings.NewReader("hello " + key),
		})
		return err
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}
