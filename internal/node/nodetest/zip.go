package nodetest

import (
	"archive/zip"
	"bytes"
	"slices"
	"testing"
)

// Zip builds a code package of name -> content; the names in exec are
// executable (mode 0755), the others 0644.
func Zip[T ~string | ~[]byte](t testing.TB, files map[string]T, exec ...string) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for name, body := range files {
		h := &zip.FileHeader{Name: name, Method: zip.Deflate}
		h.SetMode(0o644)
		if slices.Contains(exec, name) {
			h.SetMode(0o755)
		}
		w, err := zw.CreateHeader(h)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write([]byte(body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}
