package restore

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/vmmount/vmmount/fsread/fsys"
)

// maxDepth bounds directory nesting: each level holds an open fd while it
// is filled, and a hostile image can nest without end.
const maxDepth = 1000

// item restores one item below DEST, creating the directories of its
// relative path that are missing (mode 0755, not guest directories).
func (r *restorer) item(ctx context.Context, top *dirState, it Item) {
	parent := top
	var made []*dirState
	for _, c := range it.Rel[:len(it.Rel)-1] {
		if err := unix.Mkdirat(parent.fd, c, 0o755); err != nil && !errors.Is(err, unix.EEXIST) {
			r.fail(it.Guest, fmt.Errorf("creating %s in the destination: %w", relJoin(parent.rel, c), err))
			break
		}
		fd, err := openDirAt(parent.fd, c)
		if err != nil {
			r.fail(it.Guest, fmt.Errorf("opening %s in the destination: %w", relJoin(parent.rel, c), err))
			break
		}
		d := &dirState{fd: fd, rel: relJoin(parent.rel, c), guest: it.Guest, parent: parent}
		d.pending.Store(1)
		parent.hold()
		made = append(made, d)
		parent = d
	}
	if len(made) == len(it.Rel)-1 {
		r.entry(ctx, parent, it.Rel[len(it.Rel)-1], it.Guest, it.FS, it.Ino, 0)
	}
	for i := len(made) - 1; i >= 0; i-- {
		r.release(made[i])
	}
}

// entry restores one guest inode as name in parent.
func (r *restorer) entry(ctx context.Context, parent *dirState, name, guest string, f fsys.FileSystem, ino uint64, depth int) {
	st, err := f.Stat(ino)
	if err != nil {
		r.fail(guest, err)
		return
	}
	typ := st.Mode & fsys.S_IFMT
	if typ == fsys.S_IFDIR {
		r.dir(ctx, parent, name, guest, f, ino, st, depth)
		return
	}
	var ls *linkState
	if st.Nlink > 1 {
		var first bool
		ls, first = r.linkFor(inodeKey{f, ino}, parent, name, guest)
		if !first {
			return // linked now or when the first copy is done
		}
	}
	switch typ {
	case fsys.S_IFREG:
		parent.hold()
		r.jobs <- &fileJob{dir: parent, name: name, guest: guest, fs: f, ino: ino, st: st, link: ls}
	case fsys.S_IFLNK:
		target, err := f.Readlink(ino)
		if err == nil && (target == "" || strings.IndexByte(target, 0) >= 0 || len(target) >= 4096) {
			err = fmt.Errorf("%w: symlink target %s cannot be created on Linux", fsys.ErrCorrupt, showName(target))
		}
		if err != nil {
			r.fail(guest, err)
			r.linkDone(ls, parent, name, 0, err)
			return
		}
		r.other(parent, name, guest, f, ino, st, ls, func(dirfd int, n string) error {
			return unix.Symlinkat(target, dirfd, n)
		})
	case fsys.S_IFIFO, fsys.S_IFSOCK, fsys.S_IFCHR, fsys.S_IFBLK:
		r.other(parent, name, guest, f, ino, st, ls, func(dirfd int, n string) error {
			return unix.Mknodat(dirfd, n, typ|0o600, int(st.Rdev))
		})
	default:
		err := fmt.Errorf("%w: unknown file type %#o", fsys.ErrCorrupt, typ)
		r.fail(guest, err)
		r.linkDone(ls, parent, name, 0, err)
	}
}

// dir restores a directory and, through the walker, everything in it.
func (r *restorer) dir(ctx context.Context, parent *dirState, name, guest string, f fsys.FileSystem, ino uint64, st *fsys.Stat, depth int) {
	key := inodeKey{f, ino}
	if r.dirsSeen[key] {
		r.fail(guest, fmt.Errorf("%w: directory inode %d appears twice (a loop or a hardlinked directory)", fsys.ErrCorrupt, ino))
		return
	}
	r.dirsSeen[key] = true
	if depth > maxDepth {
		r.fail(guest, fmt.Errorf("directories nested more than %d deep", maxDepth))
		return
	}
	fd, keep, err := r.makeDir(parent.fd, name)
	if errors.Is(err, errSkipped) {
		r.c.skipped.Add(1)
		return
	}
	if err != nil {
		r.fail(guest, err)
		return
	}
	d := &dirState{fd: fd, rel: relJoin(parent.rel, name), guest: guest, st: st, fs: f, ino: ino, parent: parent}
	if keep {
		d.st = nil
	}
	d.pending.Store(1)
	parent.hold()
	r.c.dirs.Add(1)
	ents, err := f.ReadDir(ino)
	if err != nil {
		r.fail(guest, err)
	}
	for _, e := range ents {
		if ctx.Err() != nil {
			break
		}
		cg := joinGuest(guest, e.Name)
		if err := checkName(e.Name); err != nil {
			r.fail(cg, err)
			continue
		}
		r.entry(ctx, d, e.Name, cg, f, e.Ino, depth+1)
	}
	r.release(d)
}

// errSkipped means an entry was kept as it was (Skip).
var errSkipped = errors.New("skipped")

// makeDir creates (or, by the Existing policy, reuses) the directory name
// in dirfd and opens it. keep says an existing directory's metadata stays.
func (r *restorer) makeDir(dirfd int, name string) (fd int, keep bool, err error) {
	err = unix.Mkdirat(dirfd, name, 0o700)
	if errors.Is(err, unix.EEXIST) {
		st, serr := lstatAt(dirfd, name)
		if serr != nil {
			return -1, false, serr
		}
		isDir := st.Mode&unix.S_IFMT == unix.S_IFDIR
		switch r.o.Existing {
		case Refuse:
			return -1, false, ErrExists
		case Skip:
			if !isDir {
				return -1, false, errSkipped
			}
			keep = true
		case Overwrite:
			if !isDir {
				if err := unix.Unlinkat(dirfd, name, 0); err != nil {
					return -1, false, fmt.Errorf("replacing it with a directory: %w", err)
				}
				if err := unix.Mkdirat(dirfd, name, 0o700); err != nil {
					return -1, false, err
				}
			}
		}
	} else if err != nil {
		return -1, false, err
	}
	fd, err = openDirAt(dirfd, name)
	if err != nil {
		return -1, false, fmt.Errorf("opening the directory just made: %w", err)
	}
	return fd, keep, nil
}

// other creates a symlink or special file with mk, under a temporary name
// when it replaces an existing one, sets its metadata through an O_PATH
// fd of the created inode, and renames it into place.
func (r *restorer) other(parent *dirState, name, guest string, f fsys.FileSystem, ino uint64, st *fsys.Stat, ls *linkState, mk func(dirfd int, name string) error) {
	hostIno, err := r.otherAt(parent, name, f, ino, st, mk)
	switch {
	case errors.Is(err, errSkipped):
		r.c.skipped.Add(1)
	case err != nil:
		r.fail(guest, err)
	case st.Mode&fsys.S_IFMT == fsys.S_IFLNK:
		r.c.symlinks.Add(1)
	default:
		r.c.special.Add(1)
	}
	r.linkDone(ls, parent, name, hostIno, err)
}

func (r *restorer) otherAt(parent *dirState, name string, f fsys.FileSystem, ino uint64, st *fsys.Stat, mk func(dirfd int, name string) error) (uint64, error) {
	made := name
	err := mk(parent.fd, name)
	if errors.Is(err, unix.EEXIST) {
		switch r.o.Existing {
		case Refuse:
			return 0, ErrExists
		case Skip:
			return 0, errSkipped
		}
		made = tmpName()
		err = mk(parent.fd, made)
	}
	if err != nil {
		return 0, err
	}
	hostIno, err := r.otherMeta(parent.fd, made, f, ino, st)
	if err == nil && made != name {
		if err = unix.Renameat(parent.fd, made, parent.fd, name); err != nil {
			err = fmt.Errorf("replacing the existing entry: %w", err)
		}
	}
	if err != nil {
		unix.Unlinkat(parent.fd, made, 0)
		return 0, err
	}
	return hostIno, nil
}

// otherMeta sets the metadata of the non-regular entry just created as
// name, through an O_PATH fd checked to be of the type created.
func (r *restorer) otherMeta(dirfd int, name string, f fsys.FileSystem, ino uint64, st *fsys.Stat) (uint64, error) {
	fd, err := unix.Openat(dirfd, name, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0, err
	}
	defer unix.Close(fd)
	var hs unix.Stat_t
	if err := unix.Fstat(fd, &hs); err != nil {
		return 0, err
	}
	if hs.Mode&unix.S_IFMT != st.Mode&fsys.S_IFMT {
		return 0, fmt.Errorf("the entry just created changed type (%#o): a concurrent writer in the destination?", hs.Mode&unix.S_IFMT)
	}
	return hs.Ino, r.setMeta(fd, st, f, ino, false)
}

// setMeta sets owner, mode, xattrs and times, in that order: chown clears
// setuid bits and file capabilities, which chmod and the security.*
// xattrs then put back, and anything else would change ctime but not the
// times set last. realFd says fd is open for reading or writing rather
// than O_PATH.
func (r *restorer) setMeta(fd int, st *fsys.Stat, f fsys.FileSystem, ino uint64, realFd bool) error {
	var errs []error
	symlink := st.Mode&fsys.S_IFMT == fsys.S_IFLNK
	if r.o.Owners {
		errs = append(errs, setOwner(fd, st))
	}
	if !symlink {
		mode := st.Mode & 0o7777
		var err error
		if realFd {
			err = unix.Fchmod(fd, mode)
		} else {
			err = unix.Fchmodat(unix.AT_FDCWD, procPath(fd), mode, 0)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("setting mode %#o: %w", mode, err))
		}
	}
	if r.o.Xattrs {
		xs, err := readXattrs(f, ino)
		errs = append(errs, err)
		for _, x := range xs {
			var err error
			if realFd {
				err = unix.Fsetxattr(fd, x.name, x.value, 0)
			} else {
				err = unix.Setxattr(procPath(fd), x.name, x.value, 0)
			}
			if err != nil {
				// %v: ENOSPC here means a value too big for the
				// host filesystem, not a full disk.
				errs = append(errs, fmt.Errorf("setting xattr %s: %v", showName(x.name), err))
			}
		}
	}
	errs = append(errs, setTimes(fd, st))
	return errors.Join(errs...)
}
