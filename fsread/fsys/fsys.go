// Package fsys holds the types every guest filesystem reader of fsread
// shares: the inode-level FileSystem interface each reader (ext, ntfs, fat)
// implements, the Stat it reports, errors, and FS, the io/fs adapter that
// walks paths over any FileSystem. It is a leaf package; users import fsread,
// which re-exports these names.
package fsys

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"time"
)

// FileSystem is a guest filesystem read at the inode level. Inode numbers
// are the filesystem's own (ext inode, NTFS MFT record, a stable position for
// FAT): hardlinks share one. Names are the bytes the directory holds; they
// may be anything a hostile image puts there (empty, ".", "..", containing
// "/" or NUL): callers that turn them into host paths must check them.
//
// Implementations are safe for concurrent use and keep bounded caches.
type FileSystem interface {
	// Root is the inode of the root directory.
	Root() uint64
	// Stat returns an inode's metadata.
	Stat(ino uint64) (*Stat, error)
	// Lookup finds name in directory dir (hashed where the filesystem has
	// an index; case-insensitively where the directory is casefolded).
	// A missing name is an error that wraps fs.ErrNotExist.
	Lookup(dir uint64, name string) (uint64, error)
	// ReadDir lists a directory without "." and "..", in on-disk order.
	ReadDir(dir uint64) ([]DirEntry, error)
	// Readlink returns a symlink's target.
	Readlink(ino uint64) (string, error)
	// Open returns the content of a regular file. Reads past Size return
	// io.EOF exactly; holes and unwritten ranges read as zeros.
	Open(ino uint64) (File, error)
	// Xattrs lists an inode's extended attributes by full name
	// ("user.x", "security.selinux", "system.ntfs_attrib_be", ...).
	Xattrs(ino uint64) ([]string, error)
	// Xattr returns one extended attribute's value; a missing one wraps
	// ErrNoXattr.
	Xattr(ino uint64, name string) ([]byte, error)
	// Info describes the filesystem.
	Info() *Info
	// Warnings are conditions that did not stop reading (unclean NTFS log,
	// replayed ext journal).
	Warnings() []string
	// Close releases caches; the underlying reader is the caller's.
	Close() error
}

// File is the content of a regular file.
type File interface {
	io.ReaderAt
	Size() int64
	// Extents lists the allocated ranges of the file (data the filesystem
	// stores), sorted; a nil slice with nil error means "all data". Holes
	// are the ranges between them. Used to restore sparse files.
	Extents() ([]Range, error)
}

// Range is a byte range of a file.
type Range struct{ Off, Len int64 }

// DirEntry is one name in a directory.
type DirEntry struct {
	Name string
	Ino  uint64
	// Type is the file type bits (fs.ModeDir, fs.ModeSymlink, ...; 0 for a
	// regular file) from the directory entry when it records one, else from
	// the inode.
	Type fs.FileMode
}

// Stat is an inode's metadata as the guest sees it.
type Stat struct {
	Ino uint64 `json:"ino"`
	// Mode is the Unix st_mode: S_IFMT type bits and permission bits.
	Mode   uint32 `json:"mode"`
	Uid    uint32 `json:"uid"`
	Gid    uint32 `json:"gid"`
	Size   int64  `json:"size"`
	Nlink  uint32 `json:"nlink"`
	Rdev   uint64 `json:"rdev,omitempty"` // Linux dev_t: (major<<8 | minor&0xff | (minor&^0xff)<<12)
	Blocks int64  `json:"blocks"`         // 512-byte units
	// Times with nanoseconds. Btime is zero when the filesystem has none.
	Atime time.Time `json:"atime"`
	Mtime time.Time `json:"mtime"`
	Ctime time.Time `json:"ctime"`
	Btime time.Time `json:"btime,omitzero"`
	// Flags are the filesystem's own inode flags (ext i_flags, NTFS file
	// attributes), informational.
	Flags uint32 `json:"flags,omitempty"`
}

// Unix file type bits of Stat.Mode (S_IFMT and friends).
const (
	S_IFMT   = 0o170000
	S_IFSOCK = 0o140000
	S_IFLNK  = 0o120000
	S_IFREG  = 0o100000
	S_IFBLK  = 0o060000
	S_IFDIR  = 0o040000
	S_IFCHR  = 0o020000
	S_IFIFO  = 0o010000
)

// FileMode converts Stat.Mode to an io/fs mode.
func (s *Stat) FileMode() fs.FileMode { return UnixMode(s.Mode) }

// IsDir says whether the inode is a directory.
func (s *Stat) IsDir() bool { return s.Mode&S_IFMT == S_IFDIR }

// UnixMode converts a Unix st_mode to an io/fs FileMode.
func UnixMode(m uint32) fs.FileMode {
	mode := fs.FileMode(m & 0o777)
	switch m & S_IFMT {
	case S_IFDIR:
		mode |= fs.ModeDir
	case S_IFLNK:
		mode |= fs.ModeSymlink
	case S_IFIFO:
		mode |= fs.ModeNamedPipe
	case S_IFSOCK:
		mode |= fs.ModeSocket
	case S_IFCHR:
		mode |= fs.ModeDevice | fs.ModeCharDevice
	case S_IFBLK:
		mode |= fs.ModeDevice
	case S_IFREG:
	default:
		mode |= fs.ModeIrregular
	}
	if m&0o4000 != 0 {
		mode |= fs.ModeSetuid
	}
	if m&0o2000 != 0 {
		mode |= fs.ModeSetgid
	}
	if m&0o1000 != 0 {
		mode |= fs.ModeSticky
	}
	return mode
}

// Info describes a filesystem.
type Info struct {
	Type       string    `json:"fs"` // "ext2", "ext3", "ext4", "ntfs", "vfat"
	Label      string    `json:"label"`
	UUID       string    `json:"uuid"`
	BlockSize  int64     `json:"block_size"`
	Blocks     uint64    `json:"blocks"`
	FreeBlocks uint64    `json:"free_blocks"`
	Files      uint64    `json:"files,omitempty"`
	FreeFiles  uint64    `json:"free_files,omitempty"`
	Features   []string  `json:"features,omitempty"`
	NameMax    int       `json:"name_max"`
	LastMount  time.Time `json:"last_mounted,omitzero"`
}

// Errors; test with errors.Is.
var (
	// ErrCorrupt means on-disk data is inconsistent (bad checksum, pointer
	// out of range, loop). The mount turns it into EIO for that object.
	ErrCorrupt = errors.New("filesystem corrupt")
	// ErrUnsupported means a valid structure vmmount does not read
	// (encrypted content, an incompatible feature).
	ErrUnsupported = errors.New("unsupported")
	// ErrNoXattr means the attribute does not exist (ENODATA).
	ErrNoXattr = errors.New("no such attribute")
	// ErrNotDir / ErrIsDir / ErrNotSymlink are type mismatches.
	ErrNotDir     = errors.New("not a directory")
	ErrIsDir      = errors.New("is a directory")
	ErrNotSymlink = errors.New("not a symlink")
)

// CorruptError names the object that is damaged: the volume, the inode (or
// block) and what is wrong. Off is a byte offset in the volume, -1 if none.
type CorruptError struct {
	FS  string // filesystem type and volume name, e.g. "ext4 p1"
	Ino uint64 // 0 if not about an inode
	Off int64
	Msg string
	Err error // defaults to ErrCorrupt
}

func (e *CorruptError) Error() string {
	s := e.FS
	if e.Ino != 0 {
		s += fmt.Sprintf(": inode %d", e.Ino)
	}
	if e.Off >= 0 {
		s += fmt.Sprintf(": at byte %d", e.Off)
	}
	return s + ": " + e.Msg
}

func (e *CorruptError) Unwrap() error {
	if e.Err == nil {
		return ErrCorrupt
	}
	return e.Err
}
