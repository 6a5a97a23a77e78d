package auth

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/lazyre"
	"github.com/nimbus-serverless/nimbus/internal/seal"
	"github.com/nimbus-serverless/nimbus/internal/store"
)

// Key is an access key as the API shows it. SecretAccessKey is set only in
// the answer that creates or rotates the key: it is shown once.
type Key struct {
	Name            string    `json:"Name"`
	AccessKeyID     string    `json:"AccessKeyId"`
	SecretAccessKey string    `json:"SecretAccessKey,omitempty"`
	Role            Role      `json:"Role"`
	Functions       string    `json:"Functions"`
	Created         time.Time `json:"Created"`
	Rotated         time.Time `json:"Rotated,omitzero"`
}

// record is a key as stored: its secret sealed under the node key, bound
// to its access key id.
type record struct {
	Key
	SealedSecret string `json:"SealedSecret"`
}

// known is a key in memory, its secret opened.
type known struct {
	key    Key
	secret string
	rev    uint64 // the bucket's revision of the key (0: not known)
}

// Keys is the catalogue of access keys, in a KV bucket shared by the nodes,
// held in memory (every node follows the bucket) so that a request's lookup
// touches no store.
type Keys struct {
	kv   store.KV
	seal *seal.Key
	log  *slog.Logger

	mu     sync.RWMutex
	byName map[string]known
	byID   map[string]string // access key id -> name
	// gone holds the revisions of the deletions applied, so that a read
	// of the whole bucket that began before one does not undo it.
	gone map[string]uint64

	cancel context.CancelFunc
	done   chan struct{}

	// behind is set while the node's copy of the bucket may lack keys
	// (SetBehind); a Lookup that misses then reads the bucket again, at
	// most once per reloadEvery.
	behind     atomic.Bool
	reloadMu   sync.Mutex
	lastReload time.Time
	// caughtUp is closed by SetBehind(false) (nil until SetBehind(true)):
	// a Lookup that a read of the bucket did not satisfy waits for it.
	caughtUpMu sync.Mutex
	caughtUp   chan struct{}
}

// reloadEvery is how often, at most, Lookups that miss while the keys are
// behind read the bucket again; reloadTimeout bounds one such read.
const (
	reloadEvery   = 500 * time.Millisecond
	reloadTimeout = 5 * time.Second
)

// catchUpWait bounds how long a Lookup that misses while the keys are
// behind, even after reading the bucket again, waits for the catch-up (a
// variable for tests).
var catchUpWait = 5 * time.Second

// SetBehind says whether the keys in memory may lack keys of the bucket
// (a cluster member that restarted, until its copy of the bucket has
// caught up): while they may, a Lookup that misses reads the bucket again
// before it answers, and if that read lacks the key too (it may have been
// answered from this member's own copy, still behind), waits for the
// catch-up, up to catchUpWait. The caller reads the keys again (Reload)
// before it says they are no longer behind.
func (k *Keys) SetBehind(b bool) {
	k.caughtUpMu.Lock()
	defer k.caughtUpMu.Unlock()
	switch {
	case b && (k.caughtUp == nil || !k.behind.Load()):
		k.caughtUp = make(chan struct{})
	case !b && k.caughtUp != nil && k.behind.Load():
		close(k.caughtUp)
	}
	k.behind.Store(b)
}

// waitCaughtUp waits until the keys are no longer behind, or catchUpWait
// has passed; it reports whether they caught up.
func (k *Keys) waitCaughtUp() bool {
	k.caughtUpMu.Lock()
	ch := k.caughtUp
	behind := k.behind.Load()
	k.caughtUpMu.Unlock()
	if !behind || ch == nil {
		return true
	}
	t := time.NewTimer(catchUpWait)
	defer t.Stop()
	select {
	case <-ch:
		return true
	case <-t.C:
		return false
	}
}

// Reload reads every key from the bucket again.
func (k *Keys) Reload(ctx context.Context) error {
	k.reloadMu.Lock()
	defer k.reloadMu.Unlock()
	err := k.load(ctx)
	k.lastReload = time.Now()
	return err
}

// reloadMissing is Lookup's reading again of the bucket for a key id it
// did not find while the keys are behind; it reports whether it did read.
func (k *Keys) reloadMissing() bool {
	k.reloadMu.Lock()
	defer k.reloadMu.Unlock()
	if time.Since(k.lastReload) < reloadEvery {
		return true // a read that ended just now (maybe while this one waited for the lock) has it
	}
	ctx, cancel := context.WithTimeout(context.Background(), reloadTimeout)
	defer cancel()
	err := k.load(ctx)
	k.lastReload = time.Now()
	if err != nil {
		k.log.Warn("read access keys again for a key not found", nimbus.LogErr, err)
		return false
	}
	return true
}

var keyName = lazyre.New(`^[A-Za-z0-9_-]{1,64}$`)

// OpenKeys loads the keys in kv and follows its changes until Close.
func OpenKeys(ctx context.Context, kv store.KV, sealKey *seal.Key, log *slog.Logger) (*Keys, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	k := &Keys{kv: kv, seal: sealKey, log: log, done: make(chan struct{}),
		byName: map[string]known{}, byID: map[string]string{}, gone: map[string]uint64{}}
	wctx, cancel := context.WithCancel(context.Background())
	k.cancel = cancel
	// Watch before loading, so that no change falls between the two.
	ch, err := kv.Watch(wctx)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("watch keys: %w", err)
	}
	if err := k.load(ctx); err != nil {
		cancel()
		return nil, err
	}
	go k.follow(wctx, ch)
	return k, nil
}

func (k *Keys) load(ctx context.Context) error {
	names, err := k.kv.Keys(ctx)
	if err != nil {
		return fmt.Errorf("list keys: %w", err)
	}
	fresh := map[string]known{}
	for _, name := range names {
		e, err := k.kv.Get(ctx, name)
		if errors.Is(err, nimbus.ErrNotFound) {
			continue
		}
		if err != nil {
			return fmt.Errorf("load key %s: %w", name, err)
		}
		kn, err := k.decode(e.Value)
		if err != nil {
			return fmt.Errorf("load key %s: %w", name, err)
		}
		kn.rev = e.Revision
		fresh[name] = kn
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	// What the watch applied meanwhile is as new or newer: a key it
	// changed, made or deleted after this read began is not put back as
	// the read saw it (a revoked key must stay revoked). A deletion the
	// read missed reaches the watch in turn.
	for name, kn := range fresh {
		if cur, ok := k.byName[name]; ok && (cur.rev == 0 || cur.rev >= kn.rev) {
			continue
		}
		if rev, ok := k.gone[name]; ok && rev >= kn.rev {
			continue
		}
		if cur, ok := k.byName[name]; ok {
			delete(k.byID, cur.key.AccessKeyID)
		}
		k.byName[name], k.byID[kn.key.AccessKeyID] = kn, name
	}
	return nil
}

func (k *Keys) decode(b []byte) (known, error) {
	var rec record
	if err := json.Unmarshal(b, &rec); err != nil {
		return known{}, fmt.Errorf("damaged record: %w", err)
	}
	secret, err := k.seal.Open(rec.SealedSecret, aad(rec.AccessKeyID))
	if errors.Is(err, seal.ErrWrongKey) {
		return known{}, fmt.Errorf("the secret of access key %s was %w: every node of a cluster needs the same --node-key (or NIMBUS_NODE_KEY)", rec.Name, err)
	}
	if err != nil {
		return known{}, fmt.Errorf("open secret of key %s: %w", rec.Name, err)
	}
	rec.SecretAccessKey = ""
	return known{key: rec.Key, secret: string(secret)}, nil
}

func aad(id string) []byte { return []byte("nimbus access key " + id) }

// follow applies the bucket's changes; when the watch ends early (the store
// restarted) it watches again and reloads.
func (k *Keys) follow(ctx context.Context, ch <-chan store.Entry) {
	defer close(k.done)
	for {
		for e := range ch {
			k.apply(e)
		}
		for ctx.Err() == nil {
			var err error
			if ch, err = k.kv.Watch(ctx); err == nil {
				if err = k.load(ctx); err == nil {
					break
				}
			}
			k.log.Warn("follow access keys", nimbus.LogErr, err)
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
		}
		if ctx.Err() != nil {
			return
		}
	}
}

// A change older than the one held (a revision below it) is ignored: the
// watch may bring a change after this node's own newer one. A deletion
// leaves a tombstone that load respects; this node's own deletion
// (revision 0) is the newest there is until the key is made again.
func (k *Keys) apply(e store.Entry) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if old, ok := k.byName[e.Key]; ok {
		if e.Revision != 0 && old.rev > e.Revision {
			return
		}
		delete(k.byID, old.key.AccessKeyID)
		delete(k.byName, e.Key)
	}
	if e.Deleted {
		rev := e.Revision
		if rev == 0 {
			rev = math.MaxUint64
		}
		k.gone[e.Key] = max(k.gone[e.Key], rev)
		return
	}
	if rev, ok := k.gone[e.Key]; ok && e.Revision != 0 && rev >= e.Revision && rev != math.MaxUint64 {
		return // deleted after this change
	}
	delete(k.gone, e.Key)
	kn, err := k.decode(e.Value)
	if err != nil {
		k.log.Error("access key unusable", "key", e.Key, nimbus.LogErr, err)
		return
	}
	kn.rev = e.Revision
	k.byName[e.Key], k.byID[kn.key.AccessKeyID] = kn, e.Key
}

// Close stops following the bucket.
func (k *Keys) Close(context.Context) error {
	k.cancel()
	<-k.done
	return nil
}

// Lookup is a Secrets for the Verifier. While the keys are behind
// (SetBehind), an id not found is looked up again after reading the
// bucket and, if still not found, once the keys have caught up.
func (k *Keys) Lookup(id string) (string, Principal, bool) {
	secret, p, ok := k.lookup(id)
	if ok || !k.behind.Load() {
		return secret, p, ok
	}
	if k.reloadMissing() {
		if secret, p, ok = k.lookup(id); ok {
			return secret, p, ok
		}
	}
	if k.waitCaughtUp() {
		return k.lookup(id)
	}
	return secret, p, ok
}

func (k *Keys) lookup(id string) (string, Principal, bool) {
	k.mu.RLock()
	defer k.mu.RUnlock()
	name, ok := k.byID[id]
	if !ok {
		return "", Principal{}, false
	}
	kn := k.byName[name]
	return kn.secret, kn.key.principal(), true
}

func (key Key) principal() Principal {
	return Principal{Name: key.Name, AccessKeyID: key.AccessKeyID, Role: key.Role, Functions: key.Functions}
}

// Len is the number of keys.
func (k *Keys) Len() int {
	k.mu.RLock()
	defer k.mu.RUnlock()
	return len(k.byName)
}

// List returns the keys, by name, without secrets.
func (k *Keys) List() []Key {
	k.mu.RLock()
	out := make([]Key, 0, len(k.byName))
	for _, kn := range k.byName {
		out = append(out, kn.key)
	}
	k.mu.RUnlock()
	slices.SortFunc(out, func(a, b Key) int {
		if a.Name < b.Name {
			return -1
		}
		if a.Name > b.Name {
			return 1
		}
		return 0
	})
	return out
}

// Create issues a key. Errors: nimbus.ErrInvalid for a bad name, role or
// glob; nimbus.ErrConflict when the name is taken.
func (k *Keys) Create(ctx context.Context, name string, role Role, glob string) (Key, error) {
	if !keyName().MatchString(name) {
		return Key{}, fmt.Errorf("%w: key name must be 1 to 64 letters, digits, '-' or '_', not %q", nimbus.ErrInvalid, name)
	}
	if _, err := ParseRole(string(role)); err != nil {
		return Key{}, fmt.Errorf("%w: %v", nimbus.ErrInvalid, err)
	}
	if glob == "" {
		glob = "*"
	}
	if err := ValidGlob(glob); err != nil {
		return Key{}, fmt.Errorf("%w: %v", nimbus.ErrInvalid, err)
	}
	if role == Admin && glob != "*" {
		return Key{}, fmt.Errorf("%w: an admin key touches every function; --functions is for developer and invoker keys", nimbus.ErrInvalid)
	}
	key := Key{Name: name, Role: role, Functions: glob, Created: time.Now().UTC().Truncate(time.Second)}
	key.AccessKeyID, key.SecretAccessKey = newPair()
	b := k.encode(key)
	rev, err := k.kv.Create(ctx, name, b)
	if err != nil {
		if errors.Is(err, nimbus.ErrConflict) {
			return Key{}, fmt.Errorf("%w: a key named %s exists", nimbus.ErrConflict, name)
		}
		return Key{}, fmt.Errorf("store key: %w", err)
	}
	k.apply(store.Entry{Key: name, Value: b, Revision: rev})
	return key, nil
}

func (k *Keys) encode(key Key) []byte {
	rec := record{Key: key, SealedSecret: k.seal.Seal([]byte(key.SecretAccessKey), aad(key.AccessKeyID))}
	rec.SecretAccessKey = ""
	b, _ := json.Marshal(rec)
	return b
}

// newPair returns a new access key id ("NIMB" and 16 base32 characters,
// the shape of AWS's) and a 40-character secret.
func newPair() (id, secret string) {
	raw := make([]byte, 10)
	_, _ = rand.Read(raw)
	id = "NIMB" + base32.StdEncoding.EncodeToString(raw)
	sec := make([]byte, 30)
	_, _ = rand.Read(sec)
	return id, base64.StdEncoding.EncodeToString(sec)
}

// Rotate gives a key a new access key id and secret; the old pair stops
// working at once. Errors: nimbus.ErrNotFound.
func (k *Keys) Rotate(ctx context.Context, name string) (Key, error) {
	for {
		e, err := k.kv.Get(ctx, name)
		if err != nil {
			return Key{}, k.notFound(name, err)
		}
		kn, err := k.decode(e.Value)
		if err != nil {
			return Key{}, err
		}
		key := kn.key
		key.AccessKeyID, key.SecretAccessKey = newPair()
		key.Rotated = time.Now().UTC().Truncate(time.Second)
		b := k.encode(key)
		rev, err := k.kv.Update(ctx, name, b, e.Revision)
		if errors.Is(err, nimbus.ErrPreconditionFailed) {
			continue
		} else if err != nil {
			return Key{}, k.notFound(name, err)
		}
		k.apply(store.Entry{Key: name, Value: b, Revision: rev})
		return key, nil
	}
}

// Delete removes a key. Errors: nimbus.ErrNotFound; nimbus.ErrConflict for
// the last admin key (nobody could manage keys after it).
func (k *Keys) Delete(ctx context.Context, name string) error {
	k.mu.RLock()
	kn, ok := k.byName[name]
	admins := 0
	for _, o := range k.byName {
		if o.key.Role == Admin {
			admins++
		}
	}
	k.mu.RUnlock()
	if !ok {
		return fmt.Errorf("%w: no key named %s", nimbus.ErrNotFound, name)
	}
	if kn.key.Role == Admin && admins == 1 {
		return fmt.Errorf("%w: %s is the last admin key; create another admin key first", nimbus.ErrConflict, name)
	}
	if err := k.kv.Delete(ctx, name); err != nil {
		return k.notFound(name, err)
	}
	k.apply(store.Entry{Key: name, Deleted: true})
	return nil
}

func (k *Keys) notFound(name string, err error) error {
	if errors.Is(err, nimbus.ErrNotFound) || errors.Is(err, nimbus.ErrPreconditionFailed) {
		return fmt.Errorf("%w: no key named %s", nimbus.ErrNotFound, name)
	}
	return fmt.Errorf("key %s: %w", name, err)
}
