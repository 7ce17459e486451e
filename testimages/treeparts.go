package testimages

import (
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// files/: sizes around the boundaries readers care about (inline data at
// 60 bytes, 1 KiB and 4 KiB blocks, the 12 direct blocks), zeros written
// as data, text, and empty/.
func (b *builder) files() {
	b.mkdir("files")
	for _, n := range []int64{0, 1, 59, 60, 61, 100, 1023, 1024, 1025, 4095, 4096, 4097,
		12 << 10, 48<<10 + 1, 64 << 10, 64<<10 + 1, 300000, 1<<20 + 7} {
		b.file(fmt.Sprintf("files/size-%d.bin", n), n)
	}
	b.fileBytes("files/zeros.bin", make([]byte, 64<<10))
	b.fileBytes("files/text.txt", []byte(strings.Repeat("The quick brown fox jumps over the lazy dog.\n", 100)))
	b.mkdir("empty")
	b.fileBytes("empty/file", nil)
	b.mkdir("empty/dir")
	b.mkdir("empty/nested")
	b.mkdir("empty/nested/a")
	b.mkdir("empty/nested/a/b")
}

// big/: one directory of BigDir entries with names of varied length, so
// ext builds multi-level htrees and NTFS multi-block indexes. Every 100th
// entry is a directory, every 7th file has a little content.
func (b *builder) big() {
	if b.o.BigDir < 0 {
		return
	}
	b.mkdir("big")
	const alpha = "abcdefghijklmnopqrstuvwxyz0123456789"
	for i := range b.o.BigDir {
		suffix := make([]byte, b.rng.IntN(31))
		for j := range suffix {
			suffix[j] = alpha[b.rng.IntN(len(alpha))]
		}
		rel := fmt.Sprintf("big/e%05d-%s", i, suffix)
		switch {
		case i%100 == 99:
			b.mkdir(rel)
		case i%7 == 0:
			b.file(rel, int64(1+b.rng.IntN(200)))
		default:
			b.fileBytes(rel, nil)
		}
	}
}

// deep/: Depth nested directories with a file at the bottom and one half
// way down.
func (b *builder) deep() {
	if b.o.Depth < 0 {
		return
	}
	rel := "deep"
	b.mkdir(rel)
	for i := 1; i <= b.o.Depth; i++ {
		rel += fmt.Sprintf("/l%02d", i)
		b.mkdir(rel)
		if i == b.o.Depth/2 {
			b.file(rel+"/middle.txt", 123)
		}
	}
	b.file(rel+"/bottom.txt", 4321)
}

// links/: symlinks of every shape. ext stores targets shorter than 60
// bytes in the inode ("fast"), longer ones in a block.
func (b *builder) links() {
	if b.o.NoSymlinks {
		return
	}
	b.mkdir("links")
	b.symlink("../files/size-100.bin", "links/rel")
	b.symlink("/etc/hostname", "links/abs")
	b.symlink("does/not/exist", "links/dangling")
	b.symlink("x", "links/short")
	for _, n := range []int{59, 60, 61} {
		b.symlink(strings.Repeat("t", n), fmt.Sprintf("links/len%d", n))
	}
	b.symlink(strings.Repeat("long/", 40), "links/long200")
	b.symlink(strings.Repeat("0123456789/", 90)+"end", "links/long993")
	b.symlink("../deep", "links/todir")
	b.symlink("loop-b", "links/loop-a")
	b.symlink("loop-a", "links/loop-b")
	b.symlink("self", "links/self")
	b.symlink("../names/café-naïve.txt", "links/utf8")
	b.symlink("../../..", "links/escape")
}

// hardlinks/: a group of 2 and a group of 3 across directories, a link to
// a file outside hardlinks/, an empty file with two names; for ext also a
// hardlinked FIFO and symlink.
func (b *builder) hardlinks() {
	if b.o.NoHardlinks {
		return
	}
	b.mkdir("hardlinks")
	for _, d := range []string{"a", "b", "c"} {
		b.mkdir("hardlinks/" + d)
	}
	b.file("hardlinks/a/two-1", 5000)
	b.link("hardlinks/a/two-1", "hardlinks/b/two-2")
	b.file("hardlinks/a/three-1", 70)
	b.link("hardlinks/a/three-1", "hardlinks/b/three-2")
	b.link("hardlinks/a/three-1", "hardlinks/c/three-3")
	b.link("files/size-4097.bin", "hardlinks/size-4097.bin")
	b.fileBytes("hardlinks/empty-1", nil)
	b.link("hardlinks/empty-1", "hardlinks/c/empty-2")
	if !b.o.NoSpecial {
		b.mkfifo("hardlinks/fifo-1")
		b.link("hardlinks/fifo-1", "hardlinks/c/fifo-2")
	}
	if !b.o.NoSymlinks && !b.o.NoSpecial {
		b.symlink("../files/text.txt", "hardlinks/symlink-1")
		b.link("hardlinks/symlink-1", "hardlinks/c/symlink-2")
	}
}

// sparse/: holes at the start, middle and end, a file that is all hole,
// unaligned data, and one with hundreds of extents (a depth-2 extent tree
// on 1 KiB blocks).
func (b *builder) sparse() {
	if b.o.NoSparse {
		return
	}
	b.mkdir("sparse")
	b.chunks("sparse/hole-start", 1<<20+4096, []int64{1 << 20}, 4096)
	b.chunks("sparse/hole-middle", 1<<20+8192, []int64{0, 1<<20 + 4096}, 4096)
	b.chunks("sparse/hole-end", 3<<20, []int64{0}, 4096)
	b.chunks("sparse/all-hole", 10<<20, nil, 0)
	b.chunks("sparse/unaligned", 100003, []int64{5000, 70001}, 777)
	offs := make([]int64, 400)
	for i := range offs {
		offs[i] = int64(i) * 8192
	}
	b.chunks("sparse/fragmented", 400*8192, offs, 512)
}

// prealloc/: fallocate'd (unwritten) ranges, which read as zeros: a whole
// file, blocks past EOF (KEEP_SIZE), and an unwritten range split by a
// write.
func (b *builder) prealloc() {
	if b.o.NoPrealloc {
		return
	}
	b.mkdir("prealloc")
	b.falloc("prealloc/whole", nil, 0, 0, 1<<20)
	b.falloc("prealloc/keep-size", []byte("ten bytes\n"), unix.FALLOC_FL_KEEP_SIZE, 0, 1<<20)
	b.falloc("prealloc/split", nil, 0, 0, 256<<10, 64<<10, 128<<10)
}

// falloc writes data, fallocates [off, off+n) with mode, then writes 4 KiB
// of content at each of writes.
func (b *builder) falloc(rel string, data []byte, mode uint32, off, n int64, writes ...int64) {
	if b.err != nil {
		return
	}
	f, err := os.OpenFile(b.path(rel), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		b.fail(rel, err)
		return
	}
	defer f.Close()
	if _, err := f.Write(data); err != nil {
		b.fail(rel, err)
		return
	}
	if err := unix.Fallocate(int(f.Fd()), mode, off, n); err != nil {
		b.fail(rel, fmt.Errorf("fallocate: %w", err))
		return
	}
	buf := make([]byte, 4096)
	src := b.content(rel)
	for _, w := range writes {
		src.Read(buf)
		if _, err := f.WriteAt(buf, w); err != nil {
			b.fail(rel, err)
			return
		}
	}
	b.fail(rel, f.Close())
	b.stamp(rel)
}

func (b *builder) large() {
	if b.o.LargeSize < 0 {
		return
	}
	b.mkdir("large")
	b.file("large/random.bin", b.o.LargeSize)
}

// names/: UTF-8 beyond ASCII, 255-byte names (the Linux NAME_MAX) in one-,
// two- and three-byte characters, 8.3 and mixed-case names, and for
// filesystems that allow it, characters Windows forbids.
func (b *builder) names() {
	b.mkdir("names")
	names := []string{
		"café-naïve.txt", "Ünïcödé Dïr", "中文文件名.txt", "日本語のファイル", "한국어",
		"Ελληνικά", "with space", ".hidden", "README.TXT", "lower.txt", "MixedCase.Txt",
		strings.Repeat("a", 255),
		strings.Repeat("é", 127) + "x",
		strings.Repeat("中", 85),
		"-dash", "#hash", "percent%20", "quote'single", "semi;colon",
	}
	if !b.o.NoAstral {
		names = append(names, "emoji-😀🎉.txt")
	}
	if !b.o.WindowsNames {
		names = append(names, "Case", "CASE", "colon:name", "back\\slash", "star*", "q?",
			"tab\tname", "new\nline", "trailing.", "trailing ", "CON", "\x01ctrl")
	}
	for i, n := range names {
		if i%4 == 1 {
			b.mkdir("names/" + n)
			b.file("names/"+n+"/inside", 10)
		} else {
			b.file("names/"+n, int64(10+i))
		}
	}
}

// xattrs/: user.* attributes (small, empty, binary, many), trusted.* and
// security.* ones, on files, a directory and a symlink; POSIX ACLs (access
// and default) in the system.posix_acl_* xattr format.
func (b *builder) xattrs() {
	if b.o.NoXattrs {
		return
	}
	b.mkdir("xattr")
	b.file("xattr/user", 100)
	b.xattr("xattr/user", "user.comment", []byte("hello, world"))
	b.xattr("xattr/user", "user.empty", nil)
	bin := make([]byte, 256)
	for i := range bin {
		bin[i] = byte(i)
	}
	b.xattr("xattr/user", "user.binary", bin)
	b.file("xattr/many", 10)
	for i := range 20 {
		b.xattr("xattr/many", fmt.Sprintf("user.attr%02d", i), []byte(strings.Repeat(string(rune('a'+i)), 10+i)))
	}
	b.file("xattr/blockvalue", 10)
	b.xattr("xattr/blockvalue", "user.big", []byte(strings.Repeat("0123456789abcdef", 40)))
	b.mkdir("xattr/dir")
	b.xattr("xattr/dir", "user.dir", []byte("on a directory"))
	if !b.o.UserXattrsOnly {
		b.file("xattr/trusted", 10)
		b.xattr("xattr/trusted", "trusted.test", []byte("trusted value"))
		b.xattr("xattr/trusted", "security.test", []byte("security value"))
		if !b.o.NoSymlinks {
			b.symlink("../files/text.txt", "xattr/symlink")
			b.xattr("xattr/symlink", "trusted.onlink", []byte("on a symlink"))
		}
	}
	if !b.o.NoACLs {
		acl := posixACL(aclEntry{aclUserObj, 6, aclUndefined}, aclEntry{aclUser, 6, 1000},
			aclEntry{aclGroupObj, 4, aclUndefined}, aclEntry{aclGroup, 4, 100000},
			aclEntry{aclMask, 6, aclUndefined}, aclEntry{aclOther, 0, aclUndefined})
		b.file("xattr/acl-file", 10)
		b.xattr("xattr/acl-file", "system.posix_acl_access", acl)
		b.mkdir("xattr/acl-dir")
		b.xattr("xattr/acl-dir", "system.posix_acl_access", acl)
		b.xattr("xattr/acl-dir", "system.posix_acl_default", acl)
	}
}

// POSIX ACL xattr format (linux include/uapi/linux/posix_acl_xattr.h): a
// version 2 header, then (tag, perm, id) entries sorted by tag and id.
const (
	aclUserObj   = 0x01
	aclUser      = 0x02
	aclGroupObj  = 0x04
	aclGroup     = 0x08
	aclMask      = 0x10
	aclOther     = 0x20
	aclUndefined = 0xffffffff
)

type aclEntry struct {
	tag, perm uint16
	id        uint32
}

func posixACL(ents ...aclEntry) []byte {
	out := binary.LittleEndian.AppendUint32(nil, 2)
	for _, e := range ents {
		out = binary.LittleEndian.AppendUint16(out, e.tag)
		out = binary.LittleEndian.AppendUint16(out, e.perm)
		out = binary.LittleEndian.AppendUint32(out, e.id)
	}
	return out
}

// special/: a FIFO, character and block devices (one with a major and
// minor past the old 8-bit encoding) and a Unix socket.
func (b *builder) special() {
	if b.o.NoSpecial {
		return
	}
	b.mkdir("special")
	b.mkfifo("special/fifo")
	b.mknod("special/chr-1-3", unix.S_IFCHR|0o666, 1, 3)
	b.mknod("special/blk-8-1", unix.S_IFBLK|0o660, 8, 1)
	b.mknod("special/chr-300-70000", unix.S_IFCHR|0o600, 300, 70000)
	b.socket("special/socket")
}

func (b *builder) mkfifo(rel string) {
	if b.err != nil {
		return
	}
	b.fail(rel, unix.Mkfifo(b.path(rel), 0o644))
	b.stamp(rel)
}

func (b *builder) mknod(rel string, mode uint32, major, minor uint32) {
	if b.err != nil {
		return
	}
	b.fail(rel, unix.Mknod(b.path(rel), mode, int(unix.Mkdev(major, minor))))
	b.stamp(rel)
}

// socket binds a Unix socket at rel and closes it, leaving the socket
// file. The path goes through /proc/self/fd so it fits in sun_path however
// deep the tree is.
func (b *builder) socket(rel string) {
	if b.err != nil {
		return
	}
	dir, err := os.Open(b.path(rel[:strings.LastIndex(rel, "/")]))
	if err != nil {
		b.fail(rel, err)
		return
	}
	defer dir.Close()
	addr := fmt.Sprintf("/proc/self/fd/%d/%s", dir.Fd(), rel[strings.LastIndex(rel, "/")+1:])
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: addr, Net: "unix"})
	if err != nil {
		b.fail(rel, err)
		return
	}
	l.SetUnlinkOnClose(false)
	b.fail(rel, l.Close())
	b.stamp(rel)
}

// modes/: permission bits from 0000 to 7777, setuid, setgid and sticky on
// files and directories.
func (b *builder) modes() {
	if b.o.NoModes {
		return
	}
	b.mkdir("modes")
	for _, m := range []uint32{0o000, 0o400, 0o600, 0o644, 0o755, 0o4755, 0o2755, 0o6755, 0o1644, 0o7777, 0o0111} {
		rel := fmt.Sprintf("modes/f%04o", m)
		b.file(rel, 8)
		b.chmod(rel, os.FileMode(m))
	}
	for _, m := range []uint32{0o1777, 0o2775, 0o700, 0o555, 0o000} {
		rel := fmt.Sprintf("modes/d%04o", m)
		b.mkdir(rel)
		b.chmod(rel, os.FileMode(m))
	}
}

// owners/: uids and gids above 65535 (ext stores the high 16 bits apart)
// and the largest valid one.
func (b *builder) owners() {
	if b.o.NoOwners {
		return
	}
	b.mkdir("owners")
	for _, ug := range [][2]int{{1000, 1000}, {65534, 65534}, {65535, 65535}, {65536, 65537},
		{100000, 200000}, {4294967294, 4294967294}, {1, 70000}} {
		rel := fmt.Sprintf("owners/u%d-g%d", ug[0], ug[1])
		b.file(rel, 4)
		b.chown(rel, ug[0], ug[1])
	}
	b.mkdir("owners/dir-70000")
	b.chown("owners/dir-70000", 70000, 70000)
	if !b.o.NoSymlinks {
		b.symlink("u1000-g1000", "owners/symlink-80000")
		b.chown("owners/symlink-80000", 80000, 80001)
	}
}

// times/: timestamps at the edges of each filesystem's range (kept when
// inside [MinTime, MaxTime]), nanoseconds, before 1970 and after 2038.
func (b *builder) extremeTimes() {
	b.mkdir("times")
	ts := []struct {
		name string
		t    time.Time
	}{
		{"min", b.o.MinTime},
		{"max", b.o.MaxTime},
		{"y1601", time.Date(1601, 1, 1, 0, 0, 0, 0, time.UTC)},
		{"y1901-min32", extMinTime},
		{"y1950-ns", time.Date(1950, 6, 15, 12, 0, 0, 123456789, time.UTC)},
		{"y1969-before-epoch", time.Date(1969, 12, 31, 23, 59, 59, 500000000, time.UTC)},
		{"y1970-epoch", time.Unix(0, 0)},
		{"y1980-fat-min", time.Date(1980, 1, 1, 0, 0, 0, 0, time.UTC)},
		{"y2020-ns", time.Date(2020, 2, 29, 12, 34, 56, 987654321, time.UTC)},
		{"y2038-max32", time.Unix(1<<31-1, 0)},
		{"y2038-after", time.Unix(1<<31, 0)},
		{"y2106-after-u32", time.Unix(1<<32, 1)},
		{"y2107-fat-max", time.Date(2107, 12, 31, 23, 59, 58, 0, time.UTC)},
		{"y2262-after-i64ns", time.Date(2262, 6, 1, 0, 0, 0, 0, time.UTC)},
		{"y2446-ext-max", extMaxTime},
	}
	for _, e := range ts {
		if e.t.Before(b.o.MinTime) || e.t.After(b.o.MaxTime) {
			continue
		}
		rel := "times/" + e.name
		b.file(rel, 16)
		atime := e.t.Add(-7 * 24 * time.Hour) // kept inside the range
		if e.t.Year() < 2000 {
			atime = e.t.Add(7 * 24 * time.Hour)
		}
		b.settime(rel, atime, e.t)
	}
	b.mkdir("times/dir-1960")
	b.file("times/dir-1960/child", 1)
	if t := time.Date(1960, 1, 1, 0, 0, 0, 0, time.UTC); !t.Before(b.o.MinTime) {
		b.settime("times/dir-1960", t, t)
	}
}
