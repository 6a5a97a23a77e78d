package image

import (
	"archive/tar"
	"crypto/rand"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// The benchmark images: a base of baseLayers layers of filesPerLayer files
// (benchMB minus appMB in all), shared by two images that each add an app
// layer of appMB. The data is half random, half a repeated text, so gzip
// halves it, as it does real layers.
const (
	baseLayers    = 2
	filesPerLayer = 19
	appMB         = 10
)

func benchMB() int {
	if n, err := strconv.Atoi(os.Getenv("NIMBUS_IMAGE_BENCH_MB")); err == nil && n > appMB {
		return n
	}
	return 200
}

var (
	benchOnce sync.Once
	benchReg  *testRegistry
	benchRefs [2]string
)

// halfRandom is n bytes, each 4 KiB block half random and half text.
func halfRandom(b *testing.B, n int) string {
	out := make([]byte, n)
	for i := 0; i < n; i += 4096 {
		blk := out[i:min(i+4096, n)]
		h := len(blk) / 2
		if _, err := rand.Read(blk[:h]); err != nil {
			b.Fatal(err)
		}
		for j := h; j < len(blk); j++ {
			blk[j] = "nimbus image benchmark "[j%23]
		}
	}
	return string(out)
}

func benchImages(b *testing.B) (*testRegistry, [2]string) {
	benchOnce.Do(func() {
		benchReg = startRegistry(nil) // shared by the benchmarks
		baseBytes := (benchMB() - appMB) << 20
		fileSize := baseBytes / (baseLayers * filesPerLayer)
		var base []v1.Layer
		for l := range baseLayers {
			ents := []tentry{dir(fmt.Sprintf("base%d", l))}
			for f := range filesPerLayer {
				ents = append(ents, tentry{name: fmt.Sprintf("base%d/f%02d", l, f), body: halfRandom(b, fileSize), mode: 0o644})
			}
			base = append(base, layer(b, ents...))
		}
		for i := range benchRefs {
			app := layer(b, dir("app"), tentry{name: "app/blob", body: halfRandom(b, appMB<<20), mode: 0o755})
			benchRefs[i] = benchReg.push(b, fmt.Sprintf("bench%d:v1", i), imageOf(b, append(base, app)...))
		}
	})
	return benchReg, benchRefs
}

// BenchmarkImageStoreColdPull is create-to-ready of the first image into an
// empty store: Resolve and Ensure (pull, verify, unpack safely, flatten,
// fsync).
func BenchmarkImageStoreColdPull(b *testing.B) {
	_, refs := benchImages(b)
	b.SetBytes(int64(benchMB()) << 20)
	for b.Loop() {
		b.StopTimer()
		dir := b.TempDir()
		s, err := Open(Options{Dir: dir})
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		if _, err := resolveEnsure(b, s, refs[0]); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		s.Close(b.Context())
		removeTree(dir)
		b.StartTimer()
	}
}

// BenchmarkImageFloorCranePullTarX is the floor the store is measured
// against: what `crane export | tar -x` does, in the same process:
// remote.Image and mutate.Extract (go-containerregistry flattens the layers
// and verifies their digests) streamed into a plain archive/tar extraction
// with no checks and no fsync.
func BenchmarkImageFloorCranePullTarX(b *testing.B) {
	_, refs := benchImages(b)
	b.SetBytes(int64(benchMB()) << 20)
	for b.Loop() {
		b.StopTimer()
		dir := b.TempDir()
		b.StartTimer()
		r, err := name.ParseReference(refs[0])
		if err != nil {
			b.Fatal(err)
		}
		img, err := remote.Image(r, remote.WithContext(b.Context()))
		if err != nil {
			b.Fatal(err)
		}
		rc := mutate.Extract(img)
		if err := plainUntar(rc, dir); err != nil {
			b.Fatal(err)
		}
		rc.Close()
		b.StopTimer()
		os.RemoveAll(dir)
		b.StartTimer()
	}
}

// BenchmarkImageStoreSharedBase is create-to-ready of the second image
// when the store has the first: only its app layer is pulled, and its root
// is linked from the layers.
func BenchmarkImageStoreSharedBase(b *testing.B) {
	_, refs := benchImages(b)
	s := openStore(b, Options{})
	first, err := resolveEnsure(b, s, refs[0])
	if err != nil {
		b.Fatal(err)
	}
	res, err := s.Resolve(b.Context(), refs[1])
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(benchMB()) << 20)
	for b.Loop() {
		img, err := s.Ensure(b.Context(), res)
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		removed, err := s.Collect(func(d string) bool { return d == first.Digest }, 0)
		if err != nil || len(removed) != 2 || img.Digest == first.Digest {
			b.Fatalf("Collect removed %v, %v; want the second image and its app layer", removed, err)
		}
		b.StartTimer()
	}
}

// plainUntar is `tar -x` without its safety: what a floor does.
func plainUntar(r io.Reader, dir string) error {
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		p := filepath.Join(dir, h.Name)
		switch h.Typeflag {
		case tar.TypeDir:
			err = os.MkdirAll(p, 0o755)
		case tar.TypeReg:
			var f *os.File
			if err = os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				return err
			}
			if f, err = os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, os.FileMode(h.Mode)&0o777); err != nil {
				return err
			}
			_, err = io.Copy(f, tr)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
		case tar.TypeSymlink:
			err = os.Symlink(h.Linkname, p)
		}
		if err != nil {
			return err
		}
	}
}
