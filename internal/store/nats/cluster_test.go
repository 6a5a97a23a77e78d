package nats_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	natsstore "github.com/nimbus-serverless/nimbus/internal/store/nats"
)

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// testCerts writes a CA and two certificates it signed for 127.0.0.1 (one
// for the members, one whose key is another's), and a CA that signed
// nothing.
type testCerts struct {
	ca, cert, key, otherKey, otherCA string
}

func makeCerts(t *testing.T) testCerts {
	t.Helper()
	dir := t.TempDir()
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	newKey := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	keyDER := func(k *ecdsa.PrivateKey) []byte {
		b, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	mkCA := func(name string) (*x509.Certificate, *ecdsa.PrivateKey, []byte) {
		k := newKey()
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
		if err != nil {
			t.Fatal(err)
		}
		c, _ := x509.ParseCertificate(der)
		return c, k, der
	}
	ca, caKey, caDER := mkCA("test ca")
	_, _, otherDER := mkCA("other ca")
	k := newKey()
	leaf := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "member"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"localhost"},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, leaf, ca, &k.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	return testCerts{
		ca: write("ca.pem", "CERTIFICATE", caDER), otherCA: write("other-ca.pem", "CERTIFICATE", otherDER),
		cert: write("cert.pem", "CERTIFICATE", der), key: write("key.pem", "PRIVATE KEY", keyDER(k)),
		otherKey: write("other-key.pem", "PRIVATE KEY", keyDER(newKey())),
	}
}

func TestClusterConfigErrors(t *testing.T) {
	c := makeCerts(t)
	dir := t.TempDir()
	cl := func(listen string, peers ...string) natsstore.Cluster {
		return natsstore.Cluster{Listen: listen, Peers: peers, ServerName: "n1"}
	}
	tests := []struct {
		name string
		cfg  natsstore.Config
		want string
	}{
		{"peers without listen", natsstore.Config{DataDir: dir, Cluster: natsstore.Cluster{Peers: []string{"h:6222"}}}, "--peers needs --cluster-listen"},
		{"bad listen", natsstore.Config{DataDir: dir, Cluster: cl("nohostport")}, `--cluster-listen "nohostport"`},
		{"bad peer", natsstore.Config{DataDir: dir, Cluster: cl("127.0.0.1:6222", "h:99999")}, `--peers: "h:99999": bad port`},
		{"peer without port", natsstore.Config{DataDir: dir, Cluster: cl("127.0.0.1:6222", "h")}, `--peers: "h"`},
		{"replicas above members", natsstore.Config{DataDir: dir, Cluster: cl("127.0.0.1:6222", "h:6222"), Replicas: 3}, "--replicas 3 is more than the cluster's 2 member(s)"},
		{"replicas on a single node", natsstore.Config{DataDir: dir, Replicas: 2}, "--replicas 2 is more than the cluster's 1 member(s)"},
		{"replicas above 5", natsstore.Config{URL: "nats://h:4222", Replicas: 6}, "--replicas must be 1 to 5"},
		{"cluster with a remote server", natsstore.Config{URL: "nats://h:4222", Cluster: cl("127.0.0.1:6222")}, "cannot go with --nats-url"},
		{"name without listen", natsstore.Config{DataDir: dir, Cluster: natsstore.Cluster{Name: "x"}}, "--cluster-name needs --cluster-listen"},
		{"tls without a listener", natsstore.Config{DataDir: dir, TLS: natsstore.TLSFiles{Cert: c.cert, Key: c.key, CA: c.ca}}, "there is nothing to secure"},
		{"tls without a ca", natsstore.Config{DataDir: dir, Cluster: cl("127.0.0.1:6222"), TLS: natsstore.TLSFiles{Cert: c.cert, Key: c.key}}, "give all three"},
		{"tls file missing", natsstore.Config{DataDir: dir, Cluster: cl("127.0.0.1:6222"), TLS: natsstore.TLSFiles{Cert: c.cert, Key: c.key, CA: dir + "/nope.pem"}}, "--cluster-tls-ca: open"},
		{"tls key of another cert", natsstore.Config{DataDir: dir, Cluster: cl("127.0.0.1:6222"), TLS: natsstore.TLSFiles{Cert: c.cert, Key: c.otherKey, CA: c.ca}}, "private key does not match public key"},
		{"tls ca not pem", natsstore.Config{DataDir: dir, Cluster: cl("127.0.0.1:6222"), TLS: natsstore.TLSFiles{Cert: c.cert, Key: c.key, CA: c.key}}, "--cluster-tls-ca"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate() = %v, want an error with %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error of more than one line: %q", err)
			}
		})
	}
}

func TestClusterMembers(t *testing.T) {
	checkLeaks(t)
	host, _ := os.Hostname()
	tests := []struct {
		listen string
		peers  []string
		want   int
	}{
		{"", nil, 1},
		{"127.0.0.1:6222", nil, 1},
		{"127.0.0.1:6222", []string{"a:6222"}, 2},
		{"127.0.0.1:6222", []string{"a:6222", "b:6222"}, 3},
		{"127.0.0.1:6222", []string{"a:6222", "b:6222", "127.0.0.1:6222"}, 3},         // itself
		{"0.0.0.0:6222", []string{"a:6222", "b:6222", host + ".svc.example:6222"}, 3}, // itself by name
		{"0.0.0.0:6222", []string{"a:6222", "b:6222", "a:6222"}, 3},                   // twice
		{"0.0.0.0:6222", []string{"a:6222", "b:6222", "c:6222", "d:6222", "e:6222"}, 6},
	}
	for _, tt := range tests {
		c := natsstore.Cluster{Listen: tt.listen, Peers: tt.peers}
		if got := c.Members(); got != tt.want {
			t.Errorf("Members(%s, %v) = %d, want %d", tt.listen, tt.peers, got, tt.want)
		}
	}
	s := openEmbedded(t, t.TempDir())
	if got := s.Replicas(); got != 1 {
		t.Errorf("a single node's Replicas() = %d, want 1", got)
	}
}

// TestClusterWaitTimesOut: a member whose peers never come gives up after
// Cluster.Wait with an error that says so.
func TestClusterWaitTimesOut(t *testing.T) {
	checkLeaks(t)
	cfg := natsstore.Config{DataDir: t.TempDir(), Cluster: natsstore.Cluster{
		Listen: freeAddr(t), Peers: []string{freeAddr(t), freeAddr(t)}, ServerName: "lonely", Wait: 2 * time.Second,
	}}
	start := time.Now()
	s, err := natsstore.Open(t.Context(), cfg)
	if err == nil {
		s.Close(context.Background())
		t.Fatal("Open of a member without peers succeeded")
	}
	if !strings.Contains(err.Error(), "no JetStream quorum of 3 replicas after 2s") {
		t.Errorf("error = %v, want one about the quorum", err)
	}
	if d := time.Since(start); d > 15*time.Second {
		t.Errorf("Open gave up after %s, want about 2s", d)
	}
}

// TestClusterTLS forms a cluster of three embedded servers in this process
// over mutual-TLS routes: a write on one is read on another, the bucket has
// 3 replicas, and a client of a member's listener must show a certificate.
func TestClusterTLS(t *testing.T) {
	checkLeaks(t)
	c := makeCerts(t)
	tlsFiles := natsstore.TLSFiles{Cert: c.cert, Key: c.key, CA: c.ca}
	routes := []string{freeAddr(t), freeAddr(t), freeAddr(t)}
	stores := make([]*natsstore.Store, 3)
	errs := make(chan error, 3)
	for i := range stores {
		var peers []string
		for j, r := range routes {
			if j != i {
				peers = append(peers, r)
			}
		}
		cfg := natsstore.Config{DataDir: t.TempDir(), Listen: "127.0.0.1:0", TLS: tlsFiles, Cluster: natsstore.Cluster{
			Name: "tlstest", Listen: routes[i], Peers: peers, ServerName: string(rune('a' + i)), Wait: 30 * time.Second,
		}}
		go func() {
			s, err := natsstore.Open(t.Context(), cfg)
			stores[i] = s
			errs <- err
		}()
	}
	for range stores {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range stores {
		t.Cleanup(func() { s.Close(context.Background()) })
		if s.Replicas() != 3 {
			t.Errorf("Replicas() = %d, want 3", s.Replicas())
		}
	}
	kv0, err := stores[0].KV(t.Context(), "tls")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv0.Put(t.Context(), "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	kv2, err := stores[2].KV(t.Context(), "tls")
	if err != nil {
		t.Fatal(err)
	}
	got, err := kv2.Get(t.Context(), "k")
	if err != nil || string(got.Value) != "v" {
		t.Fatalf("Get on another member = %v, %v; want v", got, err)
	}
	b, err := stores[1].JetStream().KeyValue(t.Context(), "nimbus_tls")
	if err != nil {
		t.Fatal(err)
	}
	st, err := b.Status(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if info := st.(*jetstream.KeyValueBucketStatus).StreamInfo(); info.Config.Replicas != 3 || info.Cluster == nil || len(info.Cluster.Replicas) != 2 {
		t.Errorf("bucket: %d replicas, cluster %+v; want 3 placed", info.Config.Replicas, info.Cluster)
	}
	// The client listener wants TLS and a certificate the CA signed.
	url := stores[0].ClientURL()
	if nc, err := nats.Connect(url); err == nil {
		nc.Close()
		t.Error("a client without a certificate connected to the member's listener")
	}
	nc, err := nats.Connect(url, nats.ClientCert(c.cert, c.key), nats.RootCAs(c.ca))
	if err != nil {
		t.Fatalf("a client with the certificate: %v", err)
	}
	nc.Close()
}
