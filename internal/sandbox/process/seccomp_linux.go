package process

import (
	"fmt"
	"runtime"
	"unsafe"

	seccomp "github.com/elastic/go-seccomp-bpf"
	"github.com/elastic/go-seccomp-bpf/arch"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// The seccomp filter every instance runs under, modelled on Docker's
// default profile: the system calls that administer the kernel, make or
// join namespaces, mount, look into other processes or widen the kernel's
// attack surface are refused with EPERM; everything else is allowed (the
// capabilities an instance lacks refuse much of what is left). Unlike
// Docker's allow list, this is a deny list: runtimes keep every new system
// call they may need, and what is denied is what a function has no use for.

// deniedSyscalls are refused with EPERM, where the architecture has them.
var deniedSyscalls = []string{
	// Mounts and the root.
	"mount", "umount", "umount2", "pivot_root", "chroot",
	"fsopen", "fsconfig", "fsmount", "fspick", "move_mount", "open_tree", "mount_setattr",
	// Namespaces.
	"unshare", "setns",
	// Other processes.
	"ptrace", "process_vm_readv", "process_vm_writev", "kcmp", "pidfd_getfd", "process_madvise",
	"move_pages", "migrate_pages",
	// The kernel itself.
	"bpf", "init_module", "finit_module", "delete_module", "create_module", "get_kernel_syms", "query_module",
	"kexec_load", "kexec_file_load", "reboot", "swapon", "swapoff", "syslog", "acct",
	"quotactl", "quotactl_fd", "lookup_dcookie", "nfsservctl", "sysfs", "_sysctl", "ustat", "uselib", "vhangup",
	"sethostname", "setdomainname",
	// Keys.
	"keyctl", "add_key", "request_key",
	// Kernel attack surface a function does not need.
	"perf_event_open", "userfaultfd", "fanotify_init", "io_uring_setup", "io_uring_enter", "io_uring_register",
	"open_by_handle_at", "name_to_handle_at",
	// Hardware and the clock.
	"iopl", "ioperm", "vm86", "vm86old", "modify_ldt",
	"settimeofday", "stime", "clock_settime", "clock_settime64", "clock_adjtime", "clock_adjtime64",
}

// nsCloneFlags are the clone flags that make namespaces: clone with any of
// them is refused.
const nsCloneFlags = unix.CLONE_NEWNS | unix.CLONE_NEWUTS | unix.CLONE_NEWIPC | unix.CLONE_NEWUSER |
	unix.CLONE_NEWPID | unix.CLONE_NEWNET | unix.CLONE_NEWCGROUP

// personalities are the personality(2) values allowed, as Docker allows
// them: Linux, 32-bit Linux, UNAME26 of either, and the query.
var personalities = []uint64{0x0, 0x8, 0x20000, 0x20008, 0xffffffff}

const (
	retEPERM  = seccomp.ActionErrno | seccomp.Action(unix.EPERM)
	retENOSYS = seccomp.ActionErrno | seccomp.Action(unix.ENOSYS)
)

// seccompPolicy is the filter's policy for the architecture info.
func seccompPolicy(info *arch.Info) seccomp.Policy {
	var names []string
	for _, n := range deniedSyscalls {
		if _, ok := info.SyscallNames[n]; ok {
			names = append(names, n)
		}
	}
	notAllowed := make(seccomp.ArgumentConditions, 0, len(personalities))
	for _, v := range personalities {
		notAllowed = append(notAllowed, seccomp.Condition{Argument: 0, Operation: seccomp.NotEqual, Value: v})
	}
	cloneFlags := 0 // the flags argument of clone (second on s390x)
	if runtime.GOARCH == "s390x" {
		cloneFlags = 1
	}
	groups := []seccomp.SyscallGroup{
		{Names: names, Action: retEPERM},
		{Action: retEPERM, NamesWithCondtions: []seccomp.NameWithConditions{
			{Name: "clone", Conditions: seccomp.ArgumentConditions{
				{Argument: uint32(cloneFlags), Operation: seccomp.BitsSet, Value: nsCloneFlags}}},
			{Name: "personality", Conditions: notAllowed},
		}},
	}
	// clone3 passes its flags in memory, where a filter cannot read them:
	// ENOSYS makes the C library fall back to clone, which is checked.
	if _, ok := info.SyscallNames["clone3"]; ok {
		groups = append(groups, seccomp.SyscallGroup{Names: []string{"clone3"}, Action: retENOSYS})
	}
	return seccomp.Policy{DefaultAction: seccomp.ActionAllow, Syscalls: groups}
}

// seccompProgram returns the filter for the architecture info. The
// policy's own check of the architecture lets another ABI's calls through
// to the default action (allow); the filter refuses them first, so that a
// 64-bit process cannot reach the denied calls by their 32-bit numbers
// (int 0x80).
func seccompProgram(info *arch.Info) ([]bpf.Instruction, error) {
	policy := seccompPolicy(info)
	insts, err := policy.Assemble()
	if err != nil {
		return nil, err
	}
	guard := []bpf.Instruction{
		bpf.LoadAbsolute{Off: 4, Size: 4}, // seccomp_data.arch
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: uint32(info.ID), SkipTrue: 1},
		bpf.RetConstant{Val: uint32(retENOSYS)},
	}
	return append(guard, insts...), nil
}

// buildSeccomp assembles the filter for this architecture.
func buildSeccomp() ([]unix.SockFilter, error) {
	info, err := arch.GetInfo("")
	if err != nil {
		return nil, err
	}
	insts, err := seccompProgram(info)
	if err != nil {
		return nil, err
	}
	raw, err := bpf.Assemble(insts)
	if err != nil {
		return nil, err
	}
	prog := make([]unix.SockFilter, len(raw))
	for i, r := range raw {
		prog[i] = unix.SockFilter{Code: r.Op, Jt: r.Jt, Jf: r.Jf, K: r.K}
	}
	return prog, nil
}

// loadSeccomp installs prog on the calling thread, which must have
// no_new_privs (or CAP_SYS_ADMIN); the exec that follows keeps it.
func loadSeccomp(prog []unix.SockFilter) error {
	if len(prog) == 0 {
		return fmt.Errorf("empty filter")
	}
	fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	_, _, e := unix.RawSyscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, 0, uintptr(unsafe.Pointer(&fprog)))
	runtime.KeepAlive(prog)
	if e != 0 {
		return e
	}
	return nil
}
