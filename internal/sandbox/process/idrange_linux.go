package process

import (
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// idRanges is how many ranges claimIDs tries after the configured one.
const idRanges = 256

// claimIDs takes an exclusive lock on a range of instance ids, so that two
// backends on one host (two nodes, or test binaries running in parallel)
// never give the same uid to two instances: cleaning up after an instance
// may kill every process of its uid. It tries cfg's range, then the ones
// after it, and moves cfg.UID and cfg.GID to the range it got. The lock
// lasts while the returned file is open.
func claimIDs(cfg *Config) (*os.File, error) {
	dir := lockDir()
	for k := range idRanges {
		shift := k * cfg.MaxInstances
		uid, gid := cfg.UID+shift, cfg.GID+shift
		if uid > maxID-cfg.MaxInstances || gid > maxID-cfg.MaxInstances {
			break
		}
		path := filepath.Join(dir, fmt.Sprintf("uids-%d-%d.lock", uid, cfg.MaxInstances))
		f, err := tryLock(path)
		if err != nil {
			return nil, fmt.Errorf("claim instance ids: %w", err)
		}
		if f == nil {
			continue // another backend has it
		}
		cfg.UID, cfg.GID = uid, gid
		return f, nil
	}
	return nil, fmt.Errorf("claim instance ids: the %d ranges of %d ids from uid %d are all in use", idRanges, cfg.MaxInstances, cfg.UID)
}

// lockDir is where backends keep the lock files of their claims.
func lockDir() string {
	dir := "/run/nimbus"
	if err := os.MkdirAll(dir, 0o755); err != nil {
		dir = os.TempDir()
	}
	return dir
}

// tryLock takes an exclusive lock on the file at path, made if need be, and
// returns it open, or nil if another process holds it.
func tryLock(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		return nil, nil
	}
	return f, nil
}

// claimLock claims the first of n numbered resources named what (a lock
// file <what>-<k>.lock each) that no other backend holds, and returns the
// lock, held while the file is open, and k.
func claimLock(what string, n int) (*os.File, int, error) {
	dir := lockDir()
	for k := range n {
		f, err := tryLock(filepath.Join(dir, fmt.Sprintf("%s-%d.lock", what, k)))
		if err != nil {
			return nil, 0, fmt.Errorf("claim %s: %w", what, err)
		}
		if f != nil {
			return f, k, nil
		}
	}
	return nil, 0, fmt.Errorf("claim %s: all %d are in use", what, n)
}
