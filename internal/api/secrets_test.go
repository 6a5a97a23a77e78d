package api_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nimbus-serverless/nimbus/internal/api"
	"github.com/nimbus-serverless/nimbus/internal/codepkg"
	"github.com/nimbus-serverless/nimbus/internal/store"
)

// newSecretsServer is an API server over an in-memory store whose
// functions bucket the test reads; mod changes its Config, wrap (if set)
// its handler.
func newSecretsServer(t *testing.T, mod func(*api.Config), wrap func(http.Handler) http.Handler) (*httptest.Server, store.KV) {
	t.Helper()
	reg, kv := memRegistry(t, t.TempDir(), codepkg.DefaultLimits(), "python3.11")
	cfg := api.Config{Registry: reg, Invoker: echoInvoker{}}
	if mod != nil {
		mod(&cfg)
	}
	var h http.Handler = api.New(cfg)
	if wrap != nil {
		h = wrap(h)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv, kv
}

// TestEnvironmentSealedButAnswered: the store holds a function's
// environment sealed; GetFunctionConfiguration answers it in clear, as
// Lambda does to callers allowed to read the function.
func TestEnvironmentSealedButAnswered(t *testing.T) {
	srv, kv := newSecretsServer(t, nil, nil)
	secret := fmt.Sprintf("s3cret-%d-%d", os.Getpid(), time.Now().UnixNano())
	body := `{"FunctionName":"f","Runtime":"python3.11","Handler":"app.handler","Environment":{"Variables":{"API_KEY":"` + secret +
		`"}},"Code":{"ZipFile":"` + base64.StdEncoding.EncodeToString(pyZip(t)) + `"}}`
	resp, err := http.Post(srv.URL+"/2015-03-31/functions", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("create: %s", resp.Status)
	}
	resp, err = http.Get(srv.URL + "/2015-03-31/functions/f/configuration")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var cfg struct {
		Environment struct{ Variables map[string]string }
	}
	if err := json.NewDecoder(resp.Body).Decode(&cfg); err != nil {
		t.Fatal(err)
	}
	if got := cfg.Environment.Variables["API_KEY"]; got != secret {
		t.Errorf("GetFunctionConfiguration API_KEY = %q, want the value in clear", got)
	}
	e, err := kv.Get(t.Context(), "f")
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(e.Value, []byte(secret)) {
		t.Errorf("the stored record holds the secret in clear: %s", e.Value)
	}
}

// TestUploadsBounded: while one code upload holds the node's upload
// memory, another waits and gets 429 TooManyRequestsException; once the
// first is done, uploads go through again.
func TestUploadsBounded(t *testing.T) {
	reading := make(chan struct{}) // the first upload's handler reads its body: it holds the gate
	srv, _ := newSecretsServer(t, func(c *api.Config) {
		c.UploadMemory = 1 << 20
		c.UploadWait = 200 * time.Millisecond
	}, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("X-Test-Upload") == "first" {
				r.Body = &firstRead{ReadCloser: r.Body, reading: reading}
			}
			h.ServeHTTP(w, r)
		})
	})
	zip := base64.StdEncoding.EncodeToString(pyZip(t))
	body := func(name string) string {
		return `{"FunctionName":"` + name + `","Runtime":"python3.11","Handler":"app.handler","Code":{"ZipFile":"` + zip + `"}}`
	}

	// The first upload declares 1 MB and sends its body slowly.
	first := body("first")
	pr, pw := io.Pipe()
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, srv.URL+"/2015-03-31/functions", pr)
	req.ContentLength = 1 << 20
	req.Header.Set("X-Test-Upload", "first")
	padded := first + strings.Repeat(" ", 1<<20-len(first))
	done := make(chan int, 1)
	go func() {
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			done <- 0
			return
		}
		resp.Body.Close()
		done <- resp.StatusCode
	}()
	if _, err := pw.Write([]byte(padded[:10])); err != nil {
		t.Fatal(err)
	}
	<-reading

	resp, err := http.Post(srv.URL+"/2015-03-31/functions", "application/json", strings.NewReader(body("second")))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("X-Amzn-ErrorType") != "TooManyRequestsException" {
		t.Errorf("second upload: %s %s, want 429 TooManyRequestsException", resp.Status, b)
	}

	if _, err := pw.Write([]byte(padded[10:])); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	if code := <-done; code != http.StatusCreated {
		t.Fatalf("first upload: %d, want 201", code)
	}
	resp, err = http.Post(srv.URL+"/2015-03-31/functions", "application/json", strings.NewReader(body("third")))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Errorf("upload after the first finished: %s, want 201", resp.Status)
	}
}

// firstRead closes reading at its first Read.
type firstRead struct {
	io.ReadCloser
	reading chan struct{}
	once    sync.Once
}

func (f *firstRead) Read(p []byte) (int, error) {
	f.once.Do(func() { close(f.reading) })
	return f.ReadCloser.Read(p)
}
