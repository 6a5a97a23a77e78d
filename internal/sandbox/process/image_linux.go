package process

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// An image instance's root (initConfig.Image, sandbox.Spec.RootFS). The
// helper's prepared root (rootfs_linux.go) shows the host's system
// directories, which an image instance must not see; so overlayRoot stacks
// on it a fresh tmpfs of the instance's (the "skeleton"), then, on that, a
// read-only overlayfs whose two lower layers are the skeleton above the
// image's tree. The skeleton holds:
//
//	/dev /proc /tmp  empty directories, mount points of the prepared
//	                 root's /dev and /proc and of the private /tmp
//	/etc             passwd, group, hosts and hostname of the instance's
//	                 (passwd and group layered over the image's), and
//	                 resolv.conf (a mount point of the host's, or of the
//	                 network's)
//	/sys             a whiteout: the image's is not shown
//
// so the instance sees the image's tree with these over it: its /etc is
// the image's with the instance's five files in place of the image's (the
// overlay merges the two directories). An entry of the skeleton hides
// whatever the image has at its path, a link included (an image whose
// /tmp or /dev is a link to elsewhere gets the directory all the same),
// so every mount point is a directory or file of the skeleton's and the
// helper (root) follows no link of the image to mount on it. The image's
// tree (which the store makes read-only, and never changes while an
// instance uses it) is not written, and nothing is made in it. This is a
// constant number of mounts (the tmpfs, the overlay, /dev, /proc,
// resolv.conf, /tmp and /dev/shm), whatever the image's layout.
//
// Where overlayfs is missing (or refuses the mount), bindRoot builds the
// same root the older way: a tmpfs into which go
//
//	/<entry>     each top-level entry of the image: a directory or a file
//	             bound read-only, nosuid and nodev; a symbolic link copied
//	             as the same link; not its dev, proc, sys, tmp or etc
//	/etc         a directory of the root's own holding each entry of the
//	             image's /etc the same way, but for passwd, group, hosts,
//	             hostname and resolv.conf, which are the instance's
//	             (passwd and group layered over the image's)
//	/dev /proc   the prepared root's, bound with what is mounted in them
//	/tmp         the private tmpfs, as for every instance
//
// (two or three mount calls per entry of the image's top level and /etc).
//
// The code, runtime and layers directories, when the spec has them, are
// bound at their fixed paths as for any instance, on mount points the
// image has (its root is read-only), reached through no link. Nothing of
// the host but /dev's devices, resolv.conf and what the spec binds is
// there. Everything but /tmp and /dev/shm is read-only.
//
// The helper is root when it builds this, so it follows nothing of the
// image: entries are opened relative to the image's directory with
// O_NOFOLLOW (a link is copied, never resolved by the helper), and the two
// files it reads (passwd, group) are opened with openat2's
// RESOLVE_IN_ROOT, which resolves links as the instance would, inside the
// image.

// prepared is the root prepare built (nil: none).
var prepared *rootSpec

// imageSkip are the top-level names of an image that the instance's root
// makes itself (or never has: sys).
var imageSkip = map[string]bool{"dev": true, "proc": true, "sys": true, "tmp": true, "etc": true}

// etcOwn are the files of /etc an image instance gets its own of.
var etcOwn = map[string]bool{"passwd": true, "group": true, "hosts": true, "hostname": true, "resolv.conf": true}

// maxEtcFile bounds the image's passwd and group the helper reads.
const maxEtcFile = 1 << 20

// imageEtc is what the instance's passwd and group are layered over.
type imageEtc struct {
	passwd, group []byte // nil when the image has none
}

// errNoOverlay: the overlay of an image's root could not be mounted;
// bindRoot builds it instead.
var errNoOverlay = errors.New("no overlayfs")

// overlayOptions are the overlay's options but its layers: the image's
// extended attributes may redirect nothing and make nothing a metacopy
// (the store keeps none; a tree given by hand might).
const overlayOptions = "redirect_dir=nofollow,metacopy=off"

// overlayRoot stacks the root of cfg.Image on cfg.Root as an overlay (see
// above), the instance's /etc files written in it. If the overlay cannot
// be mounted it undoes what it did and returns an error matching
// errNoOverlay.
func overlayRoot(cfg *initConfig, binds []kept) error {
	dir := cfg.Root
	imgFD, err := openImage(cfg.Image)
	if err != nil {
		return err
	}
	defer unix.Close(imgFD)
	etc, err := readImageEtc(imgFD)
	if err != nil {
		return err
	}
	held, err := holdPrepared(dir)
	defer closeAll(held)
	if err != nil {
		return err
	}
	if err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, rootSize); err != nil {
		return op("mount image skeleton", err)
	}
	hostResolv := ""
	if !bindsAt(binds, "/etc/resolv.conf") {
		hostResolv = hostResolvConf()
	}
	if err := makeSkeleton(dir, instanceEtc(cfg, &etc)); err != nil {
		if !errors.Is(err, unix.EPERM) {
			return err
		}
		// No whiteout may be made (a device policy): the binds, then.
		if uerr := unix.Unmount(dir, unix.MNT_DETACH); uerr != nil {
			return op("unmount image skeleton", uerr)
		}
		return fmt.Errorf("image skeleton: %w (%w)", errNoOverlay, err)
	}
	if err := bindPoints(imgFD, dir, binds); err != nil {
		return err
	}
	skelFD, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return op("open image skeleton", err)
	}
	defer unix.Close(skelFD)
	data := fmt.Sprintf("lowerdir=/proc/self/fd/%d:/proc/self/fd/%d,%s", skelFD, imgFD, overlayOptions)
	if err := unix.Mount("overlay", dir, "overlay", unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV, data); err != nil {
		if uerr := unix.Unmount(dir, unix.MNT_DETACH); uerr != nil {
			return op("unmount image skeleton", uerr)
		}
		return fmt.Errorf("mount image root: %w (%w)", errNoOverlay, err)
	}
	if err := bindPrepared(dir, held); err != nil {
		return err
	}
	if hostResolv != "" {
		return bindHost(hostResolv, filepath.Join(dir, "etc", "resolv.conf"), false)
	}
	return nil
}

// makeSkeleton makes the upper layer of an image's root in dir (see
// above), with files in its /etc.
func makeSkeleton(dir string, files map[string]string) error {
	for _, d := range []string{"dev", "proc", "tmp", "etc"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			return op("make image skeleton", err)
		}
	}
	files["resolv.conf"] = "" // a mount point, or empty as none at all
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, "etc", name), []byte(content), 0o644); err != nil {
			return op("write /etc/"+name, err)
		}
	}
	// A whiteout (a character device 0:0) hides the image's /sys.
	if err := unix.Mknod(filepath.Join(dir, "sys"), unix.S_IFCHR, 0); err != nil {
		return op("make image skeleton", err)
	}
	return nil
}

// bindPoints makes in the skeleton at dir the mount points of binds whose
// top-level directory the image lacks, as bindRoot's tmpfs would have
// them made: the others are the image's to have (its root is read-only).
func bindPoints(imgFD int, dir string, binds []kept) error {
	for _, k := range binds {
		top, _, _ := strings.Cut(strings.TrimPrefix(k.Target, "/"), "/")
		var st unix.Stat_t
		err := unix.Fstatat(imgFD, top, &st, unix.AT_SYMLINK_NOFOLLOW)
		if err == nil || imageSkip[top] {
			continue
		}
		if !errors.Is(err, unix.ENOENT) {
			return op("stat image /"+top, err)
		}
		if err := makeMountPoint(filepath.Join(dir, k.Target), k.dir); err != nil {
			return op("make mount point "+k.Target, err)
		}
	}
	return nil
}

// bindRoot stacks the root of cfg.Image on cfg.Root, one bind per entry
// (see above), and returns the image's passwd and group.
func bindRoot(cfg *initConfig, binds []kept) (imageEtc, error) {
	var img imageEtc
	dir := cfg.Root
	imgFD, err := openImage(cfg.Image)
	if err != nil {
		return img, err
	}
	defer unix.Close(imgFD)
	// Hold the prepared /dev and /proc, which the new tmpfs covers.
	held, err := holdPrepared(dir)
	defer closeAll(held)
	if err != nil {
		return img, err
	}
	if err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, rootSize); err != nil {
		return img, op("mount image root", err)
	}
	for _, d := range []string{"dev", "proc", "tmp", "etc"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			return img, op("make root", err)
		}
	}
	if err := bindPrepared(dir, held); err != nil {
		return img, err
	}
	if err := showEntries(imgFD, cfg.Image, dir, imageSkip); err != nil {
		return img, err
	}
	etcFD, err := unix.Openat(imgFD, "etc", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	switch {
	case err == nil:
		defer unix.Close(etcFD)
		if err := showEntries(etcFD, filepath.Join(cfg.Image, "etc"), filepath.Join(dir, "etc"), etcOwn); err != nil {
			return img, err
		}
	case errors.Is(err, unix.ENOENT), errors.Is(err, unix.ELOOP), errors.Is(err, unix.ENOTDIR):
		// No /etc of its own (or a link): the instance's files only.
	default:
		return img, op("open image /etc", err)
	}
	if !bindsAt(binds, "/etc/resolv.conf") {
		if src := hostResolvConf(); src != "" {
			if err := bindHost(src, filepath.Join(dir, "etc", "resolv.conf"), false); err != nil {
				return img, err
			}
		}
	}
	return readImageEtc(imgFD)
}

// openImage opens the image's root directory, following no link.
func openImage(path string) (int, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, op("open image "+path, err)
	}
	return fd, nil
}

// readImageEtc reads the image's passwd and group.
func readImageEtc(imgFD int) (imageEtc, error) {
	var img imageEtc
	var err error
	if img.passwd, err = readInImage(imgFD, "etc/passwd"); err != nil {
		return img, err
	}
	img.group, err = readInImage(imgFD, "etc/group")
	return img, err
}

// holdPrepared opens the prepared root's /dev and /proc (O_PATH), by name,
// before a new tmpfs covers them.
func holdPrepared(dir string) (map[string]int, error) {
	held := map[string]int{}
	for _, name := range []string{"dev", "proc"} {
		if name == "proc" && (prepared == nil || !prepared.Proc) {
			continue
		}
		fd, err := unix.Open(filepath.Join(dir, name), unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return held, op("open /"+name, err)
		}
		held[name] = fd
	}
	return held, nil
}

// bindPrepared binds what holdPrepared holds at the same names in dir,
// with what is mounted in them.
func bindPrepared(dir string, held map[string]int) error {
	for name, fd := range held {
		src := fmt.Sprintf("/proc/self/fd/%d", fd)
		if err := unix.Mount(src, filepath.Join(dir, name), "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return op("bind /"+name, err)
		}
	}
	return nil
}

func closeAll(fds map[string]int) {
	for _, fd := range fds {
		_ = unix.Close(fd)
	}
}

// hostResolvConf returns the host's resolv.conf (links resolved), or ""
// if it has none.
func hostResolvConf() string {
	src, err := filepath.EvalSymlinks("/etc/resolv.conf")
	if err != nil {
		return ""
	}
	if fi, err := os.Stat(src); err != nil || !fi.Mode().IsRegular() {
		return ""
	}
	return src
}

// checkMountPoint returns an error if an existing element of path (below
// root) is a symbolic link: an instance's binds are mounted on what the
// root has at their paths, reached through no link of the image's (the
// helper is root; the image's links are the instance's to resolve).
func checkMountPoint(root, path string) error {
	fd, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return op("open root", err)
	}
	defer func() { _ = unix.Close(fd) }()
	parts := strings.Split(strings.Trim(path, "/"), "/")
	for i, name := range parts {
		var st unix.Stat_t
		err := unix.Fstatat(fd, name, &st, unix.AT_SYMLINK_NOFOLLOW)
		if errors.Is(err, unix.ENOENT) {
			return nil // made (or refused) by bindReadOnly
		}
		if err != nil {
			return op("stat mount point "+path, err)
		}
		if st.Mode&unix.S_IFMT == unix.S_IFLNK {
			return op("mount point "+path, fmt.Errorf("/%s is a symbolic link in the image", strings.Join(parts[:i+1], "/")))
		}
		if i == len(parts)-1 || st.Mode&unix.S_IFMT != unix.S_IFDIR {
			return nil
		}
		next, err := unix.Openat(fd, name, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return op("open mount point "+path, err)
		}
		_ = unix.Close(fd)
		fd = next
	}
	return nil
}

// bindsAt reports whether one of binds goes to target.
func bindsAt(binds []kept, target string) bool {
	for _, k := range binds {
		if k.Target == target {
			return true
		}
	}
	return false
}

// showEntries shows each entry of the directory dirFD (at host path
// hostDir) in target, but those skip names: a directory or regular file
// bound read-only, a symbolic link copied; anything else (devices, pipes,
// sockets) left out.
func showEntries(dirFD int, hostDir, target string, skip map[string]bool) error {
	fd, err := unix.Dup(dirFD)
	if err != nil {
		return op("read "+hostDir, err)
	}
	unix.CloseOnExec(fd)
	f := os.NewFile(uintptr(fd), hostDir)
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		return op("read "+hostDir, err)
	}
	for _, name := range names {
		if skip[name] {
			continue
		}
		if err := showEntry(dirFD, hostDir, name, filepath.Join(target, name)); err != nil {
			return err
		}
	}
	return nil
}

// showEntry shows entry name of the directory dirFD at target.
func showEntry(dirFD int, hostDir, name, target string) error {
	src := filepath.Join(hostDir, name)
	var st unix.Stat_t
	if err := unix.Fstatat(dirFD, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return op("stat "+src, err)
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFLNK:
		buf := make([]byte, unix.PathMax)
		n, err := unix.Readlinkat(dirFD, name, buf)
		if err != nil {
			return op("read link "+src, err)
		}
		if err := os.Symlink(string(buf[:n]), target); err != nil {
			return op("link "+target, err)
		}
		return nil
	case unix.S_IFDIR, unix.S_IFREG:
		fd, err := unix.Openat(dirFD, name, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return op("open "+src, err)
		}
		defer unix.Close(fd)
		return bindReadOnly(kept{bind: bind{Source: src, Target: target}, fd: fd, dir: st.Mode&unix.S_IFMT == unix.S_IFDIR})
	}
	return nil
}

// readInImage reads the image's regular file at path (relative to its
// root, links resolved inside it), or returns nil if there is none.
func readInImage(imgFD int, path string) ([]byte, error) {
	fd, err := unix.Openat2(imgFD, path, &unix.OpenHow{
		Flags:   unix.O_RDONLY | unix.O_CLOEXEC | unix.O_NOCTTY | unix.O_NONBLOCK,
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
	})
	switch {
	case errors.Is(err, unix.ENOSYS):
		return nil, nil // a kernel before 5.6: the instance's entries only
	case err != nil && (errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) || errors.Is(err, unix.ELOOP)):
		return nil, nil
	case err != nil:
		return nil, op("open image /"+path, err)
	}
	f := os.NewFile(uintptr(fd), path)
	defer f.Close()
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		return nil, nil
	}
	data, err := io.ReadAll(io.LimitReader(f, maxEtcFile+1))
	if err != nil {
		return nil, op("read image /"+path, err)
	}
	if len(data) > maxEtcFile {
		return nil, op("read image /"+path, fmt.Errorf("over %d bytes", maxEtcFile))
	}
	return data, nil
}

// imageUserName returns the user name of an image's USER ("name",
// "name:group"), or "" for none, root or a numeric uid.
func imageUserName(user string) string {
	name, _, _ := strings.Cut(user, ":")
	if name == "" || name == "root" {
		return ""
	}
	if _, err := strconv.Atoi(name); err == nil {
		return ""
	}
	return name
}

// layerPasswd returns the image's passwd with the instance's entries:
// sbx_user with uid and gid (and the image's user, named by imageUser, if
// it defines it with a uid other than 0, given them too, first, so that
// uid's name is the image's user); the image's entries named as these or
// with uid are dropped. root and nobody are added if the image has none.
func layerPasswd(image []byte, uid, gid int, imageUser string) string {
	var own, kept strings.Builder
	name := imageUserName(imageUser)
	hasRoot, hasNobody := false, false
	for line := range strings.Lines(string(image)) {
		line = strings.TrimRight(line, "\n")
		f := strings.Split(line, ":")
		if len(f) != 7 || f[0] == "" || strings.HasPrefix(f[0], "#") {
			continue
		}
		switch {
		case f[0] == "sbx_user" || f[2] == strconv.Itoa(uid):
			continue
		case f[0] == name:
			if f[2] != "0" {
				fmt.Fprintf(&own, "%s:x:%d:%d:%s:%s:%s\n", f[0], uid, gid, f[4], f[5], f[6])
			}
			continue
		case f[0] == "root":
			hasRoot = true
		case f[0] == "nobody":
			hasNobody = true
		}
		kept.WriteString(line + "\n")
	}
	fmt.Fprintf(&own, "sbx_user:x:%d:%d::/tmp:/sbin/nologin\n", uid, gid)
	out := own.String() + kept.String()
	if !hasRoot {
		out = "root:x:0:0:root:/root:/sbin/nologin\n" + out
	}
	if !hasNobody {
		out += "nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n"
	}
	return out
}

// layerGroup returns the image's group with the instance's: sbx_user with
// gid (the image's entries named so or with gid dropped); root and nogroup
// are added if the image has none.
func layerGroup(image []byte, gid int) string {
	var kept strings.Builder
	hasRoot, hasNogroup := false, false
	for line := range strings.Lines(string(image)) {
		line = strings.TrimRight(line, "\n")
		f := strings.Split(line, ":")
		if len(f) != 4 || f[0] == "" || strings.HasPrefix(f[0], "#") || f[0] == "sbx_user" || f[2] == strconv.Itoa(gid) {
			continue
		}
		hasRoot = hasRoot || f[0] == "root"
		hasNogroup = hasNogroup || f[0] == "nogroup"
		kept.WriteString(line + "\n")
	}
	out := fmt.Sprintf("sbx_user:x:%d:\n", gid) + kept.String()
	if !hasRoot {
		out = "root:x:0:\n" + out
	}
	if !hasNogroup {
		out += "nogroup:x:65534:\n"
	}
	return out
}
