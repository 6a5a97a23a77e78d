package image

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

const (
	childEnv    = "NIMBUS_IMAGE_TEST_CHILD_DIR"
	childRefEnv = "NIMBUS_IMAGE_TEST_CHILD_REF"
)

// childPull is the child process of TestKilledPull: it pulls ref into the
// store at dir.
func childPull(dir, ref string) int {
	s, err := Open(Options{Dir: dir})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	if _, err := s.Ensure(context.Background(), ref); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

func randomBytes(t testing.TB, n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestKilledPull(t *testing.T) {
	reg := newRegistry(t, nil)
	dir := t.TempDir()
	l := layer(t, file("big", randomBytes(t, 4<<20)))
	small := layer(t, file("small", "s"))
	ref := reg.push(t, "slow:v1", imageOf(t, small, l))
	started := make(chan struct{})
	var once sync.Once
	tamperBlob(reg, digestOf(t, l), func(w http.ResponseWriter, r *http.Request, body []byte) {
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		for i := 0; i < len(body); i += 32 << 10 {
			if _, err := w.Write(body[i:min(i+32<<10, len(body))]); err != nil {
				return
			}
			w.(http.Flusher).Flush()
			if i >= 512<<10 {
				once.Do(func() { close(started) })
			}
			select {
			case <-r.Context().Done():
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	})
	s := openStore(t, Options{Dir: t.TempDir()})
	res, err := s.Resolve(t.Context(), ref)
	if err != nil {
		t.Fatal(err)
	}
	hex := res[strings.LastIndex(res, ":")+1:]

	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+dir, childRefEnv+"="+res)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-started:
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("the child did not start pulling: %s", stderr.String())
	}
	if err := cmd.Process.Kill(); err != nil { // SIGKILL
		t.Fatal(err)
	}
	cmd.Wait()
	left, _ := os.ReadDir(filepath.Join(dir, "tmp"))
	if len(left) == 0 {
		t.Fatal("the child was killed with nothing in tmp/: the test proves nothing")
	}
	t.Logf("left by the killed pull: %v", left)

	reg.setTamper(nil)
	s2 := openStore(t, Options{Dir: dir})
	if left, _ := os.ReadDir(filepath.Join(dir, "tmp")); len(left) != 0 {
		t.Errorf("Open left %v in tmp/", left)
	}
	if _, err := os.Lstat(s2.imageDir(hex)); err == nil {
		t.Fatal("a root exists for the image whose pull was killed")
	}
	img, err := s2.Ensure(t.Context(), res)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Join(img.Root, "big")); err != nil || fi.Size() != 4<<20 {
		t.Errorf("big: %v, %v", fi, err)
	}
}

func TestOpenLocksDir(t *testing.T) {
	s := openStore(t, Options{})
	if _, err := Open(Options{Dir: s.dir}); err == nil || !strings.Contains(err.Error(), "in use by another process") {
		t.Errorf("second Open of one directory: %v, want in use", err)
	}
}

func TestCollect(t *testing.T) {
	reg := newRegistry(t, nil)
	s := openStore(t, Options{})
	base, one, two, own := layer(t, baseLayer(t)...), layer(t, appLayer(t, "one")...), layer(t, appLayer(t, "two")...), layer(t, file("c", "c"))
	a, err := resolveEnsure(t, s, reg.push(t, "a:v1", imageOf(t, base, one)))
	if err != nil {
		t.Fatal(err)
	}
	b, err := resolveEnsure(t, s, reg.push(t, "b:v1", imageOf(t, base, two)))
	if err != nil {
		t.Fatal(err)
	}
	c, err := resolveEnsure(t, s, reg.push(t, "c:v1", imageOf(t, own)))
	if err != nil {
		t.Fatal(err)
	}
	none := func(string) bool { return false }
	collect := func(keep func(string) bool, minAge time.Duration, want ...string) {
		t.Helper()
		got, err := s.Collect(keep, minAge)
		if err != nil {
			t.Fatal(err)
		}
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("Collect removed %q, want %q", got, want)
		}
	}
	collect(none, time.Hour) // all young

	// Age everything but c's image.
	old := time.Now().Add(-2 * time.Hour)
	for _, d := range []string{s.imageDir(hexOfT(t, a.Digest)), s.imageDir(hexOfT(t, b.Digest))} {
		os.Chtimes(d, old, old)
	}
	for _, l := range []string{digestOf(t, base), digestOf(t, one), digestOf(t, two), digestOf(t, own)} {
		os.Chtimes(s.layerDir(hexOfT(t, l)), old, old)
	}
	release := s.Use(a.Digest)
	collect(none, time.Hour, "image "+b.Digest, "layer "+digestOf(t, two))
	if _, err := os.ReadFile(filepath.Join(a.Root, "etc/os-release")); err != nil {
		t.Errorf("the image in use lost its files: %v", err)
	}
	if _, err := os.Stat(c.Root); err != nil {
		t.Errorf("the young image was removed: %v", err)
	}
	release()
	release() // a second call does nothing
	collect(func(d string) bool { return d == a.Digest }, time.Hour)
	collect(none, 0, "image "+a.Digest, "image "+c.Digest, "layer "+digestOf(t, base), "layer "+digestOf(t, one), "layer "+digestOf(t, own))
	for _, d := range []string{"images", "layers", "tmp"} {
		if ents, _ := os.ReadDir(filepath.Join(s.dir, d)); len(ents) != 0 {
			t.Errorf("%s/ holds %v after collecting everything", d, ents)
		}
	}
	// And it comes back.
	if _, err := s.Ensure(t.Context(), reg.host+"/a@"+a.Digest); err != nil {
		t.Fatal(err)
	}
}

func hexOfT(t testing.TB, digest string) string {
	t.Helper()
	h, err := hexOf(digest)
	if err != nil {
		t.Fatal(err)
	}
	return h
}
