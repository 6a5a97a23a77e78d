// Package codepkg validates and unpacks function code packages: zip archives
// as AWS Lambda accepts them. Validate decompresses every entry, counting real
// sizes and checking CRCs, and rejects unsafe paths, escaping symlinks and zip
// bombs; Unpack writes a package read-only and atomically; Zip packages a
// directory; Cache keeps a node's unpacked code, one directory per digest.
package codepkg

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
)

// Limits bound what a code package may hold. A zero or negative field means
// the default (see DefaultLimits).
type Limits struct {
	// MaxZipped is the largest archive accepted, in bytes.
	MaxZipped int64
	// MaxUnzipped is the largest total uncompressed size, in bytes.
	MaxUnzipped int64
	// MaxFiles is the most entries (files, directories and symlinks).
	MaxFiles int
	// MaxRatio is the zip-bomb guard: the largest uncompressed/compressed
	// ratio of one entry, and of the whole archive. It applies only to sizes
	// over 1 MiB, so small, very compressible files are always accepted.
	MaxRatio int64
}

// Default limits: Lambda's zipped upload limit and unzipped limit.
const (
	DefaultMaxZipped   = 50 << 20  // 52428800
	DefaultMaxUnzipped = 250 << 20 // 262144000
	DefaultMaxFiles    = 20000
	DefaultMaxRatio    = 200
)

// ratioFloor is the size up to which MaxRatio does not apply.
const ratioFloor = 1 << 20

// DefaultLimits returns Lambda's limits and a ratio guard of 200.
func DefaultLimits() Limits {
	return Limits{
		MaxZipped:   DefaultMaxZipped,
		MaxUnzipped: DefaultMaxUnzipped,
		MaxFiles:    DefaultMaxFiles,
		MaxRatio:    DefaultMaxRatio,
	}
}

func (l Limits) withDefaults() Limits {
	d := DefaultLimits()
	if l.MaxZipped <= 0 {
		l.MaxZipped = d.MaxZipped
	}
	if l.MaxUnzipped <= 0 {
		l.MaxUnzipped = d.MaxUnzipped
	}
	if l.MaxFiles <= 0 {
		l.MaxFiles = d.MaxFiles
	}
	if l.MaxRatio <= 0 {
		l.MaxRatio = d.MaxRatio
	}
	return l
}

// Digest returns the lowercase hex SHA-256 of b (the name of its blob and of
// its cache directory) and the same sum as Lambda shows it in CodeSha256
// (standard base64 of the raw sum).
func Digest(b []byte) (hexDigest, lambdaSHA string) {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:]), base64.StdEncoding.EncodeToString(sum[:])
}

// validDigest reports whether s is 64 lowercase hex characters.
func validDigest(s string) bool {
	if len(s) != 2*sha256.Size {
		return false
	}
	for i := range len(s) {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}
