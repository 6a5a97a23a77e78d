package process

import (
	"encoding/binary"
	"testing"

	seccomp "github.com/elastic/go-seccomp-bpf"
	"github.com/elastic/go-seccomp-bpf/arch"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// seccompData is the kernel's struct seccomp_data, laid out for
// bpf.VM: the VM loads words big-endian where the kernel loads them in
// the host's order, so each word is stored big-endian.
func seccompData(nr int, auditArch uint32, args ...uint64) []byte {
	native := make([]byte, 64)
	binary.NativeEndian.PutUint32(native[0:], uint32(nr))
	binary.NativeEndian.PutUint32(native[4:], auditArch)
	for i, a := range args {
		binary.NativeEndian.PutUint64(native[16+8*i:], a)
	}
	out := make([]byte, len(native))
	for o := 0; o < len(native); o += 4 {
		binary.BigEndian.PutUint32(out[o:], binary.NativeEndian.Uint32(native[o:]))
	}
	return out
}

// TestSeccompFilter runs the filter in a BPF interpreter: the denied calls
// get EPERM (clone3 ENOSYS), the allowed ones pass, clone and personality
// are judged by their arguments, and another ABI gets ENOSYS.
func TestSeccompFilter(t *testing.T) {
	info, err := arch.GetInfo("")
	if err != nil {
		t.Skip(err)
	}
	insts, err := seccompProgram(info)
	if err != nil {
		t.Fatal(err)
	}
	vm, err := bpf.NewVM(insts)
	if err != nil {
		t.Fatal(err)
	}
	nr := func(name string) int {
		n, ok := info.SyscallNames[name]
		if !ok {
			t.Fatalf("no system call %s on %s", name, info.Name)
		}
		return n
	}
	run := func(nr int, auditArch uint32, args ...uint64) seccomp.Action {
		got, err := vm.Run(seccompData(nr, auditArch, args...))
		if err != nil {
			t.Fatal(err)
		}
		return seccomp.Action(uint32(got))
	}
	allow, eperm, enosys := seccomp.ActionAllow, retEPERM, retENOSYS
	denied := 0
	for _, name := range deniedSyscalls {
		if n, ok := info.SyscallNames[name]; ok {
			denied++
			if got := run(n, uint32(info.ID)); got != eperm {
				t.Errorf("%s: action %#x, want EPERM", name, uint32(got))
			}
		}
	}
	if denied < 60 {
		t.Errorf("only %d denied system calls exist on %s", denied, info.Name)
	}
	tests := []struct {
		name string
		nr   int
		args []uint64
		want seccomp.Action
	}{
		{"read", nr("read"), nil, allow},
		{"execve", nr("execve"), nil, allow},
		{"seccomp", nr("seccomp"), nil, allow},
		{"clone for a thread", nr("clone"), []uint64{unix.CLONE_VM | unix.CLONE_FS | unix.CLONE_FILES | unix.CLONE_SIGHAND | unix.CLONE_THREAD}, allow},
		{"clone for fork", nr("clone"), []uint64{uint64(unix.SIGCHLD)}, allow},
		{"clone with CLONE_NEWUSER", nr("clone"), []uint64{unix.CLONE_NEWUSER | uint64(unix.SIGCHLD)}, eperm},
		{"clone with CLONE_NEWNET", nr("clone"), []uint64{unix.CLONE_NEWNET}, eperm},
		{"clone with CLONE_NEWCGROUP", nr("clone"), []uint64{unix.CLONE_NEWCGROUP}, eperm},
		{"clone3", nr("clone3"), nil, enosys},
		{"personality query", nr("personality"), []uint64{0xffffffff}, allow},
		{"personality linux", nr("personality"), []uint64{0}, allow},
		{"personality linux32", nr("personality"), []uint64{8}, allow},
		{"personality ADDR_NO_RANDOMIZE", nr("personality"), []uint64{0x0040000}, eperm},
		{"personality with high bits", nr("personality"), []uint64{1 << 32}, eperm},
	}
	for _, tt := range tests {
		if got := run(tt.nr, uint32(info.ID), tt.args...); got != tt.want {
			t.Errorf("%s: action %#x, want %#x", tt.name, uint32(got), uint32(tt.want))
		}
	}
	// Another ABI (i386 on x86_64, arm on arm64): refused whatever the call.
	other := arch.I386
	if info.ID == arch.I386.ID {
		other = arch.X86_64
	}
	for _, n := range []int{0, 3, 21, 172} { // read/restart, mount on i386, prctl...
		if got := run(n, uint32(other.ID)); got != enosys {
			t.Errorf("call %d of another ABI: action %#x, want ENOSYS", n, uint32(got))
		}
	}
	// The x32 ABI on x86_64 (numbers with bit 30): ENOSYS.
	if info.ID == arch.X86_64.ID {
		if got := run(nr("mount")|0x40000000, uint32(info.ID)); got != enosys {
			t.Errorf("x32 mount: action %#x, want ENOSYS", uint32(got))
		}
	}
}
