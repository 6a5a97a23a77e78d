package nodetest

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
)

// Call sends a request to the API at endpoint, with body as JSON (nil:
// none), SigV4-signed with creds as aws-sdk-go-v2 signs, decodes a JSON
// answer into out (nil: ignored) and returns the status.
func Call(t testing.TB, endpoint string, creds aws.Credentials, method, path string, body, out any) int {
	t.Helper()
	var b []byte
	if body != nil {
		b, _ = json.Marshal(body)
	}
	req, err := http.NewRequestWithContext(t.Context(), method, endpoint+path, bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	if err := v4.NewSigner().SignHTTP(t.Context(), creds, req, hex.EncodeToString(sum[:]), "lambda", "us-east-1", time.Now()); err != nil {
		t.Fatal(err)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	rb, _ := io.ReadAll(res.Body)
	if out != nil && json.Unmarshal(rb, out) != nil {
		t.Fatalf("%s %s = %d %s: not JSON", method, path, res.StatusCode, rb)
	}
	return res.StatusCode
}
