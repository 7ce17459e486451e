package ext

import (
	"fmt"
	"io"
	"io/fs"

	"github.com/vmmount/vmmount/fsread/ext/disklayout"
	"github.com/vmmount/vmmount/fsread/fsys"
)

// file is an open regular file: an io.ReaderAt over its content.
type file struct {
	f      *FS
	n      *inode
	m      mapper // nil for inline data
	inline []byte // content of an inline_data file
}

var _ fsys.File = (*file)(nil)

// Open returns the content of a regular file.
func (f *FS) Open(ino uint64) (fsys.File, error) {
	n, err := f.inode(ino)
	if err != nil {
		return nil, err
	}
	switch n.ftype() {
	case fsys.S_IFREG:
	case fsys.S_IFDIR:
		return nil, &fsys.CorruptError{FS: f.label, Ino: ino, Off: -1, Msg: "open", Err: fsys.ErrIsDir}
	default:
		return nil, f.unsupported(ino, "not a regular file (mode %#o)", n.mode())
	}
	return f.openFile(n)
}

// openFile opens the data of any inode (regular files, and ea_inodes and
// the journal from inside the package).
func (f *FS) openFile(n *inode) (*file, error) {
	if n.flag(disklayout.FlagEncrypt) {
		return nil, f.unsupported(n.ino, "encrypted file content cannot be read")
	}
	if n.flag(disklayout.FlagInlineData) {
		data, err := f.inlineData(n)
		if err != nil {
			return nil, err
		}
		return &file{f: f, n: n, inline: data}, nil
	}
	m, err := f.mapperFor(n)
	if err != nil {
		return nil, err
	}
	return &file{f: f, n: n, m: m}, nil
}

func (fl *file) Size() int64 { return fl.n.size }

// ReadAt reads from the file; holes and unwritten extents read as zeros,
// and reads that end past the size return io.EOF. Each run of physically
// contiguous blocks is one read of the image straight into p.
func (fl *file) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("%s: inode %d: read at negative offset %d: %w", fl.f.label, fl.n.ino, off, fs.ErrInvalid)
	}
	size := fl.n.size
	if off >= size {
		return 0, io.EOF
	}
	want := len(p)
	if int64(want) > size-off {
		p = p[:size-off]
	}
	if fl.m == nil {
		n := copy(p, fl.inline[min(off, int64(len(fl.inline))):])
		clear(p[n:]) // i_size past the inline bytes: zeros, as the kernel pads
		return fl.done(len(p), want)
	}
	bs := int64(fl.f.bs)
	done := 0
	for done < len(p) {
		pos := off + int64(done)
		r, err := fl.m.mapBlock(uint64(pos / bs))
		if err != nil {
			return done, err
		}
		inBlk := pos % bs
		avail := int64(r.n)*bs - inBlk
		if r.n > uint64(1<<62)/uint64(bs) {
			avail = 1 << 62
		}
		chunk := min(int64(len(p)-done), avail)
		dst := p[done : done+int(chunk)]
		if r.kind == runData {
			if err := fl.f.dev.readAt(dst, int64(r.phys)*bs+inBlk); err != nil {
				return done, fl.f.corrupt(fl.n.ino, int64(r.phys)*bs+inBlk, "reading file data: %v", err)
			}
		} else {
			clear(dst)
		}
		done += int(chunk)
	}
	return fl.done(done, want)
}

func (fl *file) done(n, want int) (int, error) {
	if n < want {
		return n, io.EOF
	}
	return n, nil
}

// Extents lists the ranges that hold data (not holes, not unwritten
// extents), clipped to the size. Inline files are all data (nil).
func (fl *file) Extents() ([]fsys.Range, error) {
	if fl.m == nil {
		return nil, nil
	}
	var out []fsys.Range
	bs := int64(fl.f.bs)
	add := func(lblk, n uint64) {
		o := int64(lblk) * bs
		if o >= fl.n.size {
			return
		}
		l := min(int64(n)*bs, fl.n.size-o)
		if k := len(out) - 1; k >= 0 && out[k].Off+out[k].Len == o {
			out[k].Len += l
			return
		}
		out = append(out, fsys.Range{Off: o, Len: l})
	}
	lastBlk := uint64((fl.n.size + bs - 1) / bs)
	var err error
	switch m := fl.m.(type) {
	case *extentMapper:
		err = m.walk(lastBlk, add)
	case *blockMapper:
		err = m.walk(lastBlk, add)
	}
	if err != nil {
		return nil, err
	}
	return out, nil
}
