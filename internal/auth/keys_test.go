package auth

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/seal"
	"github.com/nimbus-serverless/nimbus/internal/store"
	"github.com/nimbus-serverless/nimbus/internal/store/mem"
)

func TestKeys(t *testing.T) {
	defer goleak.VerifyNone(t)
	kv := mem.NewKV()
	sk, _ := seal.Parse(seal.Generate())
	k := openKeys(t, kv, sk)
	defer k.Close(t.Context())

	admin, err := k.Create(t.Context(), "admin", Admin, "")
	if err != nil {
		t.Fatal(err)
	}
	if admin.SecretAccessKey == "" || !strings.HasPrefix(admin.AccessKeyID, "NIMB") || len(admin.AccessKeyID) != 20 {
		t.Fatalf("new key %+v", admin)
	}
	// The store holds the secret sealed, never in clear.
	e, err := kv.Get(t.Context(), "admin")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(e.Value), admin.SecretAccessKey) || !strings.Contains(string(e.Value), seal.Prefix) {
		t.Fatalf("stored key %s holds its secret in clear", e.Value)
	}
	if secret, p, ok := k.Lookup(admin.AccessKeyID); !ok || secret != admin.SecretAccessKey || p.Role != Admin || p.Name != "admin" {
		t.Fatalf("Lookup = %q %+v %v", secret, p, ok)
	}
	for _, bad := range []struct {
		name, glob string
		role       Role
	}{
		{"", "*", Developer}, {"has space", "*", Developer}, {"x", "*", "root"}, {"x", "[", Developer}, {"x", "team-*", Admin},
	} {
		if _, err := k.Create(t.Context(), bad.name, bad.role, bad.glob); !errors.Is(err, nimbus.ErrInvalid) {
			t.Errorf("Create(%q, %q, %q) = %v, want ErrInvalid", bad.name, bad.role, bad.glob, err)
		}
	}
	if _, err := k.Create(t.Context(), "admin", Developer, "*"); !errors.Is(err, nimbus.ErrConflict) {
		t.Fatalf("second key named admin: %v", err)
	}
	dev, err := k.Create(t.Context(), "dev", Developer, "team-a-*")
	if err != nil {
		t.Fatal(err)
	}
	rotated, err := k.Rotate(t.Context(), "dev")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, ok := k.Lookup(dev.AccessKeyID); ok {
		t.Fatal("the old pair still works after Rotate")
	}
	if _, p, ok := k.Lookup(rotated.AccessKeyID); !ok || p.Functions != "team-a-*" {
		t.Fatalf("rotated key: %+v %v", p, ok)
	}
	if err := k.Delete(t.Context(), "admin"); !errors.Is(err, nimbus.ErrConflict) {
		t.Fatalf("deleting the last admin key: %v", err)
	}
	if err := k.Delete(t.Context(), "nope"); !errors.Is(err, nimbus.ErrNotFound) {
		t.Fatalf("deleting a missing key: %v", err)
	}
	if err := k.Delete(t.Context(), "dev"); err != nil {
		t.Fatal(err)
	}
	if _, _, ok := k.Lookup(rotated.AccessKeyID); ok {
		t.Fatal("a deleted key still works")
	}

	// Another node following the same bucket sees the changes, and one
	// with another node key refuses to start.
	k2 := openKeys(t, kv, sk)
	defer k2.Close(t.Context())
	late, err := k.Create(t.Context(), "late", Invoker, "x")
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, _, ok := k2.Lookup(late.AccessKeyID); ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("another node never saw the new key")
		}
		time.Sleep(10 * time.Millisecond)
	}
	other, _ := seal.Parse(seal.Generate())
	if _, err := OpenKeys(t.Context(), kv, other, nil); err == nil || !strings.Contains(err.Error(), "--node-key") {
		t.Fatalf("open under another node key: %v", err)
	}
}

func TestAllow(t *testing.T) {
	dev := Principal{Name: "d", Role: Developer, Functions: "team-a-*"}
	inv := Principal{Name: "i", Role: Invoker, Functions: "team-a-*"}
	adm := Principal{Name: "a", Role: Admin, Functions: "*"}
	cases := []struct {
		p      Principal
		access Access
		fn     string
		ok     bool
	}{
		{adm, Administer, "", true},
		{adm, Manage, "team-b-x", true},
		{dev, Manage, "team-a-x", true},
		{dev, Manage, "arn:aws:lambda:us-east-1:000000000000:function:team-a-x:prod", true},
		{dev, Manage, "team-b-x", false},
		{dev, Read, "", true},
		{dev, Invoke, "team-b-x", false},
		{dev, Administer, "", false},
		{inv, Invoke, "team-a-x", true},
		{inv, Invoke, "team-a-x:1", true},
		{inv, Invoke, "team-b-x", false},
		{inv, Read, "team-a-x", false},
		{inv, Manage, "team-a-x", false},
		{inv, Read, "", false},
		{inv, Invoke, "", false},
	}
	for _, c := range cases {
		err := c.p.Allow(c.access, c.fn, "op")
		if (err == nil) != c.ok {
			t.Errorf("%s %d on %q: %v, want allowed=%v", c.p.Role, c.access, c.fn, err, c.ok)
		}
		if err != nil {
			var ae *Error
			if !errors.As(err, &ae) || ae.Type != "AccessDeniedException" || ae.Status != 403 {
				t.Errorf("denial %v is not a 403 AccessDeniedException", err)
			}
		}
	}
}

// deafKV is a bucket whose watch never delivers: the changes of other
// nodes do not reach the Keys following it (a member whose copy of the
// bucket is behind).
type deafKV struct{ store.KV }

func (deafKV) Watch(ctx context.Context) (<-chan store.Entry, error) {
	ch := make(chan store.Entry)
	context.AfterFunc(ctx, func() { close(ch) })
	return ch, nil
}

// TestKeysBehind: while the keys are behind, a key made elsewhere that
// the watch has not brought is found by reading the bucket again; once
// caught up, an unknown id is refused without a read.
func TestKeysBehind(t *testing.T) {
	defer goleak.VerifyNone(t)
	kv := mem.NewKV()
	sk, _ := seal.Parse(seal.Generate())
	other := openKeys(t, kv, sk)
	defer other.Close(t.Context())
	k := openKeys(t, deafKV{kv}, sk)
	defer k.Close(t.Context())
	fresh, err := other.Create(t.Context(), "fresh", Invoker, "*")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, ok := k.Lookup(fresh.AccessKeyID); ok {
		t.Fatal("a key found without the watch nor a read: the test shows nothing")
	}
	k.SetBehind(true)
	if secret, p, ok := k.Lookup(fresh.AccessKeyID); !ok || secret != fresh.SecretAccessKey || p.Name != "fresh" {
		t.Fatalf("behind: Lookup of a key made elsewhere = %q %+v %v", secret, p, ok)
	}
	k.SetBehind(false)
	later, err := other.Create(t.Context(), "later", Invoker, "*")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, ok := k.Lookup(later.AccessKeyID); ok {
		t.Fatal("caught up: an id unknown to the keys in memory was read from the store")
	}
	if err := k.Reload(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, _, ok := k.Lookup(later.AccessKeyID); !ok {
		t.Fatal("Reload did not read the key")
	}
}

// staleKV is a bucket whose reads (Keys, Get) answer as they did at
// snapshot time once frozen: a read of the whole bucket that began before
// changes the watch then applied.
type staleKV struct {
	store.KV
	frozen map[string]store.Entry // nil: reads are current
}

func (s *staleKV) freeze(ctx context.Context) error {
	names, err := s.KV.Keys(ctx)
	if err != nil {
		return err
	}
	s.frozen = map[string]store.Entry{}
	for _, n := range names {
		if s.frozen[n], err = s.KV.Get(ctx, n); err != nil {
			return err
		}
	}
	return nil
}

func (s *staleKV) Keys(ctx context.Context) ([]string, error) {
	if s.frozen == nil {
		return s.KV.Keys(ctx)
	}
	var out []string
	for n := range s.frozen {
		out = append(out, n)
	}
	return out, nil
}

func (s *staleKV) Get(ctx context.Context, key string) (store.Entry, error) {
	if s.frozen == nil {
		return s.KV.Get(ctx, key)
	}
	if e, ok := s.frozen[key]; ok {
		return e, nil
	}
	return store.Entry{}, nimbus.ErrNotFound
}

// TestKeysReloadKeepsNewer: a read of the whole bucket older than what the
// watch applied does not undo it: a key deleted (revoked) elsewhere stays
// refused, a key rotated elsewhere keeps its new secret only.
func TestKeysReloadKeepsNewer(t *testing.T) {
	defer goleak.VerifyNone(t)
	kv := mem.NewKV()
	sk, _ := seal.Parse(seal.Generate())
	other := openKeys(t, kv, sk)
	defer other.Close(t.Context())
	if _, err := other.Create(t.Context(), "admin", Admin, ""); err != nil {
		t.Fatal(err)
	}
	revoked, err := other.Create(t.Context(), "revoked", Invoker, "*")
	if err != nil {
		t.Fatal(err)
	}
	rotated, err := other.Create(t.Context(), "rotated", Invoker, "*")
	if err != nil {
		t.Fatal(err)
	}
	stale := &staleKV{KV: kv}
	k := openKeys(t, stale, sk)
	defer k.Close(t.Context())
	if err := stale.freeze(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := other.Delete(t.Context(), "revoked"); err != nil {
		t.Fatal(err)
	}
	newer, err := other.Rotate(t.Context(), "rotated")
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, _, found := k.Lookup(revoked.AccessKeyID)
		_, _, fresh := k.Lookup(newer.AccessKeyID)
		if !found && fresh {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the watch did not bring the deletion and the rotation")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := k.Reload(t.Context()); err != nil { // reads the bucket as it was before both
		t.Fatal(err)
	}
	if _, _, ok := k.Lookup(revoked.AccessKeyID); ok {
		t.Error("a reload older than the deletion brought a revoked key back")
	}
	if _, _, ok := k.Lookup(rotated.AccessKeyID); ok {
		t.Error("a reload older than the rotation brought the old access key id back")
	}
	if _, _, ok := k.Lookup(newer.AccessKeyID); !ok {
		t.Error("a reload older than the rotation lost the new access key id")
	}
}

// openKeys opens the keys of kv under sk, or ends the test. The caller
// closes them (before its goleak check).
func openKeys(t *testing.T, kv store.KV, sk *seal.Key) *Keys {
	t.Helper()
	k, err := OpenKeys(t.Context(), kv, sk, nil)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// laggingKV is a member's own copy of a bucket, behind: while lagging, its
// reads lack the key hide, and its watch never delivers.
type laggingKV struct {
	deafKV
	hide    string
	lagging atomic.Bool
}

func (l *laggingKV) Keys(ctx context.Context) ([]string, error) {
	names, err := l.deafKV.Keys(ctx)
	if l.lagging.Load() {
		names = slices.DeleteFunc(names, func(n string) bool { return n == l.hide })
	}
	return names, err
}

func (l *laggingKV) Get(ctx context.Context, key string) (store.Entry, error) {
	if l.lagging.Load() && key == l.hide {
		return store.Entry{}, nimbus.ErrNotFound
	}
	return l.deafKV.Get(ctx, key)
}

// TestKeysBehindStaleRead: while the keys are behind, a key that even a
// read of the bucket does not show (the read answered from this member's
// own copy, still behind) is not refused: the Lookup waits for the
// catch-up, which reads the keys again, and then finds it. A key that the
// catch-up does not bring in time is refused after catchUpWait.
func TestKeysBehindStaleRead(t *testing.T) {
	defer goleak.VerifyNone(t)
	kv := mem.NewKV()
	sk, _ := seal.Parse(seal.Generate())
	other := openKeys(t, kv, sk)
	defer other.Close(t.Context())
	lag := &laggingKV{deafKV: deafKV{kv}, hide: "fresh"}
	lag.lagging.Store(true)
	k := openKeys(t, lag, sk)
	defer k.Close(t.Context())
	fresh, err := other.Create(t.Context(), "fresh", Invoker, "*")
	if err != nil {
		t.Fatal(err)
	}
	k.SetBehind(true)

	const caughtUpAfter = 300 * time.Millisecond
	done := make(chan struct{})
	go func() { // the catch-up: the copy catches up, the keys are read again
		defer close(done)
		time.Sleep(caughtUpAfter)
		lag.lagging.Store(false)
		if err := k.Reload(context.Background()); err != nil {
			t.Error(err)
		}
		k.SetBehind(false)
	}()
	began := time.Now()
	secret, p, ok := k.Lookup(fresh.AccessKeyID)
	if !ok || secret != fresh.SecretAccessKey || p.Name != "fresh" {
		t.Fatalf("behind, stale read: Lookup of a key made elsewhere = %q %+v %v", secret, p, ok)
	}
	if d := time.Since(began); d < caughtUpAfter {
		t.Errorf("Lookup answered after %s, before the catch-up (%s): the stale read showed the key", d, caughtUpAfter)
	}
	<-done

	// Behind again, and the catch-up does not come: refused after
	// catchUpWait.
	old := catchUpWait
	catchUpWait = 200 * time.Millisecond
	defer func() { catchUpWait = old }()
	lag.hide = "" // set while no Lookup runs
	k.SetBehind(true)
	began = time.Now()
	if _, _, ok := k.Lookup("NIMBNOSUCHKEY0000000"); ok {
		t.Fatal("an unknown id was found")
	}
	if d := time.Since(began); d < catchUpWait || d > catchUpWait+reloadTimeout {
		t.Errorf("an unknown id while behind was refused after %s, want after catchUpWait (%s)", d, catchUpWait)
	}
	k.SetBehind(false)
	k.SetBehind(false) // twice: no double close
}
