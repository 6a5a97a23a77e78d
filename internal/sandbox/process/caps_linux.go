package process

import (
	"errors"

	"golang.org/x/sys/unix"
)

// dropBoundingSet removes every capability from the calling thread's
// bounding set, so that nothing it execs can gain one (a set-uid-root
// binary, a binary with file capabilities, or an exec as uid 0). Only a
// thread with CAP_SETPCAP may: without it (Nimbus not run as root) the set
// is left as it is, and no_new_privs alone keeps those binaries powerless.
func dropBoundingSet() error {
	for c := 0; c <= 63; c++ {
		err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(c), 0, 0, 0)
		switch {
		case err == nil:
		case err == unix.EINVAL: // past the last capability the kernel knows
			return nil
		case err == unix.EPERM && !hasCapability(unix.CAP_SETPCAP):
			return nil
		default:
			return op("drop bounding capabilities", err)
		}
	}
	return nil
}

// clearCapabilities empties the calling thread's effective, permitted and
// inheritable capability sets (a change from uid 0 to another uid empties
// the first two already; a helper that stays uid 0, without a uid per
// instance, keeps them until here) and checks that they are empty.
func clearCapabilities() error {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capset(&hdr, &data[0]); err != nil {
		return op("clear capabilities", err)
	}
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return op("check capabilities", err)
	}
	for _, d := range data {
		if d.Effective|d.Permitted|d.Inheritable != 0 {
			return op("clear capabilities", errors.New("some are left"))
		}
	}
	return nil
}

// hasCapability reports whether the calling thread has capability c in
// its effective set.
func hasCapability(c int) bool {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return false
	}
	return data[c/32].Effective&(1<<(c%32)) != 0
}
