package inject

import (
	"errors"
	"io"
	"time"

	"github.com/vmmount/vmmount/fsread/fsys"
	"github.com/vmmount/vmmount/inject/extwrite"
)

// fsWriter is a filesystem writer's transaction as Run drives it: lookups
// and creations by node number, then Finish and the list of changes. The
// ext writer implements it through extAdapter; another filesystem's writer
// plugs in the same way.
type fsWriter interface {
	Label() string
	Root() uint64
	// Lookup returns the node of name in dir; a missing name wraps
	// errNoEntry.
	Lookup(dir uint64, name string) (uint64, error)
	Stat(node uint64) (nodeInfo, error)
	Mkdir(dir uint64, name string, a attr) (uint64, error)
	Create(dir uint64, name string, a attr, c content) (uint64, error)
	Symlink(dir uint64, name, target string, a attr) (uint64, error)
	Replace(node uint64, c content, a replaceAttr) error
	ReplaceSymlink(node uint64, target string, a replaceAttr) error
	// SetAttr changes mode, owner and times, not the content.
	SetAttr(node uint64, a replaceAttr) error
	Finish() error
	Changes() ([]change, error)
	Events() []extwrite.Event
}

// linkReader is implemented by writers that read symlink targets, so
// GuestDir may go through symlinks (a merged /lib -> usr/lib).
type linkReader interface {
	Readlink(node uint64) (string, error)
}

// errNoEntry is what fsWriter.Lookup wraps for a missing name.
var errNoEntry = errors.New("no such entry")

type nodeInfo struct {
	Mode uint16
	Size uint64
	Uid  uint32
	Gid  uint32
}

func (n nodeInfo) kind() uint16 { return n.Mode & 0xF000 }

const (
	modeDir  = 0x4000
	modeReg  = 0x8000
	modeLink = 0xA000
)

type attr struct {
	Perm         uint16
	Uid, Gid     uint32
	Atime, Mtime time.Time
}

type replaceAttr struct {
	Perm         *uint16
	Uid, Gid     *uint32
	Atime, Mtime time.Time
}

// content is a file's bytes, read when the changes are written.
type content interface {
	io.ReaderAt
	Size() int64
}

// change is one range of the volume a transaction writes: Data, or Len
// bytes made of Src[SrcOff:SrcOff+SrcLen] and zeros.
type change struct {
	Off    int64
	Len    int64
	Data   []byte
	Src    content
	SrcOff int64
	SrcLen int64
}

// extAdapter is the ext writer as an fsWriter.
type extAdapter struct{ f *extwrite.FS }

func (a extAdapter) Label() string { return a.f.Label() }
func (a extAdapter) Root() uint64  { return extwrite.RootIno }

func (a extAdapter) Lookup(dir uint64, name string) (uint64, error) {
	ino, err := a.f.Lookup(uint32(dir), name)
	if errors.Is(err, extwrite.ErrNotExist) {
		return 0, errNoEntry
	}
	return uint64(ino), extErr(err)
}

func (a extAdapter) Stat(node uint64) (nodeInfo, error) {
	i, err := a.f.Stat(uint32(node))
	if err != nil {
		return nodeInfo{}, extErr(err)
	}
	return nodeInfo{Mode: i.Mode, Size: i.Size, Uid: i.Uid, Gid: i.Gid}, nil
}

func (a extAdapter) Mkdir(dir uint64, name string, at attr) (uint64, error) {
	ino, err := a.f.Mkdir(uint32(dir), name, extAttr(at))
	return uint64(ino), extErr(err)
}

func (a extAdapter) Create(dir uint64, name string, at attr, c content) (uint64, error) {
	ino, err := a.f.Create(uint32(dir), name, extAttr(at), c)
	return uint64(ino), extErr(err)
}

func (a extAdapter) Symlink(dir uint64, name, target string, at attr) (uint64, error) {
	ino, err := a.f.Symlink(uint32(dir), name, target, extAttr(at))
	return uint64(ino), extErr(err)
}

func (a extAdapter) Replace(node uint64, c content, ra replaceAttr) error {
	return extErr(a.f.Replace(uint32(node), c, extReplace(ra)))
}

func (a extAdapter) ReplaceSymlink(node uint64, target string, ra replaceAttr) error {
	return extErr(a.f.ReplaceSymlink(uint32(node), target, extReplace(ra)))
}

func (a extAdapter) Readlink(node uint64) (string, error) {
	t, err := a.f.Readlink(uint32(node))
	return t, extErr(err)
}

func (a extAdapter) SetAttr(node uint64, ra replaceAttr) error {
	return extErr(a.f.SetAttr(uint32(node), extReplace(ra)))
}

func (a extAdapter) Finish() error { return extErr(a.f.Finish()) }

func (a extAdapter) Changes() ([]change, error) {
	chs, err := a.f.Changes()
	if err != nil {
		return nil, err
	}
	out := make([]change, len(chs))
	for i, c := range chs {
		out[i] = change{Off: c.Off, Len: c.Len, Data: c.Data, Src: c.Src, SrcOff: c.SrcOff, SrcLen: c.SrcLen}
	}
	return out, nil
}

func (a extAdapter) Events() []extwrite.Event { return a.f.Events() }

func extAttr(a attr) extwrite.Attr {
	return extwrite.Attr{Perm: a.Perm, Uid: a.Uid, Gid: a.Gid, Atime: a.Atime, Mtime: a.Mtime}
}

func extReplace(a replaceAttr) extwrite.ReplaceAttr {
	return extwrite.ReplaceAttr{Perm: a.Perm, Uid: a.Uid, Gid: a.Gid, Atime: a.Atime, Mtime: a.Mtime}
}

// extErr marks the ext writer's refusals as inject refusals.
func extErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, extwrite.ErrRefused), errors.Is(err, extwrite.ErrExist):
		return asRefusal(err)
	case errors.Is(err, extwrite.ErrCorrupt):
		return corruptErr{err}
	}
	return err
}

// corruptErr marks a writer's "metadata inconsistent" as fsys.ErrCorrupt
// (bad input for the command's exit code).
type corruptErr struct{ error }

func (e corruptErr) Is(t error) bool { return t == fsys.ErrCorrupt }
func (e corruptErr) Unwrap() error   { return e.error }
