package node_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/lambda"

	"github.com/nimbus-serverless/nimbus/internal/node"
	"github.com/nimbus-serverless/nimbus/internal/node/nodetest"
)

// BenchmarkAuthWarmInvoke measures what SigV4 verification adds to a warm
// invoke of the no-op Go function: the same invoke on a node with --auth
// none and on one with --auth sigv4, one after the other in each
// iteration, so that both see the same load (the machine is shared). Each
// request is signed before its clock starts, so the figure is the server's
// cost. Reported: each node's p50 and p99, and the p50 of the per-iteration
// differences (added-p50-us). Target: at most 20 us.
func BenchmarkAuthWarmInvoke(b *testing.B) {
	body := []byte(`{"sleep_ms":0}`)
	open := nodetest.Start(b, nil)
	var dir string
	signed := nodetest.Start(b, func(c *node.Config) { c.Auth = node.AuthSigV4; dir = c.DataDir })
	creds := adminCreds(b, filepath.Join(dir, "credentials"))
	openURL := deploy(b, open, lambdaClient(open), goFunction(b, "noop"))
	sc := lambda.New(lambdaClient(signed).Options(), func(o *lambda.Options) {
		o.Credentials = credentials.NewStaticCredentialsProvider(creds.AccessKeyID, creds.SecretAccessKey, "")
	})
	signedURL := deploy(b, signed, sc, goFunction(b, "noop"))
	b.Run("serial", func(b *testing.B) {
		hcOpen, hcSigned := httpClient(b, 1), httpClient(b, 1)
		for range 50 {
			timedInvoke(b, hcOpen, openURL, body, aws.Credentials{})
			timedInvoke(b, hcSigned, signedURL, body, creds)
		}
		var none, sigv4, added []time.Duration
		for b.Loop() {
			a := timedInvoke(b, hcOpen, openURL, body, aws.Credentials{})
			s := timedInvoke(b, hcSigned, signedURL, body, creds)
			none, sigv4, added = append(none, a), append(sigv4, s), append(added, s-a)
		}
		for _, m := range []struct {
			name string
			ds   []time.Duration
		}{{"none", none}, {"sigv4", sigv4}} {
			b.ReportMetric(float64(percentile(m.ds, 0.5))/1e3, m.name+"-p50-us")
			b.ReportMetric(float64(percentile(m.ds, 0.99))/1e3, m.name+"-p99-us")
		}
		b.ReportMetric(float64(percentile(added, 0.5))/1e3, "added-p50-us")
	})
}

// timedInvoke invokes url (signed with c unless it is zero) and returns how
// long the answer took, from the request's first byte.
func timedInvoke(b *testing.B, hc *http.Client, url string, body []byte, c aws.Credentials) time.Duration {
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		b.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if c.HasKeys() {
		sum := sha256.Sum256(body)
		if err := v4.NewSigner().SignHTTP(b.Context(), c, req, hex.EncodeToString(sum[:]), "lambda", "us-east-1", time.Now()); err != nil {
			b.Fatal(err)
		}
	}
	began := time.Now()
	resp, err := hc.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	took := time.Since(began)
	if resp.StatusCode != http.StatusOK {
		b.Fatalf("invoke %s: status %d", url, resp.StatusCode)
	}
	return took
}

// adminCreds reads the key of the credentials file a node wrote.
func adminCreds(b *testing.B, path string) aws.Credentials {
	id, secret := nodetest.Credentials(b, path)
	return aws.Credentials{AccessKeyID: id, SecretAccessKey: secret}
}
