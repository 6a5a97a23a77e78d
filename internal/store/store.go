// Package store defines the persistence Nimbus needs: revisioned key-value
// buckets for metadata and a content-addressed blob store for code packages.
// internal/store/nats implements both on NATS JetStream, embedded or remote;
// callers see only these interfaces.
package store

import (
	"context"
	"io"
	"strings"
	"time"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/lazyre"
)

// Entry is a value and the revision it was written at.
type Entry struct {
	Key      string
	Value    []byte
	Revision uint64
	// Deleted marks a deletion (in a Watch stream only).
	Deleted bool
}

// KV is a bucket of keys with revisioned values. Keys are non-empty strings
// of letters, digits and the characters "-_=.", as NATS KV allows.
type KV interface {
	// Get returns the current entry. Errors: nimbus.ErrNotFound.
	Get(ctx context.Context, key string) (Entry, error)
	// Create writes a key that must not exist. Errors: nimbus.ErrConflict.
	Create(ctx context.Context, key string, value []byte) (uint64, error)
	// Update writes a key whose current revision must be rev.
	// Errors: nimbus.ErrPreconditionFailed when it is not (or the key is gone).
	Update(ctx context.Context, key string, value []byte, rev uint64) (uint64, error)
	// Put writes a key unconditionally.
	Put(ctx context.Context, key string, value []byte) (uint64, error)
	// Delete removes a key. Errors: nimbus.ErrNotFound.
	Delete(ctx context.Context, key string) error
	// Keys lists the keys, sorted.
	Keys(ctx context.Context) ([]string, error)
	// Watch streams the changes made to the bucket after it was called
	// (writes, and deletions with Deleted set), in revision order, until ctx
	// ends; then the channel is closed. A change may be skipped when a later
	// change of the same key supersedes it before delivery, but the latest
	// change of every key is always delivered.
	Watch(ctx context.Context) (<-chan Entry, error)
}

// Blobs is a content-addressed blob store. A blob's name is the lowercase hex
// SHA-256 of its content.
type Blobs interface {
	// Put stores the content read from r and returns its digest and size.
	// Storing a blob that exists already is not an error.
	Put(ctx context.Context, r io.Reader) (digest string, size int64, err error)
	// Get opens a blob. Errors: nimbus.ErrNotFound.
	Get(ctx context.Context, digest string) (io.ReadCloser, error)
	// Delete removes a blob. Errors: nimbus.ErrNotFound.
	Delete(ctx context.Context, digest string) error
	// List describes every blob, in no particular order.
	List(ctx context.Context) ([]BlobInfo, error)
}

// BlobInfo describes a stored blob.
type BlobInfo struct {
	Digest string
	Size   int64
	// Modified is when the blob was stored (a Put of content that exists
	// already does not change it).
	Modified time.Time
}

// Store is the set of buckets Nimbus uses.
type Store interface {
	// KV opens (creating it if needed) the named bucket.
	KV(ctx context.Context, bucket string) (KV, error)
	// Blobs returns the code package store.
	Blobs() Blobs
	// Close releases connections and, for an embedded server, shuts it
	// down after flushing.
	Close(ctx context.Context) error
}

// keyChars matches the characters of a key: the NATS KV key characters
// without "/" (which KV does not promise).
var keyChars = lazyre.New(`^[-_=.a-zA-Z0-9]+$`)

// CheckKey reports whether key is a valid KV key, with an error wrapping
// nimbus.ErrInvalid. Keys are NATS subject tokens joined by ".", so a key
// may not start or end with "." or hold "..". Every KV implementation
// checks its keys with it.
func CheckKey(key string) error {
	if !keyChars().MatchString(key) || key[0] == '.' || key[len(key)-1] == '.' || strings.Contains(key, "..") {
		return nimbus.Invalidf("invalid key %q: use letters, digits and \"-_=.\", with no leading, trailing or double \".\"", key)
	}
	return nil
}
