package testimages

import (
	"fmt"
	"os"
	"time"
)

// TreeOptions choose what RichTree puts in a tree. The zero value is the
// richest tree (everything ext4 can hold) at default sizes; profiles
// (ExtTree, NTFSTree, FATTree) switch off what a filesystem cannot hold.
type TreeOptions struct {
	// Seed makes file content; the same seed gives byte-identical trees.
	// 0 means 1.
	Seed uint64
	// BigDir is the number of entries of big/ (default 5000, negative for
	// none): enough for htree directories of several levels.
	BigDir int
	// Depth is the nesting of deep/ (default 40, negative for none).
	Depth int
	// LargeSize is the size of large/random.bin (default 5 MiB, enough for
	// double-indirect blocks on 4 KiB blocks; 70 MiB crosses
	// triple-indirect on 1 KiB blocks). Negative for none.
	LargeSize int64

	NoSymlinks  bool // no symlinks (FAT)
	NoHardlinks bool // no hardlinks (FAT)
	NoXattrs    bool // no extended attributes at all (FAT)
	// UserXattrsOnly keeps user.* and drops trusted.*, security.* and ACLs
	// (ntfs-3g, whose user.* xattrs are alternate data streams).
	UserXattrsOnly bool
	NoACLs         bool // no POSIX ACLs
	NoOwners       bool // every entry owned by root (uid/gid 0)
	NoSpecial      bool // no FIFOs, devices or sockets
	NoModes        bool // default permissions only: no setuid/setgid/sticky
	NoSparse       bool // no sparse files (written densely instead)
	NoPrealloc     bool // no fallocate
	// WindowsNames restricts names to what Windows accepts: no \ : * ? " <
	// > |, no control characters, no trailing dot or space, no names that
	// differ only in case.
	WindowsNames bool
	// NoAstral leaves out characters outside the Basic Multilingual Plane
	// (emoji), which FAT long names in mtools cannot hold.
	NoAstral bool
	// MinTime and MaxTime bound the extreme timestamps of times/ (default
	// ext4 with 256-byte inodes: 1901-12-13 to 2446-05-10). Ordinary
	// entries get times between 2001 and 2030.
	MinTime, MaxTime time.Time
	// TimeStep is the granularity of every timestamp set (default 1ns;
	// NTFS 100ns; FAT 2s).
	TimeStep time.Duration
}

// Extreme ext4 times with 256-byte inodes: a signed 32-bit seconds field
// extended by 2 epoch bits (kernel Documentation/filesystems/ext4/inodes.rst,
// "Inode Timestamps"). The kernel clears the nanoseconds of a time clamped
// to either end (timestamp_truncate), so the ends have none.
var (
	extMinTime = time.Unix(-1<<31, 0).UTC()
	extMaxTime = time.Unix(1<<34-1-1<<31, 0).UTC()
)

// ExtTree is the tree for ext2/3/4: everything.
func ExtTree() TreeOptions { return TreeOptions{} }

// NTFSTree is what ntfs-3g can hold: no POSIX owners, modes, ACLs or
// special files; user.* xattrs become alternate data streams; Windows
// names; 100 ns times from 1601 on.
func NTFSTree() TreeOptions {
	return TreeOptions{
		NoOwners:       true,
		NoModes:        true,
		NoSpecial:      true,
		UserXattrsOnly: true,
		NoACLs:         true,
		WindowsNames:   true,
		MinTime:        time.Date(1700, 1, 1, 0, 0, 0, 0, time.UTC),
		MaxTime:        time.Date(2500, 12, 31, 23, 59, 59, 999999900, time.UTC),
		TimeStep:       100 * time.Nanosecond,
	}
}

// FATTree is what FAT can hold: names, content, sizes and 2 s mtimes from
// 1980 to 2107.
func FATTree() TreeOptions {
	return TreeOptions{
		NoSymlinks:   true,
		NoHardlinks:  true,
		NoXattrs:     true,
		NoOwners:     true,
		NoSpecial:    true,
		NoModes:      true,
		NoSparse:     true,
		NoPrealloc:   true,
		WindowsNames: true,
		NoAstral:     true,
		MinTime:      time.Date(1980, 1, 1, 0, 0, 0, 0, time.UTC),
		MaxTime:      time.Date(2107, 12, 31, 23, 59, 58, 0, time.UTC),
		TimeStep:     2 * time.Second,
	}
}

func (o *TreeOptions) defaults() {
	if o.Seed == 0 {
		o.Seed = 1
	}
	if o.BigDir == 0 {
		o.BigDir = 5000
	}
	if o.Depth == 0 {
		o.Depth = 40
	}
	if o.LargeSize == 0 {
		o.LargeSize = 5 << 20
	}
	if o.MinTime.IsZero() {
		o.MinTime = extMinTime
	}
	if o.MaxTime.IsZero() {
		o.MaxTime = extMaxTime
	}
	if o.TimeStep <= 0 {
		o.TimeStep = 1
	}
	if o.NoXattrs {
		o.NoACLs = true
	}
	if o.UserXattrsOnly {
		o.NoACLs = true
	}
}

// RichTree populates dir (which must exist, ideally empty) with the test
// tree: big/ (a BigDir-entry directory), deep/ (Depth levels), files/
// (assorted sizes), links/ (symlinks: relative, absolute, dangling, long,
// short, to directories, a loop), hardlinks/ (groups of 2 and 3 across
// directories), sparse/ (holes at start, middle and end; hundreds of
// extents), prealloc/ (fallocate, with and without KEEP_SIZE), large/,
// empty/, xattr/ (user, trusted, security, POSIX ACLs), names/ (UTF-8,
// 255-byte names), times/ (before 1970, after 2038, nanoseconds), special/
// (FIFO, devices, socket), modes/ (setuid, setgid, sticky), owners/ (uid
// and gid above 65535). Timestamps are set last, directories after their
// children, so a scan of the tree sees exactly the times chosen here.
//
// It writes through ordinary system calls, so dir may be on any filesystem
// (host disk, a kernel loop mount, an ntfs-3g mount): o must then leave out
// what that filesystem refuses, or RichTree fails naming the entry.
func RichTree(dir string, o TreeOptions) error {
	o.defaults()
	fi, err := os.Stat(dir)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("RichTree: %s is not a directory", dir)
	}
	b := newBuilder(dir, o)
	b.files()
	b.big()
	b.deep()
	b.links()
	b.hardlinks()
	b.sparse()
	b.prealloc()
	b.large()
	b.names()
	b.xattrs()
	b.special()
	b.modes()
	b.owners()
	b.extremeTimes()
	b.finish()
	return b.err
}
