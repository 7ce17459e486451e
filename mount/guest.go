package mount

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/vmmount/vmmount/fsread/fsys"
)

// guestFS is one opened guest filesystem in the mount.
type guestFS struct {
	srv  *Server
	fs   fsys.FileSystem
	id   uint64 // volume number, the high bits of inode numbers
	name string
	pf   pfCache
}

// inoBits is how many low bits of a mount inode number are the guest's own
// inode number; the bits above hold the volume number.
const inoBits = 40

func (g *guestFS) fuseIno(ino uint64) uint64 {
	if ino < 1<<inoBits {
		return g.id<<inoBits | ino
	}
	return g.srv.bigIno(g.id, ino)
}

// volState opens a Volume once.
type volState struct {
	v    *Volume
	once sync.Once
	g    *guestFS
	err  error
}

// guestNode is a directory, file, symlink or special file of a guest
// filesystem. The root of a volume has vol set and opens it on first use.
type guestNode struct {
	gofs.Inode
	srv  *Server
	vol  *volState // set on a volume's root only
	g    *guestFS  // set on every other node
	ino  uint64    // guest inode (0 on a volume root until opened)
	fino uint64    // inode number in the mount

	content atomic.Pointer[fsys.File]  // a regular file's reader, once read
	listing atomic.Pointer[dirListing] // a directory's entries until read to the end
}

var (
	_ gofs.NodeLookuper       = (*guestNode)(nil)
	_ gofs.NodeOpendirHandler = (*guestNode)(nil)
	_ gofs.NodeGetattrer      = (*guestNode)(nil)
	_ gofs.NodeOpener         = (*guestNode)(nil)
	_ gofs.NodeReader         = (*guestNode)(nil)
	_ gofs.NodeReadlinker     = (*guestNode)(nil)
	_ gofs.NodeGetxattrer     = (*guestNode)(nil)
	_ gofs.NodeListxattrer    = (*guestNode)(nil)
	_ gofs.NodeStatfser       = (*guestNode)(nil)
	_ gofs.NodeFlusher        = (*guestNode)(nil)
)

// guest returns the node's filesystem and guest inode, opening the volume
// on a volume root.
func (n *guestNode) guest() (*guestFS, uint64, error) {
	if n.vol == nil {
		return n.g, n.ino, nil
	}
	s := n.vol
	s.once.Do(func() {
		f, err := s.v.Open()
		if err != nil {
			s.err = err
			n.srv.report(s.v.Name, fmt.Errorf("volume %s: %w", s.v.Name, err))
			return
		}
		s.g = &guestFS{srv: n.srv, fs: f, id: n.srv.nextVolID(), name: s.v.Name}
	})
	if s.err != nil {
		return nil, 0, s.err
	}
	return s.g, s.g.fs.Root(), nil
}

func (n *guestNode) path() string { return "/" + n.Path(nil) }

// fail turns an error into an errno, reporting it once per path unless it
// is an ordinary answer.
func (n *guestNode) fail(what string, err error) syscall.Errno {
	if !isQuiet(err) {
		n.srv.report(n.path(), fmt.Errorf("%s: %w", what, err))
	}
	return toErrno(err)
}

func (n *guestNode) errorText() []byte {
	return []byte(fmt.Sprintf("vmmount could not open volume %s:\n%v\n", n.vol.v.Name, n.vol.err))
}

func (n *guestNode) Getattr(ctx context.Context, fh gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	out.SetTimeout(timeout)
	g, ino, err := n.guest()
	if err != nil {
		synthAttr(&out.Attr, fsys.S_IFDIR|0o555, 0, n.srv.mtime, n.fino)
		return 0
	}
	st, err := g.fs.Stat(ino)
	if err != nil {
		return n.fail("stat", err)
	}
	fillAttr(&out.Attr, st, n.fino)
	return 0
}

func (n *guestNode) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	g, dir, err := n.guest()
	if err != nil {
		if name != ErrorFileName {
			return nil, syscall.ENOENT
		}
		data := n.errorText()
		t, ino := n.srv.newNode(&Text{Data: data, Mtime: n.srv.mtime})
		synthAttr(&out.Attr, fsys.S_IFREG|0o444, int64(len(data)), n.srv.mtime, ino)
		entryTimeouts(out)
		return n.NewInode(ctx, t, gofs.StableAttr{Mode: fsys.S_IFREG, Ino: ino}), 0
	}
	ino, err := g.fs.Lookup(dir, name)
	if err != nil {
		return nil, n.fail("lookup "+name, err)
	}
	c, errno := n.child(ctx, g, ino, name, out)
	if errno == 0 && c.StableAttr().Mode != fsys.S_IFDIR {
		n.srv.plus.lookedUp(ctx)
	}
	return c, errno
}

// child makes the node of entry name, guest inode ino, of this directory.
func (n *guestNode) child(ctx context.Context, g *guestFS, ino uint64, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	st, err := g.fs.Stat(ino)
	if err != nil {
		return nil, n.fail("stat "+name, err)
	}
	return n.childStat(ctx, g, ino, st, out), 0
}

func (n *guestNode) childStat(ctx context.Context, g *guestFS, ino uint64, st *fsys.Stat, out *fuse.EntryOut) *gofs.Inode {
	fino := g.fuseIno(ino)
	fillAttr(&out.Attr, st, fino)
	entryTimeouts(out)
	child := &guestNode{srv: n.srv, g: g, ino: ino, fino: fino}
	return n.NewInode(ctx, child, gofs.StableAttr{Mode: st.Mode & fsys.S_IFMT, Ino: fino})
}

// OpendirHandle serves a directory from its listing, made when it is
// first read and kept until a read reaches its end (see rawFS: every
// READDIR opens a handle here).
func (n *guestNode) OpendirHandle(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	files := n.srv.plus.filesToo(ctx)
	if l := n.listing.Load(); l != nil {
		return &dirHandle{n: n, l: l, files: files}, 0, 0
	}
	g, dir, err := n.guest()
	if err != nil {
		return &dirHandle{n: n, l: &dirListing{ents: []fuse.DirEntry{{Name: ErrorFileName, Mode: fsys.S_IFREG, Off: 1}}}}, 0, 0
	}
	ents, stats, err := g.readDir(dir)
	if err != nil {
		return nil, 0, n.fail("readdir", err)
	}
	g.prefetch(ents)
	l := &dirListing{g: g, ents: make([]fuse.DirEntry, 0, len(ents)), inos: make([]uint64, 0, len(ents)), stats: make([]*fsys.Stat, 0, len(ents))}
	for i, e := range ents {
		if e.Name == "" || e.Name == "." || e.Name == ".." || strings.ContainsAny(e.Name, "/\x00") {
			n.srv.report(n.path(), fmt.Errorf("entry %q (inode %d) has a name no path can hold; not shown", e.Name, e.Ino))
			continue
		}
		l.ents = append(l.ents, fuse.DirEntry{Name: e.Name, Ino: g.fuseIno(e.Ino), Mode: typeBits(e.Type), Off: uint64(len(l.ents) + 1)})
		l.inos = append(l.inos, e.Ino)
		var st *fsys.Stat
		if i < len(stats) {
			st = stats[i]
		}
		l.stats = append(l.stats, st)
	}
	n.listing.Store(l)
	return &dirHandle{n: n, l: l, files: files}, 0, 0
}

// dirListing is a guest directory's entries and the guest inode of each,
// so that READDIRPLUS stats the entry it lists instead of searching the
// directory for its name again. An entry's Off is its index + 1.
type dirListing struct {
	g     *guestFS // nil for a volume that failed to open
	ents  []fuse.DirEntry
	inos  []uint64
	stats []*fsys.Stat // made ahead by the prefetch; nil entries are stat'ed when asked
}

// dirHandle is a read position in a listing.
type dirHandle struct {
	n     *guestNode
	l     *dirListing
	pos   int  // next entry
	read  bool // an entry was returned
	files bool // READDIRPLUS gives the attributes of files too (plusPolicy)
}

var (
	_ gofs.FileReaddirenter = (*dirHandle)(nil)
	_ gofs.FileSeekdirer    = (*dirHandle)(nil)
	_ gofs.FileLookuper     = (*dirHandle)(nil)
)

func (h *dirHandle) Readdirent(ctx context.Context) (*fuse.DirEntry, syscall.Errno) {
	if h.pos >= len(h.l.ents) {
		if !h.read {
			// A read that starts at the end is the kernel's last:
			// it has every entry now and keeps them. Drop ours.
			h.n.listing.CompareAndSwap(h.l, nil)
		}
		return nil, 0
	}
	h.read = true
	h.pos++
	// go-fuse copies the entry and changes only an Off of 0, which ours
	// never is: no copy needed.
	return &h.l.ents[h.pos-1], 0
}

func (h *dirHandle) Seekdir(ctx context.Context, off uint64) syscall.Errno {
	h.pos = int(min(off, uint64(len(h.l.ents))))
	return 0
}

// Lookup answers READDIRPLUS for the entry Readdirent gave last. An error
// leaves the entry without attributes (node ID 0), which the kernel lists
// without making an inode for it.
func (h *dirHandle) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	if h.l.g == nil || h.pos == 0 || h.l.ents[h.pos-1].Name != name {
		return h.n.Lookup(ctx, name, out)
	}
	i := h.pos - 1
	if !h.files && h.l.ents[i].Mode != fsys.S_IFDIR {
		return nil, syscall.ENOENT
	}
	if st := h.l.stats[i]; st != nil {
		return h.n.childStat(ctx, h.l.g, h.l.inos[i], st, out), 0
	}
	return h.n.child(ctx, h.l.g, h.l.inos[i], name, out)
}

func typeBits(t fs.FileMode) uint32 {
	switch {
	case t&fs.ModeDir != 0:
		return fsys.S_IFDIR
	case t&fs.ModeSymlink != 0:
		return fsys.S_IFLNK
	case t&fs.ModeNamedPipe != 0:
		return fsys.S_IFIFO
	case t&fs.ModeSocket != 0:
		return fsys.S_IFSOCK
	case t&fs.ModeCharDevice != 0:
		return fsys.S_IFCHR
	case t&fs.ModeDevice != 0:
		return fsys.S_IFBLK
	}
	return fsys.S_IFREG
}

// Opens are not served: Open answers ENOSYS, which (with the
// FUSE_NO_OPEN_SUPPORT capability go-fuse negotiates) makes the kernel stop
// sending OPEN and RELEASE for files of this mount, and Flush answers ENOSYS
// so it stops sending FLUSH on close too. A tar or cp of many small files
// then costs one round trip per read instead of four. The mount is
// read-only, so the kernel refuses writable opens before asking.
func (n *guestNode) Open(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	return nil, 0, syscall.ENOSYS
}

func (n *guestNode) Flush(ctx context.Context, fh gofs.FileHandle) syscall.Errno {
	return syscall.ENOSYS
}

// file returns the node's content reader, opened on first use and kept
// with the node.
func (n *guestNode) file() (fsys.File, error) {
	if f := n.content.Load(); f != nil {
		return *f, nil
	}
	g, ino, err := n.guest()
	if err != nil {
		return nil, syscall.EISDIR
	}
	f, err := g.fs.Open(ino)
	if err != nil {
		return nil, err
	}
	n.content.CompareAndSwap(nil, &f)
	return *n.content.Load(), nil
}

func (n *guestNode) Read(ctx context.Context, fh gofs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	f, err := n.file()
	if err != nil {
		return nil, n.fail("open", err)
	}
	k, err := f.ReadAt(dest, off)
	if err != nil && err != io.EOF {
		return nil, n.fail(fmt.Sprintf("read at %d", off), err)
	}
	return fuse.ReadResultData(dest[:k]), 0
}

func (n *guestNode) Readlink(ctx context.Context) ([]byte, syscall.Errno) {
	g, ino, err := n.guest()
	if err != nil {
		return nil, syscall.EINVAL
	}
	t, err := g.fs.Readlink(ino)
	if err != nil {
		return nil, n.fail("readlink", err)
	}
	return []byte(t), 0
}

func (n *guestNode) Getxattr(ctx context.Context, attr string, dest []byte) (uint32, syscall.Errno) {
	g, ino, err := n.guest()
	if err != nil {
		return 0, syscall.ENODATA
	}
	v, err := g.fs.Xattr(ino, attr)
	if err != nil {
		return 0, n.fail("getxattr "+attr, err)
	}
	if len(dest) == 0 {
		return uint32(len(v)), 0
	}
	if len(dest) < len(v) {
		return uint32(len(v)), syscall.ERANGE
	}
	return uint32(copy(dest, v)), 0
}

func (n *guestNode) Listxattr(ctx context.Context, dest []byte) (uint32, syscall.Errno) {
	g, ino, err := n.guest()
	if err != nil {
		return 0, 0
	}
	names, err := g.fs.Xattrs(ino)
	if err != nil {
		return 0, n.fail("listxattr", err)
	}
	var b []byte
	for _, nm := range names {
		b = append(append(b, nm...), 0)
	}
	if len(dest) == 0 {
		return uint32(len(b)), 0
	}
	if len(dest) < len(b) {
		return uint32(len(b)), syscall.ERANGE
	}
	return uint32(copy(dest, b)), 0
}

func (n *guestNode) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	g, _, err := n.guest()
	if err != nil {
		return 0
	}
	in := g.fs.Info()
	out.Bsize = uint32(in.BlockSize)
	out.Frsize = uint32(in.BlockSize)
	out.Blocks = in.Blocks
	out.Bfree = in.FreeBlocks
	out.Bavail = in.FreeBlocks
	out.Files = in.Files
	out.Ffree = in.FreeFiles
	out.NameLen = uint32(in.NameMax)
	return 0
}

var _ gofs.NodeStatxer = (*guestNode)(nil)

// Statx adds what getattr cannot carry: the birth time (ext4 crtime, NTFS
// creation time), asked for by `stat` and statx(2).
func (n *guestNode) Statx(ctx context.Context, fh gofs.FileHandle, flags uint32, mask uint32, out *fuse.StatxOut) syscall.Errno {
	out.SetTimeout(timeout)
	g, ino, err := n.guest()
	if err != nil {
		var a fuse.Attr
		synthAttr(&a, fsys.S_IFDIR|0o555, 0, n.srv.mtime, n.fino)
		statxFromAttr(&out.Statx, &a)
		return 0
	}
	st, err := g.fs.Stat(ino)
	if err != nil {
		return n.fail("stat", err)
	}
	var a fuse.Attr
	fillAttr(&a, st, n.fino)
	statxFromAttr(&out.Statx, &a)
	out.RdevMajor, out.RdevMinor = devMajor(st.Rdev), devMinor(st.Rdev)
	if !st.Btime.IsZero() {
		out.Mask |= unix.STATX_BTIME
		out.Btime.Sec = uint64(st.Btime.Unix())
		out.Btime.Nsec = uint32(st.Btime.Nanosecond())
	}
	return 0
}

func statxFromAttr(out *fuse.Statx, a *fuse.Attr) {
	out.Mask = unix.STATX_BASIC_STATS
	out.Blksize = a.Blksize
	out.Nlink = a.Nlink
	out.Uid, out.Gid = a.Uid, a.Gid
	out.Mode = uint16(a.Mode)
	out.Ino = a.Ino
	out.Size = a.Size
	out.Blocks = a.Blocks
	out.Atime = fuse.SxTime{Sec: a.Atime, Nsec: a.Atimensec}
	out.Mtime = fuse.SxTime{Sec: a.Mtime, Nsec: a.Mtimensec}
	out.Ctime = fuse.SxTime{Sec: a.Ctime, Nsec: a.Ctimensec}
}

// Linux dev_t halves (new_encode_dev layout, as fsys.Stat.Rdev holds).
func devMajor(d uint64) uint32 { return uint32((d >> 8) & 0xfff) }
func devMinor(d uint64) uint32 { return uint32((d & 0xff) | ((d >> 12) & 0xfff00)) }
