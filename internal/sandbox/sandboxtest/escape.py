"""Escapes tried from inside an instance by the sandbox conformance suite.

Each check runs in a child of its own and prints "name=allowed" or
"name=<errno name>". Arguments name the checks to run (all by default).
"""
import ctypes, errno, os, platform, signal, struct, sys, tempfile, time

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
NR = {
    "x86_64": dict(mount=165, umount2=166, pivot_root=155, unshare=272, setns=308, clone=56, clone3=435,
                   ptrace=101, process_vm_readv=310, init_module=175, finit_module=313, kexec_load=246,
                   bpf=321, keyctl=250, add_key=248, perf_event_open=298, userfaultfd=323, personality=135,
                   io_uring_setup=425, name_to_handle_at=303, open_by_handle_at=304, settimeofday=164, syslog=103),
    "aarch64": dict(mount=40, umount2=39, pivot_root=41, unshare=97, setns=268, clone=220, clone3=435,
                    ptrace=117, process_vm_readv=270, init_module=105, finit_module=273, kexec_load=104,
                    bpf=280, keyctl=219, add_key=217, perf_event_open=241, userfaultfd=282, personality=92,
                    io_uring_setup=425, name_to_handle_at=264, open_by_handle_at=265, settimeofday=170, syslog=116),
}[platform.machine()]

def sc(name, *args):
    ctypes.set_errno(0)
    r = libc.syscall(ctypes.c_long(NR[name]), *[ctypes.c_long(a) if isinstance(a, int) else a for a in args])
    return r, ctypes.get_errno()

def report(name, r, err):
    print("%s=%s" % (name, "allowed" if r >= 0 else errno.errorcode.get(err, str(err))), flush=True)

def child_exit(r):
    if r == 0:  # the child of a raw clone
        os._exit(0)
    if r > 0:
        os.waitpid(r, 0)

CLONE_NEWUSER, CLONE_NEWNS, SIGCHLD = 0x10000000, 0x20000, 17

def check(name, fn):
    """Runs fn in a child of its own, so that no check changes the next."""
    pid = os.fork()
    if pid:
        os.waitpid(pid, 0)
        return
    try:
        r, err = fn()
    except OSError as e:
        r, err = -1, e.errno
    report(name, r, err)
    os._exit(0)

def sleeper():
    pid = os.fork()
    if pid == 0:
        time.sleep(30)
        os._exit(0)
    return pid

def ptrace():
    pid = sleeper()
    r, err = sc("ptrace", 16, pid, 0, 0)  # PTRACE_ATTACH
    os.kill(pid, signal.SIGKILL); os.waitpid(pid, 0)
    return r, err

def vm_readv():
    pid = sleeper()
    buf = ctypes.create_string_buffer(8)
    local = (ctypes.c_void_p * 2)(ctypes.cast(buf, ctypes.c_void_p), 8)
    remote = (ctypes.c_void_p * 2)(ctypes.cast(buf, ctypes.c_void_p), 8)
    r, err = sc("process_vm_readv", pid, ctypes.byref(local), 1, ctypes.byref(remote), 1, 0)
    os.kill(pid, signal.SIGKILL); os.waitpid(pid, 0)
    return r, err

def clone(flags):
    r, err = sc("clone", flags | SIGCHLD, 0, 0, 0, 0)
    child_exit(r)
    return r, err

def clone3():
    args = struct.pack("QQQQQQQQ", 0, 0, 0, 0, SIGCHLD, 0, 0, 0)
    buf = ctypes.create_string_buffer(args)
    r, err = sc("clone3", buf, len(args))
    child_exit(r)
    return r, err

def bpf():
    attr = ctypes.create_string_buffer(struct.pack("IIII", 2, 4, 4, 1) + b"\0" * 112)  # an array map
    return sc("bpf", 0, attr, 128)

def perf():
    # software cpu-clock, disabled, exclude_kernel, exclude_hv
    attr = ctypes.create_string_buffer(struct.pack("IIQQQQQ", 1, 112, 0, 0, 0, 0, 1 | 1 << 5 | 1 << 6) + b"\0" * 64)
    r, err = sc("perf_event_open", attr, 0, -1, -1, 0)
    return r, err

def setns():
    fd = os.open("/proc/self/ns/uts", os.O_RDONLY)
    return sc("setns", fd, 0)

def finit_module():
    fd = os.open("/dev/null", os.O_RDONLY)
    return sc("finit_module", fd, ctypes.c_char_p(b""), 0)

def handle():
    h = ctypes.create_string_buffer(struct.pack("Ii", 128, 0) + b"\0" * 128)
    mnt = ctypes.c_int()
    return sc("name_to_handle_at", -100, ctypes.c_char_p(b"/"), h, ctypes.byref(mnt), 0)

# The file system checks act on a new empty directory of their own, and
# undo what they did, so that a sandbox that fails to refuse them harms
# nothing.
scratch = tempfile.mkdtemp().encode()

def mount():
    r, err = sc("mount", ctypes.c_char_p(b"none"), ctypes.c_char_p(scratch), ctypes.c_char_p(b"tmpfs"), 0, 0)
    if r >= 0:
        sc("umount2", ctypes.c_char_p(scratch), 2)
    return r, err

checks = {
    "mount": mount,
    "umount2": lambda: sc("umount2", ctypes.c_char_p(scratch), 2),
    "pivot_root": lambda: sc("pivot_root", ctypes.c_char_p(scratch), ctypes.c_char_p(scratch)),
    "unshare-user": lambda: sc("unshare", CLONE_NEWUSER),
    "unshare-mount": lambda: sc("unshare", CLONE_NEWNS),
    "clone-user": lambda: clone(CLONE_NEWUSER),
    "clone3": clone3,
    "setns": setns,
    "ptrace": ptrace,
    "process_vm_readv": vm_readv,
    "init_module": lambda: sc("init_module", ctypes.c_char_p(b"\0" * 64), 64, ctypes.c_char_p(b"")),
    "finit_module": finit_module,
    "kexec_load": lambda: sc("kexec_load", 0, 0, 0, 0xffff0000),  # bad flags: EINVAL if allowed
    "bpf": bpf,
    "keyctl": lambda: sc("keyctl", 0, -3, 0, 0, 0),  # KEYCTL_GET_KEYRING_ID, session keyring
    "add_key": lambda: sc("add_key", ctypes.c_char_p(b"user"), ctypes.c_char_p(b"k"), ctypes.c_char_p(b"v"), 1, -3),
    "perf_event_open": perf,
    "userfaultfd": lambda: sc("userfaultfd", 1),  # UFFD_USER_MODE_ONLY
    "personality": lambda: sc("personality", 0x0040000),  # ADDR_NO_RANDOMIZE
    "io_uring_setup": lambda: sc("io_uring_setup", 1, ctypes.create_string_buffer(120)),
    "name_to_handle_at": handle,
    "settimeofday": lambda: sc("settimeofday", 0, 0),
    "syslog": lambda: sc("syslog", 10, 0, 0),  # SYSLOG_ACTION_SIZE_BUFFER
}
only = sys.argv[1:] or list(checks)
for name in only:
    check(name, checks[name])
os.rmdir(scratch)
with open("/proc/self/status") as f:
    for line in f:
        k, _, v = line.partition(":")
        if k in ("Seccomp", "NoNewPrivs") or k.startswith("Cap"):
            print("%s=%s" % (k, v.strip()), flush=True)
# What must still work: a child, threads, the allowed personalities.
report("fork", *(lambda p: (p, 0))(clone(0)[0]))
report("personality-query", *sc("personality", 0xffffffff))
import threading
t = threading.Thread(target=lambda: None); t.start(); t.join()
print("thread=allowed", flush=True)
