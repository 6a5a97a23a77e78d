package codepkg

import (
	"archive/zip"
	"bytes"
	"hash/crc32"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// zent is an entry of a test zip. A zero mode means a regular 0644 file (a
// directory when the name ends in "/").
type zent struct {
	name  string
	body  string
	mode  fs.FileMode
	store bool // zip.Store rather than zip.Deflate (symlinks are always stored)
	// raw entries are written as they are, with method and crc in their
	// header, whatever the body.
	raw    bool
	method uint16
	crc    uint32
}

func file(name, body string) zent { return zent{name: name, body: body} }
func exe(name, body string) zent  { return zent{name: name, body: body, mode: 0o755} }
func link(name, target string) zent {
	return zent{name: name, body: target, mode: fs.ModeSymlink | 0o777}
}
func dir(name string) zent { return zent{name: name, mode: fs.ModeDir | 0o755} }

var testTime = time.Date(2024, 5, 6, 7, 8, 10, 0, time.UTC)

// buildZip builds a zip in memory with archive/zip.
func buildZip(tb testing.TB, ents ...zent) []byte {
	tb.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, e := range ents {
		if e.raw {
			writeRaw(tb, zw, e)
			continue
		}
		h := &zip.FileHeader{Name: e.name, Method: zip.Deflate, Modified: testTime}
		if e.store || e.mode&fs.ModeSymlink != 0 {
			h.Method = zip.Store
		}
		mode := e.mode
		if mode == 0 {
			mode = 0o644
		}
		h.SetMode(mode)
		w, err := zw.CreateHeader(h)
		if err != nil {
			tb.Fatalf("zip %s: %v", e.name, err)
		}
		if _, err := w.Write([]byte(e.body)); err != nil {
			tb.Fatalf("zip %s: %v", e.name, err)
		}
	}
	if err := zw.Close(); err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes()
}

// rawZip builds a zip of one raw entry whose header says crc, whatever the
// body.
func rawZip(tb testing.TB, name, body string, method uint16, crc uint32) []byte {
	return buildZip(tb, zent{name: name, body: body, method: method, raw: true, crc: crc})
}

func writeRaw(tb testing.TB, zw *zip.Writer, e zent) {
	tb.Helper()
	h := &zip.FileHeader{
		Name:               e.name,
		Method:             e.method,
		CRC32:              e.crc,
		CompressedSize64:   uint64(len(e.body)),
		UncompressedSize64: uint64(len(e.body)),
	}
	h.SetMode(0o644)
	w, err := zw.CreateRaw(h)
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := w.Write([]byte(e.body)); err != nil {
		tb.Fatal(err)
	}
}

func crc(s string) uint32 { return crc32.ChecksumIEEE([]byte(s)) }

// zeros returns n zero bytes as a string: highly compressible content.
func zeros(n int) string { return string(make([]byte, n)) }

// makeRemovable lets t.TempDir's cleanup remove read-only trees when the
// tests do not run as root.
func makeRemovable(t *testing.T, root string) {
	t.Helper()
	t.Cleanup(func() {
		_ = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				_ = os.Chmod(p, 0o700)
			}
			return nil
		})
	})
}

// listTree returns the relative paths under root, sorted.
func listTree(t *testing.T, root string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p != root {
			rel, _ := filepath.Rel(root, p)
			out = append(out, filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}
