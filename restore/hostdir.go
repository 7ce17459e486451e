package restore

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"golang.org/x/sys/unix"

	"github.com/vmmount/vmmount/fsread/fsys"
)

// Host-side primitives. Every call names one component relative to a
// directory fd held from DEST down, and none follows a symlink: files are
// created with O_EXCL|O_NOFOLLOW, directories opened O_NOFOLLOW|O_DIRECTORY,
// links and special files made with symlinkat/mknodat/linkat (which never
// follow), and their metadata set through an O_PATH|O_NOFOLLOW fd of the
// inode that was checked to be the one created. Paths below DEST are only
// re-walked with openat2(RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS).

// ErrBadName marks a guest name that cannot be a host path component.
var ErrBadName = errors.New("name is not a single path component")

// ErrExists marks a name that exists in the destination and was not
// replaced.
var ErrExists = errors.New("exists in the destination")

// checkName accepts a guest name that can be created as one component:
// not empty, ".", "..", and without "/" or NUL. Other bytes (control
// characters, invalid UTF-8) are legal Linux names and kept.
func checkName(name string) error {
	switch {
	case name == "", name == ".", name == "..":
		return fmt.Errorf("%w: %s", ErrBadName, showName(name))
	case strings.ContainsAny(name, "/\x00"):
		return fmt.Errorf("%w: %s contains %s", ErrBadName, showName(name), map[bool]string{true: "'/'", false: "NUL"}[strings.Contains(name, "/")])
	case len(name) > 255:
		return fmt.Errorf("%w: %d bytes (more than 255)", ErrBadName, len(name))
	}
	return nil
}

// showName quotes a name for messages when it holds anything a terminal
// could take for control (or is empty).
func showName(s string) string {
	if s == "" {
		return `""`
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f || r == utf8.RuneError || (r >= 0x80 && r < 0xa0) {
			return strconv.Quote(s)
		}
	}
	return s
}

// ShowPath quotes a guest path for messages, as showName does.
func ShowPath(p string) string { return showName(p) }

// joinGuest appends a guest name to a guest path.
func joinGuest(dir, name string) string {
	if strings.HasSuffix(dir, "/") {
		return dir + name
	}
	return dir + "/" + name
}

var tmpSeq atomic.Uint64

// tmpName is a fresh name for writing an entry that replaces another.
func tmpName() string {
	return fmt.Sprintf(".vmmount-restore-%d-%d", unix.Getpid(), tmpSeq.Add(1))
}

// openDirAt opens the directory name in dirfd without following a symlink.
func openDirAt(dirfd int, name string) (int, error) {
	return unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
}

// openBeneath opens the directory rel (slash-separated, relative to root)
// refusing any symlink on the way and any escape from root.
func openBeneath(root int, rel string) (int, error) {
	if rel == "" {
		rel = "."
	}
	return unix.Openat2(root, rel, &unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
	})
}

// lstatAt stats name in dirfd without following it.
func lstatAt(dirfd int, name string) (*unix.Stat_t, error) {
	var st unix.Stat_t
	if err := unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return nil, err
	}
	return &st, nil
}

func timespec(t time.Time) unix.Timespec {
	return unix.Timespec{Sec: t.Unix(), Nsec: int64(t.Nanosecond())}
}

// setTimes sets atime and mtime of the inode fd refers to (a real or an
// O_PATH fd, symlinks included).
func setTimes(fd int, st *fsys.Stat) error {
	ts := []unix.Timespec{timespec(st.Atime), timespec(st.Mtime)}
	if err := unix.UtimesNanoAt(fd, "", ts, unix.AT_EMPTY_PATH); err != nil {
		return fmt.Errorf("setting times: %w", err)
	}
	return nil
}

// setOwner sets uid and gid of the inode fd refers to.
func setOwner(fd int, st *fsys.Stat) error {
	if err := unix.Fchownat(fd, "", int(st.Uid), int(st.Gid), unix.AT_EMPTY_PATH|unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("setting owner %d:%d: %w", st.Uid, st.Gid, err)
	}
	return nil
}

// procPath names the inode of an O_PATH fd for calls that take no fd
// (chmod, setxattr): the kernel resolves the magic link to that inode
// itself, a symlink included, without following it further.
func procPath(fd int) string { return "/proc/self/fd/" + strconv.Itoa(fd) }

// isDevErr says whether a write error is about the destination as a whole
// (full, over quota, read-only): the restore stops instead of failing
// every file that follows the same way.
func isDevErr(err error) bool {
	return errors.Is(err, unix.ENOSPC) || errors.Is(err, unix.EDQUOT) || errors.Is(err, unix.EROFS)
}

// restorableXattr says whether a guest xattr is set on the host: user.*,
// trusted.*, security.* and POSIX ACLs. Other system.* names (NTFS
// attribute flags, ...) are views a reader synthesizes, not data a host
// filesystem stores.
func restorableXattr(name string) bool {
	if strings.HasPrefix(name, "system.") {
		return name == "system.posix_acl_access" || name == "system.posix_acl_default"
	}
	return strings.HasPrefix(name, "user.") || strings.HasPrefix(name, "trusted.") || strings.HasPrefix(name, "security.")
}

// readXattrs reads the restorable xattrs of an inode.
func readXattrs(f fsys.FileSystem, ino uint64) ([]xattr, error) {
	names, err := f.Xattrs(ino)
	if err != nil {
		return nil, fmt.Errorf("listing xattrs: %w", err)
	}
	var out []xattr
	for _, n := range names {
		if !restorableXattr(n) {
			continue
		}
		v, err := f.Xattr(ino, n)
		if errors.Is(err, fsys.ErrNoXattr) {
			continue
		}
		if err != nil {
			return out, fmt.Errorf("xattr %s: %w", showName(n), err)
		}
		out = append(out, xattr{n, v})
	}
	return out, nil
}

type xattr struct {
	name  string
	value []byte
}
