package inject

import (
	"errors"
	"io"
	"strings"
	"time"

	"github.com/vmmount/vmmount/fsread/ntfs"
	"github.com/vmmount/vmmount/inject/extwrite"
	"github.com/vmmount/vmmount/inject/ntfswrite"
)

// NTFS volumes: the ntfswrite writer behind the same planner, guards, undo
// file and verification as ext.

// ntfsWriter opens an NTFS volume for a transaction. NTFS has no Unix
// owner or permission bits (a file's access is its security descriptor),
// so --owner and --mode are refused rather than ignored.
func (v *volume) ntfsWriter(now time.Time) (fsWriter, error) {
	if o := v.t.o; o.Owner != nil || o.Mode != nil {
		return nil, refusef("%s is NTFS, which has no Unix owner or permission bits: --owner and --mode do not apply (new files get their directory's security descriptor)", v.path)
	}
	f, err := ntfswrite.Open(v.section(v.img), v.size, ntfswrite.Options{Name: v.path, Now: func() time.Time { return now }})
	if err != nil {
		return nil, ntfsErr(err)
	}
	return ntfsAdapter{f}, nil
}

// ntfsAdapter is the NTFS writer as an fsWriter: nodes are MFT record
// numbers. Symlinks are refused: ntfs-3g makes them reparse points, which
// need the $Extend\$Reparse index the writer does not maintain.
type ntfsAdapter struct{ f *ntfswrite.FS }

func (a ntfsAdapter) Label() string { return a.f.Label() }
func (a ntfsAdapter) Root() uint64  { return ntfswrite.RootRecord }

func (a ntfsAdapter) Lookup(dir uint64, name string) (uint64, error) {
	n, err := a.f.Lookup(dir, name)
	if errors.Is(err, ntfswrite.ErrNotExist) {
		return 0, errNoEntry
	}
	return n, ntfsErr(err)
}

// Stat shows a node as ntfs-3g does without a user mapping: 0777, owned
// by root; reparse points (symlinks, junctions) as symlinks.
func (a ntfsAdapter) Stat(node uint64) (nodeInfo, error) {
	i, err := a.f.Stat(node)
	if err != nil {
		return nodeInfo{}, ntfsErr(err)
	}
	mode := uint16(modeReg)
	switch {
	case i.Attributes&ntfswrite.FileAttrReparsePoint != 0:
		mode = modeLink
	case i.Dir:
		mode = modeDir
	}
	return nodeInfo{Mode: mode | 0o777, Size: uint64(i.Size)}, nil
}

func (a ntfsAdapter) Mkdir(dir uint64, name string, at attr) (uint64, error) {
	n, err := a.f.Mkdir(dir, name, ntfswrite.Attr{Mtime: at.Mtime, Atime: at.Atime})
	return n, ntfsErr(err)
}

func (a ntfsAdapter) Create(dir uint64, name string, at attr, c content) (uint64, error) {
	n, err := a.f.Create(dir, name, ntfswrite.Attr{Mtime: at.Mtime, Atime: at.Atime}, c)
	return n, ntfsErr(err)
}

func (a ntfsAdapter) Symlink(dir uint64, name, target string, at attr) (uint64, error) {
	return 0, refusef("%s: symlinks are not injected into NTFS (they are reparse points, indexed in $Extend\\$Reparse, which the writer does not maintain)", a.f.Label())
}

func (a ntfsAdapter) Replace(node uint64, c content, ra replaceAttr) error {
	return ntfsErr(a.f.Replace(node, c, ntfswrite.ReplaceAttr{Mtime: ra.Mtime, Atime: ra.Atime}))
}

func (a ntfsAdapter) ReplaceSymlink(node uint64, target string, ra replaceAttr) error {
	return refusef("%s: symlinks (reparse points) are not replaced on NTFS", a.f.Label())
}

func (a ntfsAdapter) SetAttr(node uint64, ra replaceAttr) error {
	return ntfsErr(a.f.SetAttr(node, ntfswrite.ReplaceAttr{Mtime: ra.Mtime, Atime: ra.Atime}))
}

func (a ntfsAdapter) Finish() error { return ntfsErr(a.f.Finish()) }

func (a ntfsAdapter) Changes() ([]change, error) {
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

// Events reports the NTFS writer's events in the ext writer's form: Ino
// is the MFT record, Blocks are clusters.
func (a ntfsAdapter) Events() []extwrite.Event {
	conv := func(l []ntfswrite.Extent) []extwrite.Extent {
		var out []extwrite.Extent
		for _, e := range l {
			out = append(out, extwrite.Extent{Start: uint64(e.Start), Len: uint64(e.Len)})
		}
		return out
	}
	var out []extwrite.Event
	for _, e := range a.f.Events() {
		note := e.Note
		if e.Resident {
			note = strings.TrimSpace("resident in its MFT record " + note)
		}
		out = append(out, extwrite.Event{Op: e.Op, Ino: uint32(e.Rec), Dir: uint32(e.Dir), Name: e.Name, Size: e.Size,
			Blocks: conv(e.Clusters), Freed: conv(e.Freed), Note: note})
	}
	return out
}

// ntfsErr marks the NTFS writer's refusals as inject refusals.
func ntfsErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ntfswrite.ErrRefused), errors.Is(err, ntfswrite.ErrExist):
		return asRefusal(err)
	case errors.Is(err, ntfswrite.ErrCorrupt):
		return corruptErr{err}
	}
	return err
}

// ntfsWarnings are vmmount's NTFS reader's warnings about a volume.
func ntfsWarnings(r io.ReaderAt, size int64, name string) []string {
	f, err := ntfs.Open(r, size, ntfs.Options{Name: name})
	if err != nil {
		return nil
	}
	defer f.Close()
	return f.Warnings()
}
