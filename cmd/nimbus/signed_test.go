package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/config"
)

// serverCreds holds, by address, the admin key each test server wrote to
// its credentials file.
var serverCreds sync.Map // addr -> aws.Credentials

// loadCreds reads the admin key a server wrote to <dataDir>/credentials.
func loadCreds(t testing.TB, addr, dataDir string) aws.Credentials {
	t.Helper()
	path := filepath.Join(dataDir, "credentials")
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatalf("credentials file: %v", err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("credentials file mode %v, want 0600", fi.Mode().Perm())
	}
	sc, err := config.LoadSharedConfigProfile(t.Context(), "nimbus", func(o *config.LoadSharedConfigOptions) {
		o.CredentialsFiles, o.ConfigFiles = []string{path}, []string{}
	})
	if err != nil || !sc.Credentials.HasKeys() {
		t.Fatalf("profile nimbus of %s: %v", path, err)
	}
	serverCreds.Store(addr, sc.Credentials)
	return sc.Credentials
}

// do sends req signed with the admin key of the server it goes to (as is,
// for a server the test did not start).
func do(req *http.Request) (*http.Response, error) {
	if c, ok := serverCreds.Load(req.URL.Host); ok {
		var body []byte
		if req.Body != nil {
			body, _ = io.ReadAll(req.Body)
			req.Body = io.NopCloser(bytes.NewReader(body))
		}
		sum := sha256.Sum256(body)
		if err := v4.NewSigner().SignHTTP(context.Background(), c.(aws.Credentials), req, hex.EncodeToString(sum[:]), "lambda", "us-east-1", time.Now()); err != nil {
			return nil, err
		}
	}
	return http.DefaultClient.Do(req)
}

func get(url string) (*http.Response, error) {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	return do(req)
}

func post(url, contentType string, body io.Reader) (*http.Response, error) {
	req, err := http.NewRequest(http.MethodPost, url, body)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", contentType)
	return do(req)
}
