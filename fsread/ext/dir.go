package ext

import (
	"bytes"
	"fmt"
	"io/fs"

	"github.com/vmmount/vmmount/fsread/ext/disklayout"
	"github.com/vmmount/vmmount/fsread/fsys"
)

// dirent is one parsed directory entry; name aliases the block.
type dirent struct {
	name []byte
	ino  uint32
	ft   uint8
}

// dir is an open directory: its inode and block mapping.
type dir struct {
	n      *inode
	m      mapper // nil for inline directories
	blocks uint64 // size in blocks
	fold   bool   // casefolded lookups
}

func (f *FS) openDir(ino uint64) (*dir, error) {
	n, err := f.inode(ino)
	if err != nil {
		return nil, err
	}
	if !n.isDir() {
		return nil, &fsys.CorruptError{FS: f.label, Ino: ino, Off: -1, Msg: "not a directory", Err: fsys.ErrNotDir}
	}
	d := &dir{n: n, fold: f.casefold && n.flag(disklayout.FlagCasefold)}
	if n.flag(disklayout.FlagInlineData) {
		return d, nil
	}
	if n.flag(disklayout.FlagEncrypt) && d.fold {
		// Encrypted+casefolded names carry a siphash; plain lookups by
		// hash are impossible and linear compares meaningless.
		d.fold = false
	}
	if n.size > maxDirBytes {
		return nil, f.corrupt(ino, -1, "directory size %d is larger than %d", n.size, int64(maxDirBytes))
	}
	d.blocks = uint64(n.size+int64(f.bs)-1) / uint64(f.bs)
	if d.m, err = f.mapperFor(n); err != nil {
		return nil, err
	}
	return d, nil
}

// dirBlock reads logical block lblk of a directory; nil for a hole.
func (f *FS) dirBlock(d *dir, lblk uint64) (*cblock, error) {
	r, err := d.m.mapBlock(lblk)
	if err != nil {
		return nil, err
	}
	if r.kind != runData {
		return nil, nil
	}
	cb, err := f.block(r.phys)
	if err != nil {
		return nil, f.corrupt(d.n.ino, f.blockOff(r.phys), "reading directory block %d: %v", lblk, err)
	}
	return cb, nil
}

// isDxBlock says whether a directory block is an htree index block (the
// root, or an interior node: one empty entry spanning the block), which
// holds no names and has no leaf checksum tail.
func (f *FS) isDxBlock(d *dir, lblk uint64, b []byte) bool {
	if !f.sb.HasCompat(disklayout.CompatDirIndex) || !d.n.flag(disklayout.FlagIndex) {
		return false
	}
	if lblk == 0 {
		return true
	}
	return le.Uint32(b) == 0 && disklayout.RecLen(le.Uint16(b[4:]), f.bs) == f.bs
}

// parseLeaf walks the entries of a leaf block (or the inline area) and
// calls fn for each used one until it returns false. off is the block's
// volume offset for errors (-1 inline). It checks each entry as
// ext4_check_dir_entry does.
func (f *FS) parseLeaf(d *dir, b []byte, off int64, fn func(e dirent) bool) error {
	filetype := f.sb.HasIncompat(disklayout.IncompatFiletype)
	for p := 0; p < len(b); {
		if len(b)-p < disklayout.DirentHeaderSize {
			return f.corrupt(d.n.ino, off+int64(p), "directory entry truncated")
		}
		h, _ := disklayout.DecodeDirent(b[p:])
		rl := disklayout.RecLen(h.RecLen, f.bs)
		nl := int(h.NameLen)
		if !filetype {
			nl |= int(h.FileType) << 8
			h.FileType = 0
		}
		switch {
		case rl < disklayout.DirentMinLen(1) && !(rl == disklayout.DirentTailSize && h.Inode == 0) || rl%4 != 0:
			return f.corrupt(d.n.ino, entOff(off, p), "directory entry with bad rec_len %d", rl)
		case rl > len(b)-p:
			return f.corrupt(d.n.ino, entOff(off, p), "directory entry rec_len %d runs past the block", rl)
		case h.Inode != 0 && rl < disklayout.DirentMinLen(nl):
			return f.corrupt(d.n.ino, entOff(off, p), "directory entry name (%d bytes) longer than its record", nl)
		case uint64(h.Inode) > f.inodes:
			return f.corrupt(d.n.ino, entOff(off, p), "directory entry names inode %d, past the last inode", h.Inode)
		}
		if h.Inode != 0 && nl > 0 {
			if !fn(dirent{name: b[p+8 : p+8+nl], ino: h.Inode, ft: h.FileType}) {
				return nil
			}
		}
		p += rl
	}
	return nil
}

func entOff(off int64, p int) int64 {
	if off < 0 {
		return -1
	}
	return off + int64(p)
}

// leaf returns a leaf block's bytes after checking its checksum tail
// (metadata_csum), once per cached block.
func (f *FS) leaf(d *dir, cb *cblock) ([]byte, error) {
	if f.csum && cb.verified.Load()&verifyDir == 0 {
		stored, ok := disklayout.DirBlockTail(cb.data)
		if !ok {
			return nil, f.corrupt(d.n.ino, f.blockOff(cb.blk), "directory block has no checksum tail")
		}
		if c := disklayout.DirBlockChecksum(f.inodeSeed(d.n), cb.data); c != stored {
			return nil, f.corrupt(d.n.ino, f.blockOff(cb.blk), "directory block checksum mismatch (stored %#x, computed %#x)", stored, c)
		}
		cb.verified.Or(verifyDir)
	}
	return cb.data, nil
}

// ReadDir lists a directory in on-disk order, without "." and "..". A
// damaged block makes the whole listing an error naming that block; names
// in other blocks stay reachable through Lookup.
func (f *FS) ReadDir(ino uint64) ([]fsys.DirEntry, error) {
	d, err := f.openDir(ino)
	if err != nil {
		return nil, err
	}
	var out []fsys.DirEntry
	var failed error
	add := func(e dirent) bool {
		if len(out) >= maxDirEntries {
			failed = f.corrupt(ino, -1, "more than %d directory entries", maxDirEntries)
			return false
		}
		if isDots(e.name) {
			return true
		}
		t, ok := dtype(e.ft)
		if !ok {
			st, err := f.Stat(uint64(e.ino))
			if err != nil {
				t = fs.ModeIrregular // listed; Stat and Lookup report the damage
			} else {
				t = st.FileMode().Type()
			}
		}
		out = append(out, fsys.DirEntry{Name: string(e.name), Ino: uint64(e.ino), Type: t})
		return true
	}
	if err := f.scanDir(d, false, add); err != nil {
		return nil, err
	}
	if failed != nil {
		return nil, failed
	}
	return out, nil
}

func isDots(name []byte) bool {
	return len(name) == 1 && name[0] == '.' || len(name) == 2 && name[0] == '.' && name[1] == '.'
}

// scanDir calls fn for every entry of the directory in on-disk order, until
// fn returns false. With skipBad a damaged block is passed over (as the
// kernel's lookup does) and its error returned only at the end.
func (f *FS) scanDir(d *dir, skipBad bool, fn func(e dirent) bool) error {
	if d.m == nil {
		return f.scanInlineDir(d, fn)
	}
	stop := false
	var bad error
	fail := func(err error) error {
		if !skipBad {
			return err
		}
		if bad == nil {
			bad = err
		}
		return nil
	}
	wrap := func(e dirent) bool {
		if !fn(e) {
			stop = true
		}
		return !stop
	}
	for lblk := uint64(0); lblk < d.blocks && !stop; {
		r, err := d.m.mapBlock(lblk)
		if err != nil {
			return err // the mapping itself is damaged: nothing further is reliable
		}
		if r.kind != runData {
			lblk += r.n // holes in directories hold nothing
			continue
		}
		lblk++
		cb, err := f.dirBlock(d, lblk-1)
		if err != nil {
			if err = fail(err); err != nil {
				return err
			}
			continue
		}
		if f.isDxBlock(d, lblk-1, cb.data) {
			continue
		}
		b, err := f.leaf(d, cb)
		if err == nil {
			err = f.parseLeaf(d, b, f.blockOff(cb.blk), wrap)
		}
		if err != nil {
			if err = fail(err); err != nil {
				return err
			}
		}
	}
	return bad
}

// Lookup finds name in directory dirIno: by hash in an htree directory,
// else by scanning; case-insensitively in a casefolded directory.
func (f *FS) Lookup(dirIno uint64, name string) (uint64, error) {
	d, err := f.openDir(dirIno)
	if err != nil {
		return 0, err
	}
	if name == "." {
		return dirIno, nil
	}
	if name == "" || len(name) > disklayout.NameMax {
		return 0, f.notExist(dirIno, name)
	}
	ino, err := f.lookup(d, []byte(name))
	if err != nil {
		return 0, err
	}
	if ino == 0 {
		return 0, f.notExist(dirIno, name)
	}
	if name != ".." && (ino == dirIno || ino == f.Root()) {
		return 0, f.corrupt(dirIno, -1, "entry %q points back to %s (directory loop)", name, map[bool]string{true: "the directory itself", false: "the root"}[ino == dirIno])
	}
	return ino, nil
}

func (f *FS) notExist(dir uint64, name string) error {
	return fmt.Errorf("%s: inode %d: %q: %w", f.label, dir, name, fs.ErrNotExist)
}

// lookup returns the inode of name in d, 0 if absent.
func (f *FS) lookup(d *dir, name []byte) (uint64, error) {
	if len(name) == 2 && name[0] == '.' && name[1] == '.' {
		return f.parent(d)
	}
	var key []byte // what entries are compared with
	exact := true  // key is folded the kernel's way (see casefold.go)
	if d.fold && !isDots(name) {
		key, _ = fold(name)
		exact = isASCII(name)
	}
	match := func(e dirent) bool {
		if key == nil {
			return bytes.Equal(e.name, name)
		}
		if bytes.Equal(e.name, name) {
			return true
		}
		k, _ := fold(e.name)
		return bytes.Equal(k, key)
	}
	if d.m != nil && f.isIndexed(d) && !isDots(name) {
		hname := name
		if key != nil {
			hname = key
		}
		ino, usable, err := f.dxLookup(d, hname, match)
		if err != nil {
			return 0, err
		}
		if usable && (ino != 0 || exact) {
			return ino, nil
		}
		// A damaged index or an inexact fold: scan, as the kernel
		// does when an index is unusable.
	}
	if d.m != nil && d.blocks >= minIndexedBlocks {
		if x := f.dirIndexFor(d); x != nil {
			k := name
			if key != nil {
				k = key
			}
			return uint64(x.names[string(k)]), nil
		}
	}
	var found uint64
	err := f.scanDir(d, true, func(e dirent) bool {
		if match(e) {
			found = uint64(e.ino)
			return false
		}
		return true
	})
	if found != 0 {
		return found, nil
	}
	return 0, err
}

// parent reads ".." : the second entry of block 0 (in htree directories
// too, whose root starts with fake "." and ".." entries), or the first
// word of i_block in an inline directory.
func (f *FS) parent(d *dir) (uint64, error) {
	if d.m == nil {
		return uint64(le.Uint32(d.n.iblock())), nil
	}
	cb, err := f.dirBlock(d, 0)
	if err != nil || cb == nil {
		return 0, err
	}
	b := cb.data
	rl := disklayout.RecLen(le.Uint16(b[4:]), f.bs)
	if rl < disklayout.DirentMinLen(1) || rl > f.bs-disklayout.DirentMinLen(2) {
		return 0, f.corrupt(d.n.ino, f.blockOff(cb.blk), "bad \".\" entry")
	}
	e, _ := disklayout.DecodeDirent(b[rl:])
	if e.NameLen != 2 || b[rl+8] != '.' || b[rl+9] != '.' || uint64(e.Inode) > f.inodes {
		return 0, f.corrupt(d.n.ino, f.blockOff(cb.blk)+int64(rl), "no \"..\" entry")
	}
	return uint64(e.Inode), nil
}

// isIndexed says whether d is an htree directory.
func (f *FS) isIndexed(d *dir) bool {
	return f.sb.HasCompat(disklayout.CompatDirIndex) && d.n.flag(disklayout.FlagIndex)
}
