// Package imagetest is test support for container images: an in-process
// registry on 127.0.0.1 (go-containerregistry's), into which a test pushes
// small images of one layer, and whose blob reads it can break.
package imagetest

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	ggtypes "github.com/google/go-containerregistry/pkg/v1/types"
)

// Registry is an in-process registry served over plain HTTP on 127.0.0.1
// until the test ends. A node reaches it as an insecure registry: give it
// Host in its InsecureRegistries (loopback is plain HTTP anyway).
type Registry struct {
	// Host is the registry's "127.0.0.1:port", as image references name it.
	Host string
	// Broken, when set, is a blob digest ("sha256:<hex>") every GET of
	// which fails with 404.
	Broken atomic.Pointer[string]
}

// NewRegistry starts a registry, stopped when t ends.
func NewRegistry(t testing.TB) *Registry {
	t.Helper()
	ir := &Registry{}
	inner := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if d := ir.Broken.Load(); d != nil && strings.HasSuffix(r.URL.Path, "/blobs/"+*d) {
			http.Error(w, "gone", http.StatusNotFound)
			return
		}
		inner.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	ir.Host = strings.TrimPrefix(srv.URL, "http://")
	return ir
}

// Push writes an image for this machine's platform (linux/GOARCH) of one
// gzipped layer holding files (regular files of mode 0755, named by their
// paths in the image) with config cfg, as repo:tag. It returns the image's
// reference (Host/repo:tag), its manifest digest and its layer's digest
// ("sha256:<hex>").
func (ir *Registry) Push(t testing.TB, repoTag string, files map[string][]byte, cfg v1.Config) (ref, digest, layer string) {
	t.Helper()
	l := static.NewLayer(gzipTar(t, files), ggtypes.DockerLayer)
	ld, err := l.Digest()
	if err != nil {
		t.Fatal(err)
	}
	img, err := mutate.AppendLayers(empty.Image, l)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.Config = cfg
	cf.OS, cf.Architecture = "linux", runtime.GOARCH
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		t.Fatal(err)
	}
	ref = ir.Host + "/" + repoTag
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, img); err != nil {
		t.Fatal(err)
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return ref, d.String(), ld.String()
}

// Resolved is the digest reference a node resolves ref's repository to
// for digest: Host/repo@sha256:<hex>.
func (ir *Registry) Resolved(repo, digest string) string { return ir.Host + "/" + repo + "@" + digest }

// gzipTar is a gzipped tar of files.
func gzipTar(t testing.TB, files map[string][]byte) []byte {
	t.Helper()
	var tarBuf bytes.Buffer
	tw := tar.NewWriter(&tarBuf)
	for p, body := range files {
		if err := tw.WriteHeader(&tar.Header{Name: p, Mode: 0o755, Size: int64(len(body)), Typeflag: tar.TypeReg, ModTime: time.Unix(1_700_000_000, 0)}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(body); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	_, _ = zw.Write(tarBuf.Bytes())
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return gz.Bytes()
}
