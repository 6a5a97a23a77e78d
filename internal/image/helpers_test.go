package image

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/klauspost/compress/zstd"
	"github.com/nimbus-serverless/nimbus/internal/testenv"
)

// tentry is one entry of a test layer's tar.
type tentry struct {
	name string
	typ  byte // tar.TypeReg when zero
	mode int64
	body string
	link string
}

func file(name, body string) tentry { return tentry{name: name, body: body, mode: 0o644} }
func dir(name string) tentry        { return tentry{name: name, typ: tar.TypeDir, mode: 0o755} }
func symlink(name, target string) tentry {
	return tentry{name: name, typ: tar.TypeSymlink, link: target, mode: 0o777}
}

func tarOf(t testing.TB, ents ...tentry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range ents {
		h := &tar.Header{Name: e.name, Typeflag: e.typ, Mode: e.mode, Linkname: e.link,
			ModTime: time.Unix(1700000000, 0), Uid: 1000, Gid: 1000}
		if h.Typeflag == 0 {
			h.Typeflag = tar.TypeReg
		}
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(e.body))
		}
		if h.Typeflag == tar.TypeChar {
			h.Devmajor, h.Devminor = 1, 3
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			if _, err := io.WriteString(tw, e.body); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func gzipped(t testing.TB, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestSpeed)
	if _, err := zw.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func zstded(t testing.TB, b []byte) []byte {
	t.Helper()
	zw, err := zstd.NewWriter(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer zw.Close()
	return zw.EncodeAll(b, nil)
}

// layer is a gzipped OCI layer of ents.
func layer(t testing.TB, ents ...tentry) v1.Layer {
	t.Helper()
	return static.NewLayer(gzipped(t, tarOf(t, ents...)), types.OCILayer)
}

// imageOf is an OCI image of the node's platform with layers.
func imageOf(t testing.TB, layers ...v1.Layer) v1.Image {
	t.Helper()
	return imageFor(t, runtime.GOOS, runtime.GOARCH, layers...)
}

func imageFor(t testing.TB, os, arch string, layers ...v1.Layer) v1.Image {
	t.Helper()
	img, err := mutate.AppendLayers(mutate.MediaType(empty.Image, types.OCIManifestSchema1), layers...)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = os, arch
	cf.Config = v1.Config{
		Entrypoint: []string{"/bin/hello"}, Cmd: []string{"arg"}, Env: []string{"PATH=/bin", "A=b"},
		WorkingDir: "/app", User: "1000:1000", ExposedPorts: map[string]struct{}{"8080/tcp": {}, "53/udp": {}},
	}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatal(err)
	}
	return mutate.ConfigMediaType(img, types.OCIConfigJSON)
}

// testRegistry is an in-process registry on 127.0.0.1 that counts blob GETs
// and lets a test tamper with responses.
type testRegistry struct {
	host string
	srv  *httptest.Server

	mu     sync.Mutex
	gets   map[string]int // blob digest -> GETs
	tamper func(w http.ResponseWriter, r *http.Request, next http.Handler) bool
}

var blobPath = regexp.MustCompile(`/blobs/(sha256:[0-9a-f]{64})$`)

// newRegistry starts a registry; wrap (if any) wraps its handler, outside
// the counting.
func newRegistry(t testing.TB, wrap func(http.Handler) http.Handler) *testRegistry {
	t.Helper()
	tr := &testRegistry{gets: map[string]int{}}
	inner := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	var h http.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if m := blobPath.FindStringSubmatch(r.URL.Path); m != nil && r.Method == http.MethodGet {
			tr.mu.Lock()
			tr.gets[m[1]]++
			tamper := tr.tamper
			tr.mu.Unlock()
			if tamper != nil && tamper(w, r, inner) {
				return
			}
		}
		inner.ServeHTTP(w, r)
	})
	if wrap != nil {
		h = wrap(h)
	}
	tr.srv = httptest.NewServer(h)
	t.Cleanup(tr.srv.Close)
	tr.host = strings.TrimPrefix(tr.srv.URL, "http://")
	return tr
}

func (tr *testRegistry) setTamper(f func(w http.ResponseWriter, r *http.Request, next http.Handler) bool) {
	tr.mu.Lock()
	tr.tamper = f
	tr.mu.Unlock()
}

func (tr *testRegistry) blobGets(digest string) int {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return tr.gets[digest]
}

// push writes img as repo:tag and returns its reference.
func (tr *testRegistry) push(t testing.TB, repoTag string, img v1.Image, opts ...remote.Option) string {
	t.Helper()
	ref := tr.host + "/" + repoTag
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, img, opts...); err != nil {
		t.Fatal(err)
	}
	return ref
}

func (tr *testRegistry) pushIndex(t testing.TB, repoTag string, idx v1.ImageIndex) string {
	t.Helper()
	ref := tr.host + "/" + repoTag
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.WriteIndex(r, idx); err != nil {
		t.Fatal(err)
	}
	return ref
}

func digestOf(t testing.TB, x interface{ Digest() (v1.Hash, error) }) string {
	t.Helper()
	h, err := x.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return h.String()
}

func openStore(t testing.TB, opts Options) *Store {
	t.Helper()
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
	}
	s, err := Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.Close(ctx); err != nil {
			t.Error(err)
		}
	})
	return s
}

// resolveEnsure resolves ref and ensures it.
func resolveEnsure(t testing.TB, s *Store, ref string) (*Image, error) {
	t.Helper()
	res, err := s.Resolve(t.Context(), ref)
	if err != nil {
		return nil, err
	}
	return s.Ensure(t.Context(), res)
}

var (
	helloOnce sync.Once
	helloPath string
	helloErr  error
	helloDir  string
)

// helloBinary builds, once per test process, a static Go program that
// prints "hello from the image" and its arguments.
func helloBinary(t testing.TB) []byte {
	t.Helper()
	helloOnce.Do(func() {
		goBin := filepath.Join(runtime.GOROOT(), "bin", "go")
		if _, err := os.Stat(goBin); err != nil {
			if goBin, err = exec.LookPath("go"); err != nil {
				helloErr = err
				return
			}
		}
		helloDir, helloErr = os.MkdirTemp("", "image-hello-")
		if helloErr != nil {
			return
		}
		src := filepath.Join(helloDir, "main.go")
		helloErr = os.WriteFile(src, []byte("package main\n\nimport (\"fmt\"; \"os\")\n\nfunc main() { fmt.Println(\"hello from the image\", os.Args[1:]) }\n"), 0o644)
		if helloErr != nil {
			return
		}
		helloPath = filepath.Join(helloDir, "hello")
		cmd := exec.Command(goBin, "build", "-trimpath", "-ldflags=-s -w", "-o", helloPath, src)
		cmd.Dir = helloDir
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GO111MODULE=off", "GOFLAGS=")
		if out, err := cmd.CombinedOutput(); err != nil {
			helloErr = err
			helloErr = &buildError{err, string(out)}
		}
	})
	if helloErr != nil {
		testenv.Missing(t, "the go command (to build the test program)", helloErr)
	}
	b, err := os.ReadFile(helloPath)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

type buildError struct {
	err error
	out string
}

func (e *buildError) Error() string { return e.err.Error() + ": " + e.out }

func TestMain(m *testing.M) {
	if dir := os.Getenv(childEnv); dir != "" {
		os.Exit(childPull(dir, os.Getenv(childRefEnv)))
	}
	code := m.Run()
	if helloDir != "" {
		os.RemoveAll(helloDir)
	}
	os.Exit(code)
}

// swapDial makes the store dial with d until restore is called.
func swapDial(d func(ctx context.Context, network, addr string) (net.Conn, error)) (restore func()) {
	old := dialContext
	dialContext = d
	return func() { dialContext = old }
}
