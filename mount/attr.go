package mount

import (
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/vmmount/vmmount/fsread/fsys"
)

// timeout is how long the kernel may cache entries and attributes: the
// served data never changes.
const timeout = 24 * time.Hour

func setTime(sec *uint64, nsec *uint32, t time.Time) {
	if t.IsZero() {
		return
	}
	// fuse_attr carries u64 seconds; the kernel reinterprets them as
	// signed, so times before 1970 survive the cast.
	*sec = uint64(t.Unix())
	*nsec = uint32(t.Nanosecond())
}

// fillAttr copies a guest Stat into a FUSE attribute, with ino as the
// mount-wide inode number.
func fillAttr(out *fuse.Attr, st *fsys.Stat, ino uint64) {
	out.Ino = ino
	out.Size = uint64(st.Size)
	out.Blocks = uint64(st.Blocks)
	out.Mode = st.Mode
	out.Nlink = st.Nlink
	out.Uid = st.Uid
	out.Gid = st.Gid
	out.Rdev = uint32(st.Rdev)
	out.Blksize = 4096
	setTime(&out.Atime, &out.Atimensec, st.Atime)
	setTime(&out.Mtime, &out.Mtimensec, st.Mtime)
	setTime(&out.Ctime, &out.Ctimensec, st.Ctime)
}

// synthAttr is the attribute of a synthetic node.
func synthAttr(out *fuse.Attr, mode uint32, size int64, mtime time.Time, ino uint64) {
	out.Ino = ino
	out.Mode = mode
	out.Size = uint64(size)
	out.Blocks = (uint64(size) + 511) / 512
	out.Nlink = 1
	if mode&fsys.S_IFMT == fsys.S_IFDIR {
		out.Nlink = 2
	}
	out.Blksize = 4096
	setTime(&out.Atime, &out.Atimensec, mtime)
	setTime(&out.Mtime, &out.Mtimensec, mtime)
	setTime(&out.Ctime, &out.Ctimensec, mtime)
}

func entryTimeouts(out *fuse.EntryOut) {
	out.SetEntryTimeout(timeout)
	out.SetAttrTimeout(timeout)
}
