package ntfs

import (
	"fmt"
	"io/fs"
	"math/bits"

	"github.com/vmmount/vmmount/fsread/fsys"
)

// dirEnt is one entry of a directory's $I30 index.
type dirEnt struct {
	name  string
	ino   uint64
	ns    uint8
	attrs uint32 // file attributes in the index key (informational)
}

// dirList is a directory's entries in index (collation) order, DOS names
// and metafiles included; byName indexes the visible ones.
type dirList struct {
	ents   []dirEnt
	byName map[string]uint64
}

// visible says whether ntfs-3g lists the entry: not a DOS-only name, not a
// metafile, not the root's entry for itself (dir.c, ntfs_filldir).
func (e *dirEnt) visible() bool {
	return e.ns != nsDOS && e.ino >= firstUserRecord
}

// Bounds of the index walk.
const (
	maxIndexDepth  = 32
	maxIndexBlocks = 1 << 20
)

// list returns the parsed directory ino.
func (f *FS) list(ino uint64) (*dirList, error) {
	if d, ok := f.dirs.Get(ino); ok {
		return d, nil
	}
	in, err := f.inode(ino)
	if err != nil {
		return nil, err
	}
	if !in.isDir || in.i30root == nil {
		return nil, fmt.Errorf("%s: inode %d: %w", f.name, ino, fsys.ErrNotDir)
	}
	w := &indexWalk{f: f, ino: ino, seen: map[int64]bool{}}
	if err := w.walk(in); err != nil {
		return nil, err
	}
	d := &dirList{ents: w.ents, byName: make(map[string]uint64, len(w.ents))}
	for _, e := range d.ents {
		if _, dup := d.byName[e.name]; e.visible() && !dup {
			d.byName[e.name] = e.ino
		}
	}
	f.dirs.Add(ino, d)
	return d, nil
}

// indexWalk walks a $I30 B+ tree in order: for each entry, its sub-node
// (smaller keys) first, then the entry; the END entry's sub-node last.
type indexWalk struct {
	f         *FS
	ino       uint64
	alloc     *stream
	blockSize int64
	vcnUnit   int64
	seen      map[int64]bool
	ents      []dirEnt
}

func (w *indexWalk) walk(in *inode) error {
	root := in.i30root
	if !root.resident || len(root.value) < indexRootSize {
		return w.f.corrupt(w.ino, root.off, "$INDEX_ROOT is not a resident index root")
	}
	var ir indexRoot
	decode(root.value, &ir)
	if ir.Type != atFileName {
		return w.f.corrupt(w.ino, root.off, "$I30 index of attribute type %#x", ir.Type)
	}
	bs := int64(ir.IndexBlockSize)
	if bs < 512 || bs > 64<<10 || bits.OnesCount64(uint64(bs)) != 1 {
		return w.f.corrupt(w.ino, root.off, "index block size %d", bs)
	}
	w.blockSize = bs
	// VCNs of index blocks count clusters, or 512-byte units when blocks
	// are smaller than a cluster (ntfs-3g dir.c, index_vcn_size).
	w.vcnUnit = w.f.clusterSize
	if bs < w.f.clusterSize {
		w.vcnUnit = 512
	}
	if len(in.i30alloc) > 0 {
		s, err := w.f.newStream(w.ino, in.i30alloc)
		if err != nil {
			return err
		}
		w.alloc = s
	}
	const hdr = 16 // INDEX_HEADER inside INDEX_ROOT
	return w.node(root.value[hdr:], int64(ir.EntriesOffset), int64(ir.IndexLength), 0, root.off)
}

// node walks the entries of one node: b starts at its INDEX_HEADER.
func (w *indexWalk) node(b []byte, entriesOff, indexLen int64, depth int, off int64) error {
	if depth > maxIndexDepth {
		return w.f.corrupt(w.ino, off, "index deeper than %d levels", maxIndexDepth)
	}
	if entriesOff < 16 || indexLen > int64(len(b)) || entriesOff > indexLen {
		return w.f.corrupt(w.ino, off, "index node entries %d..%d outside its %d bytes", entriesOff, indexLen, len(b))
	}
	for p := entriesOff; ; {
		if p+indexEntryHeaderSize > indexLen {
			return w.f.corrupt(w.ino, off, "index node has no end entry")
		}
		var e indexEntryHeader
		decode(b[p:], &e)
		l := int64(e.Length)
		if l < indexEntryHeaderSize || p+l > indexLen || l%8 != 0 {
			return w.f.corrupt(w.ino, off, "index entry at %d has length %d", p, e.Length)
		}
		entry := b[p : p+l]
		if e.Flags&ieNode != 0 {
			if l < indexEntryHeaderSize+8 {
				return w.f.corrupt(w.ino, off, "index entry at %d too short for a sub-node", p)
			}
			if err := w.child(int64(le64(entry[l-8:])), depth); err != nil {
				return err
			}
		}
		if e.Flags&ieEnd != 0 {
			return nil
		}
		kl := int(e.KeyLength)
		if kl < fileNameHeaderSize || indexEntryHeaderSize+int64(kl) > l {
			return w.f.corrupt(w.ino, off, "index entry at %d has key length %d", p, kl)
		}
		key := entry[indexEntryHeaderSize : indexEntryHeaderSize+kl]
		var fn fileNameHeader
		decode(key, &fn)
		if fileNameHeaderSize+2*int(fn.FileNameLength) > kl {
			return w.f.corrupt(w.ino, off, "index entry at %d: name past its key", p)
		}
		rec, _ := mftRef(e.IndexedFile)
		w.ents = append(w.ents, dirEnt{
			name:  utf16le(key[fileNameHeaderSize : fileNameHeaderSize+2*int(fn.FileNameLength)]),
			ino:   rec,
			ns:    fn.FileNameType,
			attrs: fn.FileAttributes,
		})
		p += l
	}
}

// child reads index block vcn of $INDEX_ALLOCATION and walks it.
func (w *indexWalk) child(vcn int64, depth int) error {
	if w.alloc == nil {
		return w.f.corrupt(w.ino, -1, "index entry points to block %d but the directory has no $INDEX_ALLOCATION", vcn)
	}
	pos := vcn * w.vcnUnit
	if vcn < 0 || vcn > w.alloc.size/w.vcnUnit || pos+w.blockSize > w.alloc.size {
		return w.f.corrupt(w.ino, -1, "index block VCN %d outside the %d-byte $INDEX_ALLOCATION", vcn, w.alloc.size)
	}
	if w.seen[vcn] {
		return w.f.corrupt(w.ino, w.alloc.volOff(pos), "index block %d is reached twice (loop)", vcn)
	}
	if len(w.seen) >= maxIndexBlocks {
		return w.f.corrupt(w.ino, -1, "index has more than %d blocks", maxIndexBlocks)
	}
	w.seen[vcn] = true
	b := make([]byte, w.blockSize)
	if _, err := w.alloc.ReadAt(b, pos); err != nil {
		return err
	}
	off := w.alloc.volOff(pos)
	var h indexBlockHeader
	decode(b, &h)
	if string(h.Magic[:]) != "INDX" {
		return w.f.corrupt(w.ino, off, "index block %d has magic %q, not INDX", vcn, h.Magic[:])
	}
	if err := applyFixups(b, h.USAOfs, h.USACount); err != nil {
		return w.f.corrupt(w.ino, off, "index block %d: %v", vcn, err)
	}
	if h.IndexBlockVCN != vcn {
		return w.f.corrupt(w.ino, off, "index block at VCN %d says it is VCN %d", vcn, h.IndexBlockVCN)
	}
	return w.node(b[indexHeaderOffset:], int64(h.EntriesOffset), int64(h.IndexLength), depth+1, off)
}

// ReadDir lists directory dir in index order, as ntfs-3g does: without DOS
// names, metafiles and the root's self entry.
func (f *FS) ReadDir(dir uint64) ([]fsys.DirEntry, error) {
	d, err := f.list(dir)
	if err != nil {
		return nil, err
	}
	out := make([]fsys.DirEntry, 0, len(d.ents))
	for _, e := range d.ents {
		if !e.visible() {
			continue
		}
		de := fsys.DirEntry{Name: e.name, Ino: e.ino}
		if in, err := f.inode(e.ino); err == nil {
			de.Type = fsys.UnixMode(in.mode).Type()
		} else if e.attrs&fileAttrI30IndexPresent != 0 {
			de.Type = fs.ModeDir
		}
		out = append(out, de)
	}
	return out, nil
}

// Lookup finds name in dir, case-sensitively as ntfs-3g does.
func (f *FS) Lookup(dir uint64, name string) (uint64, error) {
	d, err := f.list(dir)
	if err != nil {
		return 0, err
	}
	if ino, ok := d.byName[name]; ok {
		return ino, nil
	}
	return 0, fmt.Errorf("%s: inode %d: %q: %w", f.name, dir, name, fs.ErrNotExist)
}
