package restore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/vmmount/vmmount/fsread/fsys"
	"github.com/vmmount/vmmount/internal/progress"
)

// TarOptions control a restore into a tar stream.
type TarOptions struct {
	// Xattrs stores extended attributes as SCHILY.xattr.<name> records
	// (user.*, trusted.*, security.*, POSIX ACLs in their xattr form;
	// NTFS streams are user.<stream>). GNU tar restores them with
	// --xattrs --xattrs-include='*', bsdtar by default.
	Xattrs   bool
	Progress progress.Progress
	OnError  func(guest string, err error)
}

// maxSparseFragments bounds the sparse map of one tar entry; a file whose
// data alternates with holes more often is stored densely.
const maxSparseFragments = 1 << 16

// WriteTar writes items as a pax tar stream to w: entry names are the
// items' relative paths (as RestoreFiles would place them below DEST),
// with owner ids, permission bits, atime/mtime/ctime with nanoseconds,
// symlinks, hardlinks (among the entries written), FIFOs and devices, and
// sparse files in the GNU 1.0 sparse format (holes found from the guest's
// allocation and from all-zero 4 KiB blocks, read once more to list them).
// Sockets cannot be archived and are counted as skipped. Guest names that
// are not one path component are refused as in RestoreFiles. A file whose
// content fails to read midway is completed with zeros (its header was
// written) and reported. The error returned is for the stream as a whole
// (w failing, ctx cancelled).
func WriteTar(ctx context.Context, w io.Writer, items []Item, o TarOptions) (*Summary, error) {
	t := &tarRestorer{o: o, tw: newTarWriter(w), prog: progress.OrNop(o.Progress), links: map[inodeKey]string{},
		dirsSeen: map[inodeKey]bool{}, buf: make([]byte, copyBuf)}
	t.prog.Start("writing tar", 0)
	defer t.prog.Finish()
	for _, it := range items {
		if err := ctx.Err(); err != nil {
			break
		}
		t.entry(ctx, strings.Join(it.Rel, "/"), it.Guest, it.FS, it.Ino, 0)
		if t.fatal != nil {
			break
		}
	}
	s := t.c.summary()
	err := t.fatal
	if err == nil {
		err = ctx.Err()
	}
	if err == nil {
		err = t.tw.close()
	}
	if err != nil {
		s.Stopped = err.Error()
		if errors.Is(err, context.Canceled) {
			s.Stopped = "interrupted"
		}
	}
	return s, err
}

type tarRestorer struct {
	o        TarOptions
	tw       *tarWriter
	prog     progress.Progress
	c        counters
	links    map[inodeKey]string // first tar name of each multiply-linked inode
	dirsSeen map[inodeKey]bool
	buf      []byte
	fatal    error // the stream failed: stop
}

func (t *tarRestorer) fail(guest string, err error) {
	t.c.errors.Add(1)
	if t.o.OnError != nil {
		t.o.OnError(guest, err)
	}
}

// stream runs a write to the tar stream; its failure ends the restore.
func (t *tarRestorer) stream(err error) bool {
	if err != nil && t.fatal == nil {
		t.fatal = fmt.Errorf("writing the tar stream: %w", err)
	}
	return t.fatal == nil
}

func (t *tarRestorer) entry(ctx context.Context, name, guest string, f fsys.FileSystem, ino uint64, depth int) {
	st, err := f.Stat(ino)
	if err != nil {
		t.fail(guest, err)
		return
	}
	h := &tarHeader{Name: name, Mode: st.Mode & 0o7777, Uid: st.Uid, Gid: st.Gid,
		Mtime: st.Mtime, Atime: st.Atime, Ctime: st.Ctime}
	typ := st.Mode & fsys.S_IFMT
	key := inodeKey{f, ino}
	multi := typ != fsys.S_IFDIR && st.Nlink > 1
	if multi {
		if first, ok := t.links[key]; ok {
			h.Type, h.Linkname = tarLink, first
			if t.stream(t.tw.begin(h)) {
				t.c.hardlinks.Add(1)
			}
			return
		}
	}
	if t.o.Xattrs {
		if h.Xattrs, err = readXattrs(f, ino); err != nil {
			t.fail(guest, err)
		}
	}
	if typ == fsys.S_IFDIR {
		t.dir(ctx, h, name, guest, f, ino, depth)
		return
	}
	if t.nondir(ctx, h, guest, f, ino, st) && multi {
		t.links[key] = name
	}
}

// nondir writes a non-directory; it says whether its entry is in the
// archive.
func (t *tarRestorer) nondir(ctx context.Context, h *tarHeader, guest string, f fsys.FileSystem, ino uint64, st *fsys.Stat) bool {
	switch typ := st.Mode & fsys.S_IFMT; typ {
	case fsys.S_IFREG:
		return t.file(ctx, h, guest, f, ino, st)
	case fsys.S_IFLNK:
		target, err := f.Readlink(ino)
		if err != nil {
			t.fail(guest, err)
			return false
		}
		h.Type, h.Linkname = tarSymlink, target
		if !t.stream(t.tw.begin(h)) {
			return false
		}
		t.c.symlinks.Add(1)
	case fsys.S_IFIFO, fsys.S_IFCHR, fsys.S_IFBLK:
		h.Type = map[uint32]byte{fsys.S_IFIFO: tarFIFO, fsys.S_IFCHR: tarChar, fsys.S_IFBLK: tarBlockT}[typ]
		if typ != fsys.S_IFIFO {
			h.Devmajor, h.Devminor = unix.Major(st.Rdev), unix.Minor(st.Rdev)
		}
		if !t.stream(t.tw.begin(h)) {
			return false
		}
		t.c.special.Add(1)
	case fsys.S_IFSOCK:
		t.c.skipped.Add(1) // tar has no type for sockets
		return false
	default:
		t.fail(guest, fmt.Errorf("%w: unknown file type %#o", fsys.ErrCorrupt, typ))
		return false
	}
	return true
}

func (t *tarRestorer) dir(ctx context.Context, h *tarHeader, name, guest string, f fsys.FileSystem, ino uint64, depth int) {
	key := inodeKey{f, ino}
	if t.dirsSeen[key] {
		t.fail(guest, fmt.Errorf("%w: directory inode %d appears twice (a loop or a hardlinked directory)", fsys.ErrCorrupt, ino))
		return
	}
	t.dirsSeen[key] = true
	if depth > maxDepth {
		t.fail(guest, fmt.Errorf("directories nested more than %d deep", maxDepth))
		return
	}
	h.Type = tarDir
	if !t.stream(t.tw.begin(h)) {
		return
	}
	t.c.dirs.Add(1)
	ents, err := f.ReadDir(ino)
	if err != nil {
		t.fail(guest, err)
	}
	for _, e := range ents {
		if ctx.Err() != nil || t.fatal != nil {
			return
		}
		cg := joinGuest(guest, e.Name)
		if err := checkName(e.Name); err != nil {
			t.fail(cg, err)
			continue
		}
		t.entry(ctx, name+"/"+e.Name, cg, f, e.Ino, depth+1)
	}
}
