package extwrite

import (
	"bytes"

	"github.com/vmmount/vmmount/fsread/ext/disklayout"
)

// Directories (Documentation/filesystems/ext4/directory.rst). Entries are
// ext4_dir_entry_2 records chained by rec_len within a block; with
// metadata_csum a leaf block ends in a 12-byte tail holding its checksum.

// dent is one parsed entry.
type dent struct {
	off    int
	ino    uint32
	recLen int
	name   []byte
	ft     uint8
}

// tailLen is the room a leaf block keeps for its checksum tail.
func (f *FS) tailLen() int {
	if f.csum {
		return disklayout.DirentTailSize
	}
	return 0
}

// parseRegion reads the entries of b (a leaf's usable area, or an inline
// area) as ext4_check_dir_entry checks them: rec_len a multiple of 4 and
// at least the header, within the area, the name within the record.
func (f *FS) parseRegion(n *inode, b []byte, where string) ([]dent, error) {
	var out []dent
	for p := 0; p < len(b); {
		if len(b)-p < disklayout.DirentHeaderSize {
			return nil, f.corrupt("directory inode %d, %s: entry at %d truncated", n.ino, where, p)
		}
		h, _ := disklayout.DecodeDirent(b[p:])
		rl := disklayout.RecLen(h.RecLen, f.bs)
		nl := int(h.NameLen)
		ft := h.FileType
		if !f.hasFiletype() {
			nl |= int(h.FileType) << 8
			ft = 0
		}
		if rl < disklayout.DirentMinLen(0) || rl%4 != 0 || rl > len(b)-p || (h.Inode != 0 && rl < disklayout.DirentMinLen(nl)) {
			return nil, f.corrupt("directory inode %d, %s: entry at %d has a bad rec_len %d", n.ino, where, p, rl)
		}
		if uint64(h.Inode) > f.inodes {
			return nil, f.corrupt("directory inode %d, %s: entry at %d names inode %d", n.ino, where, p, h.Inode)
		}
		e := dent{off: p, ino: h.Inode, recLen: rl, ft: ft}
		if h.Inode != 0 {
			e.name = b[p+8 : p+8+nl]
		}
		out = append(out, e)
		p += rl
	}
	return out, nil
}

// leafArea checks a leaf block's checksum tail (metadata_csum) and returns
// the part that holds entries.
func (f *FS) leafArea(n *inode, b []byte, blk uint64) ([]byte, error) {
	if !f.csum {
		return b, nil
	}
	stored, ok := disklayout.DirBlockTail(b)
	if !ok {
		return nil, f.corrupt("directory inode %d: block %d has no checksum tail", n.ino, blk)
	}
	if c := disklayout.DirBlockChecksum(f.inodeSeed(n), b); c != stored {
		return nil, f.corrupt("directory inode %d: block %d checksum mismatch (stored %#x, computed %#x)", n.ino, blk, stored, c)
	}
	return b[:len(b)-disklayout.DirentTailSize], nil
}

// sealLeaf writes the checksum tail of a changed leaf block.
func (f *FS) sealLeaf(n *inode, b []byte) {
	if f.csum {
		putDirTail(b, f.inodeSeed(n))
	}
}

// entryType is the directory entry file type of a mode.
func (f *FS) entryType(mode uint16) uint8 {
	if !f.hasFiletype() {
		return 0
	}
	switch mode & sIFMT {
	case sIFREG:
		return disklayout.FtRegFile
	case sIFDIR:
		return disklayout.FtDir
	case sIFLNK:
		return disklayout.FtSymlink
	}
	return disklayout.FtUnknown
}

// addToRegion puts an entry into the first record of area with room for
// it: an unused record, or the slack after a used one (add_dirent_to_buf).
func (f *FS) addToRegion(n *inode, area []byte, where string, name []byte, ino uint32, ft uint8) (bool, error) {
	ents, err := f.parseRegion(n, area, where)
	if err != nil {
		return false, err
	}
	need := disklayout.DirentMinLen(len(name))
	for _, e := range ents {
		if e.ino == 0 {
			if e.recLen >= need {
				putDirent(area[e.off:], ino, e.recLen, name, ft, f.bs)
				return true, nil
			}
			continue
		}
		used := disklayout.DirentMinLen(len(e.name))
		if e.recLen-used >= need {
			le.PutUint16(area[e.off+4:], encodeRecLen(used, f.bs))
			putDirent(area[e.off+used:], ino, e.recLen-used, name, ft, f.bs)
			return true, nil
		}
	}
	return false, nil
}

// newLeaf fills b as an empty leaf block (one unused record spanning it).
func (f *FS) newLeaf(n *inode, b []byte) {
	clear(b)
	putDirent(b, 0, len(b)-f.tailLen(), nil, 0, f.bs)
	f.sealLeaf(n, b)
}

// dirBlocks is the number of blocks of a block directory.
func (f *FS) dirBlocks(n *inode) uint64 { return (f.size(n) + uint64(f.bs) - 1) / uint64(f.bs) }

// checkDirSize refuses a directory larger than the volume (a hostile
// i_size would make scans endless).
func (f *FS) checkDirSize(n *inode) error {
	if !n.flag(disklayout.FlagInlineData) && f.dirBlocks(n) > f.blocks {
		return f.corrupt("directory inode %d has %d bytes, more than the volume", n.ino, f.size(n))
	}
	return nil
}

// dirAppendBlock adds a block at the end of a block directory and returns
// its logical number, physical number and staged (zeroed) content.
func (f *FS) dirAppendBlock(n *inode) (uint64, uint64, []byte, error) {
	lblk := f.dirBlocks(n)
	goal := uint64(0)
	if lblk > 0 {
		if p, err := f.mapBlock(n, lblk-1); err == nil && p != 0 {
			goal = p + 1
		}
	}
	if goal == 0 {
		goal = f.groupFirst(uint64(n.ino-1) / f.ipg)
	}
	phys, _, err := f.allocRun(goal, 1)
	if err != nil {
		return 0, 0, nil, err
	}
	if err := f.mapAppend(n, lblk, phys, 1); err != nil {
		return 0, 0, nil, err
	}
	if err := f.addBlocks(n, 1); err != nil {
		return 0, 0, nil, err
	}
	if err := f.setSize(n, (lblk+1)*uint64(f.bs)); err != nil {
		return 0, 0, nil, err
	}
	b, err := f.st.fresh(phys)
	return lblk, phys, b, err
}

// mapAppend maps count blocks from phys at lblk, after everything mapped.
func (f *FS) mapAppend(n *inode, lblk, phys, count uint64) error {
	if n.flag(disklayout.FlagExtents) {
		if lblk+count > 1<<32 {
			return f.refuse("inode %d: logical block %d is past what extents address", n.ino, lblk+count)
		}
		for count > 0 {
			k := min(count, maxExtentLen)
			if err := f.extentAppend(n, uint32(lblk), phys, uint32(k)); err != nil {
				return err
			}
			lblk, phys, count = lblk+k, phys+k, count-k
		}
		return nil
	}
	for i := range count {
		if err := f.blockMapSet(n, lblk+i, phys+i, phys+i); err != nil {
			return err
		}
	}
	return nil
}

// scanLinear calls fn with each leaf block of a block directory that is
// not an htree index block, until fn returns false.
func (f *FS) scanLinear(n *inode, fn func(lblk, phys uint64, area []byte) (bool, error)) error {
	nb := f.dirBlocks(n)
	for lblk := uint64(0); lblk < nb; lblk++ {
		phys, err := f.mapBlock(n, lblk)
		if err != nil {
			return err
		}
		if phys == 0 {
			continue
		}
		b, err := f.st.read(phys)
		if err != nil {
			return err
		}
		if f.isDxBlock(n, lblk, b) {
			continue
		}
		area, err := f.leafArea(n, b, phys)
		if err != nil {
			return err
		}
		more, err := fn(lblk, phys, area)
		if err != nil || !more {
			return err
		}
	}
	return nil
}

// isDxBlock says whether a block of an indexed directory is an htree
// node (the root, or an interior node: one empty record spanning it).
func (f *FS) isDxBlock(n *inode, lblk uint64, b []byte) bool {
	if !f.indexed(n) {
		return false
	}
	return lblk == 0 || le.Uint32(b) == 0 && disklayout.RecLen(le.Uint16(b[4:]), f.bs) == f.bs
}

// indexed says whether a directory is an htree directory.
func (f *FS) indexed(n *inode) bool {
	return f.hasDirIndex() && n.flag(disklayout.FlagIndex) && !n.flag(disklayout.FlagInlineData)
}

// lookup finds name in directory n: 0 when it is not there.
func (f *FS) lookup(n *inode, name []byte) (uint32, uint8, error) {
	if err := f.checkDirSize(n); err != nil {
		return 0, 0, err
	}
	if n.flag(disklayout.FlagInlineData) {
		return f.inlineLookup(n, name)
	}
	if f.indexed(n) {
		return f.dxLookup(n, name)
	}
	var ino uint32
	var ft uint8
	err := f.scanLinear(n, func(_, _ uint64, area []byte) (bool, error) {
		ents, err := f.parseRegion(n, area, "leaf")
		if err != nil {
			return false, err
		}
		for _, e := range ents {
			if e.ino != 0 && bytes.Equal(e.name, name) {
				ino, ft = e.ino, e.ft
				return false, nil
			}
		}
		return true, nil
	})
	return ino, ft, err
}

// addEntry inserts name -> ino into directory n (which the caller writes
// back afterwards).
func (f *FS) addEntry(n *inode, name []byte, ino uint32, ft uint8) error {
	if err := f.checkDirSize(n); err != nil {
		return err
	}
	if n.flag(disklayout.FlagInlineData) {
		return f.inlineAdd(n, name, ino, ft)
	}
	if f.indexed(n) {
		return f.dxAdd(n, name, ino, ft)
	}
	done := false
	err := f.scanLinear(n, func(lblk, phys uint64, _ []byte) (bool, error) {
		b, err := f.st.modify(phys)
		if err != nil {
			return false, err
		}
		area := b[:len(b)-f.tailLen()]
		ok, err := f.addToRegion(n, area, "leaf", name, ino, ft)
		if err != nil || !ok {
			return !ok, err
		}
		f.sealLeaf(n, b)
		done = true
		f.event(Event{Op: OpDirEntry, Ino: n.ino, Name: string(name), Note: "in block " + itoa(lblk)})
		return false, nil
	})
	if err != nil || done {
		return err
	}
	if f.hasDirIndex() && f.dirBlocks(n) == 1 {
		// As the kernel does, index a directory that outgrows its
		// first block, so it does not stay a long linear list.
		ok, err := f.dxMakeIndexed(n)
		if err != nil {
			return err
		}
		if ok {
			return f.dxAdd(n, name, ino, ft)
		}
	}
	lblk, phys, b, err := f.dirAppendBlock(n)
	if err != nil {
		return err
	}
	f.newLeaf(n, b)
	if ok, err := f.addToRegion(n, b[:len(b)-f.tailLen()], "leaf", name, ino, ft); err != nil || !ok {
		return f.corrupt("directory inode %d: a new block does not take the entry", n.ino)
	}
	f.sealLeaf(n, b)
	f.event(Event{Op: OpDirGrow, Ino: n.ino, Name: string(name), Blocks: []Extent{{phys, 1}}, Note: "new block " + itoa(lblk)})
	return nil
}

// initDirBlock fills the first block of a new directory: "." and "..".
func (f *FS) initDirBlock(n *inode, b []byte, parent uint32) {
	clear(b)
	dot := disklayout.DirentMinLen(1)
	putDirent(b, n.ino, dot, []byte("."), f.entryType(sIFDIR), f.bs)
	putDirent(b[dot:], parent, f.bs-dot-f.tailLen(), []byte(".."), f.entryType(sIFDIR), f.bs)
	f.sealLeaf(n, b)
}
