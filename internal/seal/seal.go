// Package seal encrypts Nimbus's secrets at rest (access keys' secrets,
// functions' environment variables, triggers' credentials) under the node
// key: 32 random bytes kept in the data directory (mode 0600), or given by
// flag or environment variable so that every node of a cluster shares it.
//
// A sealed value is "nimbus:v1:" followed by base64 of the key's 4-byte id,
// a 12-byte nonce and the AES-256-GCM ciphertext. The associated data binds a
// value to its place (a function's name, a key's id), so a value copied to
// another place does not open.
package seal

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Prefix starts every sealed value.
const Prefix = "nimbus:v1:"

// FileName is the node key's file in the data directory.
const FileName = "node.key"

// ErrWrongKey is returned by Open for a value sealed under another key.
var ErrWrongKey = errors.New("sealed under a different node key")

// Key seals and opens values. It is safe for concurrent use.
type Key struct {
	id   [4]byte
	aead cipher.AEAD
	raw  []byte // for Derive
}

// New returns the Key of 32 raw bytes.
func New(raw []byte) (*Key, error) {
	if len(raw) != 32 {
		return nil, fmt.Errorf("node key: must be 32 bytes, not %d", len(raw))
	}
	block, err := aes.NewCipher(raw)
	if err != nil {
		return nil, fmt.Errorf("node key: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("node key: %w", err)
	}
	k := &Key{aead: aead, raw: bytes.Clone(raw)}
	sum := sha256.Sum256(append([]byte("nimbus node key id\x00"), raw...))
	copy(k.id[:], sum[:])
	return k, nil
}

// Parse returns the Key written as base64 (standard or URL alphabet,
// padded or not) of 32 bytes: the node key file's content, or the value of
// --node-key.
func Parse(s string) (*Key, error) {
	s = strings.TrimSpace(s)
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if raw, err := enc.DecodeString(s); err == nil {
			return New(raw)
		}
	}
	return nil, errors.New("node key: not base64 of 32 bytes")
}

// Generate returns a new random key in the form Parse reads.
func Generate() string {
	raw := make([]byte, 32)
	_, _ = rand.Read(raw) // never fails (crypto/rand panics instead)
	return base64.StdEncoding.EncodeToString(raw)
}

// LoadOrCreate returns the key given (base64, from a flag or the
// environment) or, when given is "", the key in dir/node.key, created with
// mode 0600 on first use. A key file that others than its owner can read is
// refused, as ssh refuses such a private key.
func LoadOrCreate(dir, given string) (*Key, error) {
	if given != "" {
		return Parse(given)
	}
	path := filepath.Join(dir, FileName)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return create(path)
	}
	if err != nil {
		return nil, fmt.Errorf("node key: %w", err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("node key: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("node key: %s is readable by others (mode %v); chmod 600 it", path, fi.Mode().Perm())
	}
	k, err := Parse(string(b))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return k, nil
}

func create(path string) (*Key, error) {
	s := Generate()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) { // another process made it first
		return LoadOrCreate(filepath.Dir(path), "")
	}
	if err != nil {
		return nil, fmt.Errorf("node key: %w", err)
	}
	if _, err := f.WriteString(s + "\n"); err != nil {
		f.Close()
		os.Remove(path)
		return nil, fmt.Errorf("node key: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(path)
		return nil, fmt.Errorf("node key: %w", err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("node key: %w", err)
	}
	return Parse(s)
}

// Seal encrypts plain, bound to aad, into a sealed string.
func (k *Key) Seal(plain, aad []byte) string {
	buf := make([]byte, 0, len(k.id)+k.aead.NonceSize()+len(plain)+k.aead.Overhead())
	buf = append(buf, k.id[:]...)
	nonce := make([]byte, k.aead.NonceSize())
	_, _ = rand.Read(nonce)
	buf = append(buf, nonce...)
	buf = k.aead.Seal(buf, nonce, plain, aad)
	return Prefix + base64.RawStdEncoding.EncodeToString(buf)
}

// Derive returns a 32-byte key for purpose (e.g. "console session"),
// derived from the node key with HKDF-SHA256: the same on every node that
// shares the node key, and independent of the keys of other purposes.
func (k *Key) Derive(purpose string) []byte {
	out, _ := hkdf.Key(sha256.New, k.raw, nil, "nimbus "+purpose, 32) // fails only for lengths over 255 hashes
	return out
}

// Sealed reports whether s looks like a sealed value.
func Sealed(s string) bool { return strings.HasPrefix(s, Prefix) }

// Open decrypts a value Seal made with the same aad. Errors: ErrWrongKey
// for a value sealed under another node key; another error for anything
// else that does not open (damaged, or bound to another aad).
func (k *Key) Open(sealed string, aad []byte) ([]byte, error) {
	rest, ok := strings.CutPrefix(sealed, Prefix)
	if !ok {
		return nil, errors.New("open: not a sealed value")
	}
	buf, err := base64.RawStdEncoding.DecodeString(rest)
	if err != nil {
		return nil, errors.New("open: damaged sealed value")
	}
	ns := k.aead.NonceSize()
	if len(buf) < len(k.id)+ns+k.aead.Overhead() {
		return nil, errors.New("open: damaged sealed value")
	}
	if !bytes.Equal(buf[:len(k.id)], k.id[:]) {
		return nil, ErrWrongKey
	}
	nonce := buf[len(k.id) : len(k.id)+ns]
	plain, err := k.aead.Open(nil, nonce, buf[len(k.id)+ns:], aad)
	if err != nil {
		return nil, errors.New("open: damaged sealed value, or sealed for another place")
	}
	return plain, nil
}
