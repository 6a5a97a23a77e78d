package image

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// checkFails checks err wraps want and its message holds every part.
func checkFails(t *testing.T, err, want error, parts ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want %v", want)
	}
	t.Logf("error: %v", err)
	if !errors.Is(err, want) {
		t.Errorf("error %q does not wrap %q", err, want)
	}
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			t.Errorf("error %q does not say %q", err, p)
		}
	}
	if strings.Contains(err.Error(), "\n") {
		t.Errorf("error %q is not one line", err)
	}
}

// checkNothingLeft checks a failed Ensure left no image and no temporary
// directory.
func checkNothingLeft(t *testing.T, s *Store) {
	t.Helper()
	for _, d := range []string{"images", "tmp"} {
		ents, err := os.ReadDir(filepath.Join(s.dir, d))
		if err != nil {
			t.Fatal(err)
		}
		if len(ents) != 0 {
			t.Errorf("%s/ holds %v after a failed pull", d, ents)
		}
	}
}

func otherArch() string {
	if runtime.GOARCH == "s390x" {
		return "ppc64le"
	}
	return "s390x"
}

func TestIndexWithoutOurPlatform(t *testing.T) {
	reg := newRegistry(t, nil)
	s := openStore(t, Options{})
	l := layer(t, file("a", "a"))
	idx := mutate.AppendManifests(empty.Index,
		mutate.IndexAddendum{Add: imageFor(t, "linux", otherArch(), l), Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: otherArch()}}},
		mutate.IndexAddendum{Add: imageFor(t, "windows", runtime.GOARCH, l), Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "windows", Architecture: runtime.GOARCH}}},
	)
	ref := reg.pushIndex(t, "multi:v1", idx)
	_, err := s.Resolve(t.Context(), ref)
	checkFails(t, err, ErrInvalidImage, "no manifest for this node's platform linux/"+runtime.GOARCH, "linux/"+otherArch(), "windows/"+runtime.GOARCH)

	// An index with our platform resolves to that manifest.
	mine := imageOf(t, l)
	idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: mine, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: runtime.GOOS, Architecture: runtime.GOARCH}}})
	ref = reg.pushIndex(t, "multi:v2", idx)
	res, err := s.Resolve(t.Context(), ref)
	if err != nil {
		t.Fatal(err)
	}
	if want := reg.host + "/multi@" + digestOf(t, mine); res != want {
		t.Errorf("Resolve(index) = %s, want %s", res, want)
	}
	// Ensure of the index's own digest ensures our manifest.
	img, err := s.Ensure(t.Context(), reg.host+"/multi@"+digestOf(t, idx))
	if err != nil || img.Digest != digestOf(t, mine) {
		t.Errorf("Ensure(index digest) = %+v, %v; want the digest %s", img, err, digestOf(t, mine))
	}

	// A single image for another architecture.
	ref = reg.push(t, "foreign:v1", imageFor(t, "linux", otherArch(), l))
	_, err = s.Resolve(t.Context(), ref)
	checkFails(t, err, ErrInvalidImage, "is an image for linux/"+otherArch())
}

func TestUnsafeLayersRefused(t *testing.T) {
	reg := newRegistry(t, nil)
	for _, tc := range []struct {
		name  string
		ents  []tentry
		parts []string
	}{
		{"dotdot", []tentry{file("../x", "x")}, []string{`"../x"`, "escape"}},
		{"dotdot-inside", []tentry{dir("a"), file("a/../../x", "x")}, []string{`"a/../../x"`, "escape"}},
		{"absolute", []tentry{file("/abs", "x")}, []string{`"/abs" is an absolute path`}},
		{"symlink-escape", []tentry{dir("a"), symlink("a/etc", "../../etc"), file("a/etc/passwd", "x")}, []string{`"a/etc" is a symlink to "../../etc", outside the image`}},
		{"write-through-symlink", []tentry{dir("a"), symlink("a/l", "/tmp"), file("a/l/x", "x")}, []string{`"a/l/x" goes through the symlink "a/l"`}},
		{"hardlink-outside", []tentry{{name: "h", typ: tar.TypeLink, link: "../../etc/passwd"}}, []string{`"h" is a hard link to "../../etc/passwd", outside the layer`}},
		{"hardlink-absolute", []tentry{{name: "h", typ: tar.TypeLink, link: "/etc/passwd"}}, []string{`"h" is a hard link to "/etc/passwd"`}},
		{"hardlink-missing", []tentry{{name: "h", typ: tar.TypeLink, link: "nothere"}}, []string{`not a regular file earlier in the same layer`}},
		{"char-device", []tentry{dir("dev"), {name: "dev/null", typ: tar.TypeChar, mode: 0o666}}, []string{`"dev/null" is a device node (character device)`}},
		{"block-device", []tentry{{name: "sda", typ: tar.TypeBlock, mode: 0o660}}, []string{`"sda" is a device node (block device)`}},
		{"fifo", []tentry{{name: "pipe", typ: tar.TypeFifo, mode: 0o644}}, []string{`"pipe" is a FIFO`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := openStore(t, Options{})
			ref := reg.push(t, "bad-"+tc.name+":v1", imageOf(t, layer(t, file("ok", "ok")), layer(t, tc.ents...)))
			_, err := resolveEnsure(t, s, ref)
			checkFails(t, err, ErrInvalidImage, tc.parts...)
			checkNothingLeft(t, s)
			if _, err := os.Lstat("/etc/passwd-nimbus-test"); err == nil {
				t.Fatal("wrote outside the store")
			}
		})
	}
}

// tamperBlob makes reg serve the blob digest through f (given the real
// body) instead.
func tamperBlob(reg *testRegistry, digest string, f func(w http.ResponseWriter, r *http.Request, body []byte)) {
	reg.setTamper(func(w http.ResponseWriter, r *http.Request, next http.Handler) bool {
		if !strings.HasSuffix(r.URL.Path, digest) {
			return false
		}
		rec := httptest.NewRecorder()
		next.ServeHTTP(rec, r)
		f(w, r, rec.Body.Bytes())
		return true
	})
}

func TestCorruptLayerRefused(t *testing.T) {
	for _, tc := range []struct {
		name  string
		layer v1.Layer
	}{
		{"gzip", layer(t, file("f", strings.Repeat("data", 10000)))},
		{"uncompressed", static.NewLayer(tarOf(t, file("f", strings.Repeat("data", 10000))), types.OCIUncompressedLayer)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reg := newRegistry(t, nil)
			s := openStore(t, Options{})
			ref := reg.push(t, "corrupt:v1", imageOf(t, tc.layer))
			d := digestOf(t, tc.layer)
			tamperBlob(reg, d, func(w http.ResponseWriter, r *http.Request, body []byte) {
				body = bytes.Clone(body)
				body[len(body)/2] ^= 0x55
				w.Write(body)
			})
			_, err := resolveEnsure(t, s, ref)
			checkFails(t, err, ErrInvalidImage, "layer sha256:"+strings.TrimPrefix(d, "sha256:")[:12], "corrupt", "digest mismatch")
			checkNothingLeft(t, s)
			if ents, _ := os.ReadDir(filepath.Join(s.dir, "layers")); len(ents) != 0 {
				t.Errorf("layers/ holds %v after a corrupt layer", ents)
			}
		})
	}
}

func TestTruncatedLayerRefused(t *testing.T) {
	reg := newRegistry(t, nil)
	s := openStore(t, Options{})
	l := layer(t, file("f", strings.Repeat("data", 10000)))
	ref := reg.push(t, "short:v1", imageOf(t, l))
	tamperBlob(reg, digestOf(t, l), func(w http.ResponseWriter, r *http.Request, body []byte) {
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.Write(body[:len(body)/2]) // the server then cuts the connection
	})
	_, err := resolveEnsure(t, s, ref)
	checkFails(t, err, ErrInvalidImage, "truncated")
	checkNothingLeft(t, s)
}

func TestOverSizeLimit(t *testing.T) {
	reg := newRegistry(t, nil)
	s := openStore(t, Options{MaxUnpacked: 4096})
	ref := reg.push(t, "big:v1", imageOf(t, layer(t, file("a", strings.Repeat("x", 3000))), layer(t, file("b", strings.Repeat("y", 3000)))))
	_, err := resolveEnsure(t, s, ref)
	checkFails(t, err, ErrInvalidImage, "over the limit of 4096 bytes unpacked")
	checkNothingLeft(t, s)

	ok := reg.push(t, "small:v1", imageOf(t, layer(t, file("a", strings.Repeat("x", 3000)))))
	if _, err := resolveEnsure(t, s, ok); err != nil {
		t.Errorf("an image under the limit: %v", err)
	}
}

func TestStalledRegistry(t *testing.T) {
	reg := newRegistry(t, nil)
	s := openStore(t, Options{StallTimeout: 300 * time.Millisecond})
	l := layer(t, file("f", strings.Repeat("data", 100000)))
	ref := reg.push(t, "stall:v1", imageOf(t, l))
	tamperBlob(reg, digestOf(t, l), func(w http.ResponseWriter, r *http.Request, body []byte) {
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.Write(body[:1000])
		w.(http.Flusher).Flush()
		select { // stall until the client gives up
		case <-r.Context().Done():
		case <-time.After(10 * time.Second):
		}
	})
	start := time.Now()
	_, err := resolveEnsure(t, s, ref)
	checkFails(t, err, ErrUnavailable, "sent no data for 300ms (stalled)")
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("the stall was noticed after %s", d)
	}
	checkNothingLeft(t, s)
}

func TestRegistryErrors(t *testing.T) {
	const user, pass, token = "alice", "s3cret-pw", "tok-7f3a9"
	basic := newRegistry(t, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if u, p, ok := r.BasicAuth(); !ok || u != user || p != pass {
				w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
				http.Error(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`, http.StatusUnauthorized)
				return
			}
			h.ServeHTTP(w, r)
		})
	})
	bearer := newRegistry(t, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("Authorization") != "Bearer "+token {
				w.Header().Set("WWW-Authenticate", `Bearer realm="http://`+r.Host+`/token",service="test"`)
				http.Error(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`, http.StatusUnauthorized)
				return
			}
			h.ServeHTTP(w, r)
		})
	})
	img := imageOf(t, layer(t, file("a", "a")))
	basicRef := basic.push(t, "private:v1", img, remote.WithAuth(&authn.Basic{Username: user, Password: pass}))
	bearerRef := bearer.push(t, "private:v1", img, remote.WithAuth(authn.FromConfig(authn.AuthConfig{RegistryToken: token})))
	plain := newRegistry(t, nil)
	plainRef := plain.push(t, "app:v1", img)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()

	creds := func(c map[string]Credential) Options { return Options{Credentials: c} }
	for _, tc := range []struct {
		name  string
		opts  Options
		ref   string
		want  error
		parts []string
	}{
		{"basic", creds(map[string]Credential{basic.host: {Username: user, Password: pass}}), basicRef, nil, nil},
		{"basic-wrong-password", creds(map[string]Credential{basic.host: {Username: user, Password: "wrong-pw-9"}}), basicRef, ErrAuth, []string{"refused the credentials", "401"}},
		{"basic-none", Options{}, basicRef, ErrAuth, []string{"requires credentials", "none are configured"}},
		{"bearer", creds(map[string]Credential{bearer.host: {Token: token}}), bearerRef, nil, nil},
		{"bearer-wrong", creds(map[string]Credential{bearer.host: {Token: "tok-wrong-1"}}), bearerRef, ErrAuth, []string{"401"}},
		{"missing-tag", Options{}, plain.host + "/app:nope", ErrNotFound, []string{"manifest unknown"}},
		{"missing-repo", Options{}, plain.host + "/nothere:v1", ErrNotFound, nil},
		{"unreachable", Options{}, closed + "/app:v1", ErrUnavailable, []string{"registry " + closed + " is unreachable", "connection refused"}},
		{"bad-ref", Options{}, "UPPER/Case::x", ErrInvalidRef, nil},
		{"not-pinned", Options{}, "", ErrInvalidRef, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := openStore(t, tc.opts)
			var err error
			if tc.name == "not-pinned" {
				_, err = s.Ensure(t.Context(), plainRef)
			} else {
				_, err = resolveEnsure(t, s, tc.ref)
			}
			if tc.want == nil {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			checkFails(t, err, tc.want, tc.parts...)
			for _, secret := range []string{pass, "wrong-pw-9", token, "tok-wrong-1"} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("error %q holds a secret", err)
				}
			}
		})
	}
}

func TestInsecureHostOverHTTP(t *testing.T) {
	// A name that is not a loopback address is reached over HTTPS unless
	// Options.Insecure names it.
	reg := newRegistry(t, nil)
	_, port, _ := net.SplitHostPort(reg.host)
	ref := reg.push(t, "app:v1", imageOf(t, layer(t, file("a", "a"))))
	named := "nimbus-registry.test:" + port + "/app:v1"
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, network, reg.host)
	}
	restore := swapDial(dial)
	defer restore()
	s := openStore(t, Options{})
	_, err := s.Resolve(t.Context(), named)
	if err == nil {
		t.Fatal("a plain-HTTP registry was reached over HTTPS without Insecure")
	}
	s2 := openStore(t, Options{Insecure: []string{"nimbus-registry.test:" + port}})
	res, err := s2.Resolve(t.Context(), named)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s2.Ensure(t.Context(), res); err != nil {
		t.Fatal(err)
	}
	_ = ref
}
