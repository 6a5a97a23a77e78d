package seal

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSealOpen(t *testing.T) {
	k, err := Parse(Generate())
	if err != nil {
		t.Fatal(err)
	}
	s := k.Seal([]byte("hunter2"), []byte("fn:a"))
	if !Sealed(s) || strings.Contains(s, "hunter2") {
		t.Fatalf("sealed value %q", s)
	}
	got, err := k.Open(s, []byte("fn:a"))
	if err != nil || string(got) != "hunter2" {
		t.Fatalf("Open = %q, %v", got, err)
	}
	if _, err := k.Open(s, []byte("fn:b")); err == nil {
		t.Fatal("opened a value bound to another place")
	}
	if s2 := k.Seal([]byte("hunter2"), []byte("fn:a")); s2 == s {
		t.Fatal("two seals of one value are equal: nonce reused")
	}
	other, _ := Parse(Generate())
	if _, err := other.Open(s, []byte("fn:a")); !errors.Is(err, ErrWrongKey) {
		t.Fatalf("Open under another key: %v, want ErrWrongKey", err)
	}
	for _, bad := range []string{"", "plain", Prefix, Prefix + "!!!", Prefix + "AAAA", s[:len(s)-3]} {
		if _, err := k.Open(bad, []byte("fn:a")); err == nil {
			t.Errorf("Open(%q) succeeded", bad)
		}
	}
}

func TestLoadOrCreate(t *testing.T) {
	dir := t.TempDir()
	k1, err := LoadOrCreate(dir, "")
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(dir, FileName))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("node key mode %v, want 0600", fi.Mode().Perm())
	}
	k2, err := LoadOrCreate(dir, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := k2.Open(k1.Seal([]byte("x"), nil), nil); err != nil {
		t.Fatalf("key not the same after reload: %v", err)
	}
	if err := os.Chmod(filepath.Join(dir, FileName), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadOrCreate(dir, ""); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("world-readable key accepted: %v", err)
	}
	given := Generate()
	k3, err := LoadOrCreate(t.TempDir(), given)
	if err != nil {
		t.Fatal(err)
	}
	k4, _ := Parse(given)
	if _, err := k4.Open(k3.Seal([]byte("x"), nil), nil); err != nil {
		t.Fatal("given key not used")
	}
	for _, bad := range []string{"short", "AAAA", strings.Repeat("A", 60)} {
		if _, err := LoadOrCreate(dir, bad); err == nil {
			t.Errorf("key %q accepted", bad)
		}
	}
}

func FuzzOpen(f *testing.F) {
	k, _ := Parse(Generate())
	f.Add(k.Seal([]byte("v"), []byte("a")))
	f.Add("nimbus:v1:AAAA")
	f.Fuzz(func(t *testing.T, s string) {
		_, _ = k.Open(s, []byte("a"))
	})
}
