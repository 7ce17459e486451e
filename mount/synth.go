package mount

import (
	"context"
	"io"
	"sync"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/vmmount/vmmount/fsread/fsys"
)

// dirNode serves a Dir.
type dirNode struct {
	fs.Inode
	srv *Server
	d   *Dir
	ino uint64

	once    sync.Once
	entries []Entry
	byName  map[string]int
	err     error
}

var (
	_ fs.NodeLookuper  = (*dirNode)(nil)
	_ fs.NodeReaddirer = (*dirNode)(nil)
	_ fs.NodeGetattrer = (*dirNode)(nil)
)

func (n *dirNode) load() error {
	n.once.Do(func() {
		ents := n.d.Entries
		if n.d.List != nil {
			more, err := n.d.List()
			if err != nil {
				n.err = err
				return
			}
			ents = append(append([]Entry(nil), ents...), more...)
		}
		n.entries = ents
		n.byName = make(map[string]int, len(ents))
		for i, e := range ents {
			n.byName[e.Name] = i
		}
	})
	return n.err
}

func (n *dirNode) Getattr(ctx context.Context, fh fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	synthAttr(&out.Attr, fsys.S_IFDIR|0o555, 0, n.d.Mtime, n.ino)
	out.SetTimeout(timeout)
	return 0
}

func (n *dirNode) Readdir(ctx context.Context) (fs.DirStream, syscall.Errno) {
	if err := n.load(); err != nil {
		n.srv.report(n.Path(nil), err)
		return nil, toErrno(err)
	}
	out := make([]fuse.DirEntry, 0, len(n.entries))
	for _, e := range n.entries {
		out = append(out, fuse.DirEntry{Name: e.Name, Mode: synthMode(e.Node)})
	}
	return fs.NewListDirStream(out), 0
}

func (n *dirNode) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	if err := n.load(); err != nil {
		return nil, toErrno(err)
	}
	i, ok := n.byName[name]
	if !ok {
		return nil, syscall.ENOENT
	}
	if ch := n.GetChild(name); ch != nil {
		if a, ok := ch.Operations().(fs.NodeGetattrer); ok {
			var ao fuse.AttrOut
			if errno := a.Getattr(ctx, nil, &ao); errno != 0 {
				return nil, errno
			}
			out.Attr = ao.Attr
		}
		entryTimeouts(out)
		return ch, 0
	}
	node, ino := n.srv.newNode(n.entries[i].Node)
	if a, ok := node.(fs.NodeGetattrer); ok {
		var ao fuse.AttrOut
		if errno := a.Getattr(ctx, nil, &ao); errno != 0 {
			return nil, errno
		}
		out.Attr = ao.Attr
	}
	entryTimeouts(out)
	return n.NewPersistentInode(ctx, node, fs.StableAttr{Mode: synthMode(n.entries[i].Node), Ino: ino}), 0
}

func synthMode(nd Node) uint32 {
	switch nd.(type) {
	case *Dir, *Volume:
		return fsys.S_IFDIR
	case *Symlink:
		return fsys.S_IFLNK
	}
	return fsys.S_IFREG
}

// rawNode serves a RawFile or a Text.
type rawNode struct {
	fs.Inode
	r     io.ReaderAt
	size  int64
	mtime int64
	f     *RawFile
	t     *Text
	ino   uint64
}

var (
	_ fs.NodeOpener    = (*rawNode)(nil)
	_ fs.NodeReader    = (*rawNode)(nil)
	_ fs.NodeGetattrer = (*rawNode)(nil)
)

func (n *rawNode) Getattr(ctx context.Context, fh fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	if n.f != nil {
		synthAttr(&out.Attr, fsys.S_IFREG|0o444, n.size, n.f.Mtime, n.ino)
	} else {
		synthAttr(&out.Attr, fsys.S_IFREG|0o444, n.size, n.t.Mtime, n.ino)
	}
	out.SetTimeout(timeout)
	return 0
}

// Open answers ENOSYS like guest files (see guestNode.Open): the kernel
// then opens files of this mount without asking.
func (n *rawNode) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	return nil, 0, syscall.ENOSYS
}

func (n *rawNode) Read(ctx context.Context, fh fs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	if off >= n.size {
		return fuse.ReadResultData(nil), 0
	}
	if rem := n.size - off; int64(len(dest)) > rem {
		dest = dest[:rem]
	}
	k, err := n.r.ReadAt(dest, off)
	if err != nil && err != io.EOF {
		return nil, toErrno(err)
	}
	return fuse.ReadResultData(dest[:k]), 0
}

// linkNode serves a Symlink.
type linkNode struct {
	fs.Inode
	l   *Symlink
	ino uint64
}

var _ fs.NodeReadlinker = (*linkNode)(nil)

func (n *linkNode) Readlink(ctx context.Context) ([]byte, syscall.Errno) {
	return []byte(n.l.Target), 0
}

func (n *linkNode) Getattr(ctx context.Context, fh fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	synthAttr(&out.Attr, fsys.S_IFLNK|0o777, int64(len(n.l.Target)), n.l.Mtime, n.ino)
	out.SetTimeout(timeout)
	return 0
}
