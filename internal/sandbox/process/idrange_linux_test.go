package process

import "testing"

// TestClaimIDs: two backends on one host get disjoint uid ranges, and a
// range given up can be claimed again.
func TestClaimIDs(t *testing.T) {
	base := Config{UID: 3_000_000, GID: 3_000_000, MaxInstances: 16}
	a := base
	fa, err := claimIDs(&a)
	if err != nil {
		t.Fatal(err)
	}
	b := base
	fb, err := claimIDs(&b)
	if err != nil {
		t.Fatal(err)
	}
	defer fb.Close()
	if a.UID == b.UID || b.UID < a.UID+a.MaxInstances && a.UID < b.UID+b.MaxInstances {
		t.Errorf("ranges overlap: %d+%d and %d+%d", a.UID, a.MaxInstances, b.UID, b.MaxInstances)
	}
	if b.GID-b.UID != base.GID-base.UID {
		t.Errorf("gid range moved apart from the uid range: uid %d gid %d", b.UID, b.GID)
	}
	fa.Close()
	c := base
	fc, err := claimIDs(&c)
	if err != nil {
		t.Fatal(err)
	}
	defer fc.Close()
	if c.UID != a.UID {
		t.Errorf("after the first claim was given up, got range %d, want %d again", c.UID, a.UID)
	}
}
