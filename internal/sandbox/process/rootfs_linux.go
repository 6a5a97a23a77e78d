package process

import (
	"cmp"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/nimbus-serverless/nimbus/internal/sandbox"
	"golang.org/x/sys/unix"
)

// An instance's root: a small tmpfs the helper builds in its mount
// namespace and pivots into, so that the instance sees only what is put
// there:
//
//	/usr /lib /lib64 /bin /sbin ...  the host's, read-only (symbolic links
//	                                 kept as links: /bin -> usr/bin)
//	Config.SystemPaths               the same, at their own paths
//	/etc                             a few of the host's files (the dynamic
//	                                 linker's cache, certificates, name
//	                                 service and time zone), read-only, and
//	                                 passwd, group, hosts, hostname made for
//	                                 the instance
//	/dev                             null, zero, full, random, urandom, tty,
//	                                 the fd links and a private shm
//	/proc                            of the instance's pid namespace
//	/var/task /var/runtime           its code and runtime, read-only
//	/opt                             its layers (Spec.OptDir), read-only, or empty
//	/tmp                             its private tmpfs
//
// Everything but /tmp and /dev/shm is read-only. The host's /home, /root,
// /srv, /run, /var/tmp, /sys, the Nimbus data directory and every other
// instance's code are not there at all.

// systemDirs are the host directories an instance's runtime needs,
// bound read-only where they exist.
var systemDirs = []string{"/usr", "/lib", "/lib64", "/lib32", "/libx32", "/bin", "/sbin"}

// etcEntries are the files and directories of the host's /etc that an
// instance sees (read-only, symbolic links resolved), where they exist.
var etcEntries = []string{
	"ld.so.cache", "ld.so.conf", "ld.so.conf.d",
	"ssl", "ca-certificates", "ca-certificates.conf", "pki", "crypto-policies",
	"resolv.conf", "nsswitch.conf", "host.conf", "gai.conf", "protocols", "services", "networks",
	"localtime", "timezone", "mime.types", "os-release", "alternatives",
}

// devices are the host's device nodes an instance gets in its /dev.
var devices = []string{"null", "zero", "full", "random", "urandom", "tty"}

// devLinks are the symbolic links of its /dev.
var devLinks = [][2]string{
	{"fd", "/proc/self/fd"}, {"stdin", "/proc/self/fd/0"}, {"stdout", "/proc/self/fd/1"},
	{"stderr", "/proc/self/fd/2"},
}

// rootSpec tells a helper how to build its instance's root (prepareConfig).
type rootSpec struct {
	// Dir is the host directory the root's tmpfs is mounted on, in the
	// helper's mount namespace (the host never sees the mount).
	Dir string `json:"dir"`
	// System are the host directories shown read-only at their own paths.
	System []string `json:"system"`
	// Proc: mount a /proc of the helper's pid namespace.
	Proc bool `json:"proc"`
}

// Sizes of the root's tmpfs and of its /dev.
const (
	rootSize = "size=1m,nr_inodes=4096,mode=0755"
	devSize  = "size=64k,nr_inodes=64,mode=0755"
)

// buildRoot does the part of the root that does not depend on the
// instance: the tmpfs, the system directories, /etc, /dev and /proc.
func buildRoot(rs *rootSpec) error {
	if err := unix.Mount("tmpfs", rs.Dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, rootSize); err != nil {
		return op("mount root", err)
	}
	for _, d := range []string{"etc", "dev", "proc", "tmp", "opt", "var/task", "var/runtime"} {
		if err := os.MkdirAll(filepath.Join(rs.Dir, d), 0o755); err != nil {
			return op("make root", err)
		}
	}
	for _, src := range rs.System {
		if err := showSystem(rs.Dir, src); err != nil {
			return err
		}
	}
	if err := buildEtc(rs.Dir); err != nil {
		return err
	}
	if err := buildDev(filepath.Join(rs.Dir, "dev")); err != nil {
		return err
	}
	if rs.Proc {
		if err := unix.Mount("proc", filepath.Join(rs.Dir, "proc"), "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
			return op("mount /proc", err)
		}
	}
	return nil
}

// showSystem shows host path src at the same path under root: a symbolic
// link as the same link, a directory bound read-only. A path that does
// not exist is skipped.
func showSystem(root, src string) error {
	fi, err := os.Lstat(src)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return op("stat "+src, err)
	}
	target := filepath.Join(root, src)
	if fi.Mode()&fs.ModeSymlink != 0 {
		link, err := os.Readlink(src)
		if err == nil {
			err = os.MkdirAll(filepath.Dir(target), 0o755)
		}
		if err == nil {
			err = os.Symlink(link, target)
		}
		if err != nil && !errors.Is(err, fs.ErrExist) {
			return op("link "+src, err)
		}
		return nil
	}
	return bindHost(src, target, fi.IsDir())
}

// bindHost binds host path src (a directory or a file) read-only, nosuid
// and nodev at target, making the mount point.
func bindHost(src, target string, dir bool) error {
	fd, err := unix.Open(src, unix.O_PATH|unix.O_CLOEXEC, 0)
	if err != nil {
		return op("open "+src, err)
	}
	defer unix.Close(fd)
	return bindReadOnly(kept{bind: bind{Source: src, Target: target}, fd: fd, dir: dir})
}

// buildEtc shows etcEntries of the host's /etc in root/etc.
func buildEtc(root string) error {
	for _, name := range etcEntries {
		src, err := filepath.EvalSymlinks(filepath.Join("/etc", name))
		if err != nil {
			continue // absent, or a dangling link
		}
		fi, err := os.Stat(src)
		if err != nil || !(fi.IsDir() || fi.Mode().IsRegular()) {
			continue
		}
		if err := bindHost(src, filepath.Join(root, "etc", name), fi.IsDir()); err != nil {
			return err
		}
	}
	return nil
}

// buildDev makes the instance's /dev: a tmpfs with the host's devices
// bound in, the fd links and a mount point for /dev/shm; read-only.
func buildDev(dev string) error {
	if err := unix.Mount("tmpfs", dev, "tmpfs", unix.MS_NOSUID|unix.MS_NOEXEC, devSize); err != nil {
		return op("mount /dev", err)
	}
	for _, name := range devices {
		target := filepath.Join(dev, name)
		if err := os.WriteFile(target, nil, 0o666); err != nil {
			return op("make /dev/"+name, err)
		}
		if err := unix.Mount(filepath.Join("/dev", name), target, "", unix.MS_BIND, ""); err != nil {
			return op("bind /dev/"+name, err)
		}
		if err := unix.Mount("", target, "", unix.MS_REMOUNT|unix.MS_BIND|unix.MS_NOSUID|unix.MS_NOEXEC, ""); err != nil {
			return op("remount /dev/"+name, err)
		}
	}
	for _, l := range devLinks {
		if err := os.Symlink(l[1], filepath.Join(dev, l[0])); err != nil {
			return op("link /dev/"+l[0], err)
		}
	}
	if err := os.Mkdir(filepath.Join(dev, "shm"), 0o1777); err != nil {
		return op("make /dev/shm", err)
	}
	return remountReadOnly(dev, unix.MS_NOSUID|unix.MS_NOEXEC)
}

// finishRoot does the part of the root that depends on the instance, then
// pivots into it: its /tmp and /dev/shm, its code and runtime, the files
// of /etc that name it; then the root is made read-only, becomes /, and
// the host's root is detached.
func finishRoot(cfg *initConfig, keep []kept) error {
	dir := cfg.Root
	var img *imageEtc
	overlay := false
	if cfg.Image != "" {
		err := errNoOverlay
		if !cfg.ImageBinds {
			err = overlayRoot(cfg, keep)
		}
		switch {
		case err == nil:
			overlay = true // read-only, its /etc written
		case errors.Is(err, errNoOverlay):
			got, err := bindRoot(cfg, keep)
			if err != nil {
				return err
			}
			img = &got
		default:
			return err
		}
	}
	if err := mountTmp(cfg, dir); err != nil {
		return err
	}
	for _, k := range keep {
		if cfg.Image != "" {
			if err := checkMountPoint(dir, k.Target); err != nil {
				return err
			}
		}
		k.Target = filepath.Join(dir, k.Target)
		if err := bindReadOnly(k); err != nil {
			return err
		}
	}
	if !overlay {
		if err := writeEtc(cfg, img); err != nil {
			return err
		}
		if err := remountReadOnly(dir, unix.MS_NOSUID|unix.MS_NODEV); err != nil {
			return err
		}
	}
	return pivot(dir)
}

// writeEtc writes the instance's passwd, group, hosts and hostname; with
// an image, its passwd and group are layered over the image's.
func writeEtc(cfg *initConfig, img *imageEtc) error {
	for name, content := range instanceEtc(cfg, img) {
		if err := os.WriteFile(filepath.Join(cfg.Root, "etc", name), []byte(content), 0o644); err != nil {
			return op("write /etc/"+name, err)
		}
	}
	return nil
}

// instanceEtc are the instance's passwd, group, hosts and hostname, by
// name; with an image, its passwd and group are layered over the image's.
func instanceEtc(cfg *initConfig, img *imageEtc) map[string]string {
	files := etcFiles(cfg)
	if img != nil {
		uid, gid := instanceIDs(cfg)
		files["passwd"] = layerPasswd(img.passwd, uid, gid, cfg.ImageUser)
		files["group"] = layerGroup(img.group, gid)
	}
	return files
}

// etcFiles are the contents of the instance's passwd, group, hosts and
// hostname, by name.
func etcFiles(cfg *initConfig) map[string]string {
	uid, gid := instanceIDs(cfg)
	host := cmp.Or(cfg.Hostname, "localhost")
	return map[string]string{
		"passwd": "root:x:0:0:root:/root:/sbin/nologin\n" +
			fmt.Sprintf("sbx_user:x:%d:%d::%s:/sbin/nologin\n", uid, gid, sandbox.TaskRoot) +
			"nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n",
		"group":    "root:x:0:\n" + fmt.Sprintf("sbx_user:x:%d:\n", gid) + "nogroup:x:65534:\n",
		"hosts":    "127.0.0.1\tlocalhost " + host + "\n::1\tlocalhost ip6-localhost ip6-loopback\n",
		"hostname": host + "\n",
	}
}

// instanceIDs are the uid and gid the instance of cfg runs as.
func instanceIDs(cfg *initConfig) (uid, gid int) {
	if cfg.Drop {
		return cfg.UID, cfg.GID
	}
	return os.Getuid(), os.Getgid()
}

// remountReadOnly makes the mount at path read-only, with flags.
func remountReadOnly(path string, flags uintptr) error {
	if err := unix.Mount("", path, "", unix.MS_REMOUNT|unix.MS_RDONLY|flags, ""); err != nil {
		return op("remount "+path+" read-only", err)
	}
	return nil
}

// pivot makes dir the root of the mount namespace and detaches the old
// root, as runc does: pivot_root(".", ".") stacks the old root on the new
// one, and unmounting "." takes it away.
func pivot(dir string) error {
	if err := unix.Chdir(dir); err != nil {
		return op("chdir root", err)
	}
	if err := unix.PivotRoot(".", "."); err != nil {
		return op("pivot_root", err)
	}
	if err := unix.Unmount(".", unix.MNT_DETACH); err != nil {
		return op("detach host root", err)
	}
	return op("chdir /", unix.Chdir("/"))
}

// rootPaths returns the host directories an instance's root shows (see
// systemDirs) plus extra, without duplicates or paths inside another.
func rootPaths(extra []string) []string {
	var out []string
	for _, p := range append(append([]string(nil), systemDirs...), extra...) {
		dup := false
		for _, q := range out {
			if within(p, q) {
				dup = true
			}
		}
		if !dup {
			out = append(out, p)
		}
	}
	return out
}
