package extwrite

import (
	"bytes"

	"github.com/vmmount/vmmount/fsread/ext/disklayout"
)

// Inline data (inline_data feature, Documentation/filesystems/ext4/
// inlinedata.rst): a small directory keeps the parent's inode number in the
// first 4 bytes of i_block and its entries in the other 56 bytes and in the
// value of the in-inode xattr "system.data". The writer adds entries to the
// i_block part while it has room; otherwise it converts the directory to a
// block directory as ext4_convert_inline_data does, and removes
// system.data.

// ibodyAttr is one in-inode extended attribute.
type ibodyAttr struct {
	index uint8
	name  []byte
	inum  uint32
	hash  uint32
	value []byte
}

// ibodyArea returns the in-inode xattr area (after i_extra_isize), nil if
// the inode has none.
func ibodyArea(n *inode) []byte {
	start := disklayout.InodeBaseSize + int(n.d.ExtraIsize)
	if len(n.raw) <= disklayout.InodeBaseSize || start+disklayout.XattrIbodyHdrSize > len(n.raw) {
		return nil
	}
	return n.raw[start:]
}

// ibodyAttrs parses the in-inode xattrs (attributes.rst): a magic, entries
// from right after it, values at offsets counted from the first entry.
func (f *FS) ibodyAttrs(n *inode) ([]ibodyAttr, error) {
	area := ibodyArea(n)
	if area == nil || le.Uint32(area) != disklayout.XattrMagic {
		return nil, nil
	}
	body := area[disklayout.XattrIbodyHdrSize:]
	var out []ibodyAttr
	for p := 0; ; {
		if p+4 > len(body) {
			return nil, f.corrupt("inode %d: in-inode xattrs run past the inode", n.ino)
		}
		if le.Uint32(body[p:]) == 0 {
			return out, nil
		}
		e, err := disklayout.DecodeXattrEntry(body[p:])
		if err != nil || p+disklayout.XattrEntryLen(int(e.NameLen)) > len(body) {
			return nil, f.corrupt("inode %d: in-inode xattr entry at %d truncated", n.ino, p)
		}
		a := ibodyAttr{index: e.NameIndex, name: body[p+disklayout.XattrEntrySize : p+disklayout.XattrEntrySize+int(e.NameLen)],
			inum: e.ValueInum, hash: e.Hash}
		if e.ValueInum == 0 {
			vo, vs := int(e.ValueOffs), int(e.ValueSize)
			if vo < 0 || vs < 0 || vo+vs > len(body) {
				return nil, f.corrupt("inode %d: in-inode xattr value at %d+%d outside the inode", n.ino, vo, vs)
			}
			a.value = body[vo : vo+vs]
		}
		out = append(out, a)
		p += disklayout.XattrEntryLen(int(e.NameLen))
		if len(out) > len(body)/disklayout.XattrEntrySize {
			return nil, f.corrupt("inode %d: too many in-inode xattrs", n.ino)
		}
	}
}

// removeSystemData removes the system.data attribute from the inode body,
// rewriting the remaining entries packed from the start and their values
// packed from the end, as the kernel lays them out.
func (f *FS) removeSystemData(n *inode) error {
	attrs, err := f.ibodyAttrs(n)
	if err != nil {
		return err
	}
	var keep []ibodyAttr
	for _, a := range attrs {
		if a.index == disklayout.XattrIndexSystem && string(a.name) == "data" {
			continue
		}
		a.name = append([]byte(nil), a.name...)
		a.value = append([]byte(nil), a.value...)
		keep = append(keep, a)
	}
	if len(keep) == len(attrs) {
		return nil
	}
	area := ibodyArea(n)
	body := area[disklayout.XattrIbodyHdrSize:]
	clear(body)
	end := len(body)
	p := 0
	for _, a := range keep {
		e := body[p:]
		e[0] = uint8(len(a.name))
		e[1] = a.index
		vo := 0
		if a.inum == 0 && len(a.value) > 0 {
			end -= (len(a.value) + 3) &^ 3
			vo = end
			copy(body[vo:], a.value)
		}
		le.PutUint16(e[2:], uint16(vo))
		le.PutUint32(e[4:], a.inum)
		le.PutUint32(e[8:], uint32(len(a.value)))
		le.PutUint32(e[12:], a.hash)
		copy(e[disklayout.XattrEntrySize:], a.name)
		p += disklayout.XattrEntryLen(len(a.name))
	}
	if p+4 > end {
		return f.corrupt("inode %d: in-inode xattrs do not fit back", n.ino)
	}
	return nil
}

// inlineRegions returns the parent inode and the two entry areas of an
// inline directory: i_block after the parent (a copy) and system.data.
func (f *FS) inlineRegions(n *inode) (parent uint32, ib []byte, data []byte, err error) {
	blk := n.iblock()
	attrs, err := f.ibodyAttrs(n)
	if err != nil {
		return 0, nil, nil, err
	}
	for _, a := range attrs {
		if a.index == disklayout.XattrIndexSystem && string(a.name) == "data" {
			if a.inum != 0 {
				return 0, nil, nil, f.corrupt("inode %d: inline data in an ea_inode", n.ino)
			}
			data = a.value
		}
	}
	return le.Uint32(blk), blk[4:], data, nil
}

func (f *FS) inlineLookup(n *inode, name []byte) (uint32, uint8, error) {
	_, ib, data, err := f.inlineRegions(n)
	if err != nil {
		return 0, 0, err
	}
	for _, r := range [][]byte{ib, data} {
		if len(r) == 0 {
			continue
		}
		ents, err := f.parseRegion(n, r, "inline data")
		if err != nil {
			return 0, 0, err
		}
		for _, e := range ents {
			if e.ino != 0 && bytes.Equal(e.name, name) {
				return e.ino, e.ft, nil
			}
		}
	}
	return 0, 0, nil
}

// inlineAdd adds an entry to an inline directory, converting it to a block
// directory when i_block has no room.
func (f *FS) inlineAdd(n *inode, name []byte, ino uint32, ft uint8) error {
	parent, ib, data, err := f.inlineRegions(n)
	if err != nil {
		return err
	}
	if ok, err := f.addToRegion(n, ib, "inline data", name, ino, ft); err != nil {
		return err
	} else if ok {
		blk := make([]byte, disklayout.IBlockSize)
		le.PutUint32(blk, parent)
		copy(blk[4:], ib)
		n.setIblock(blk)
		f.event(Event{Op: OpDirEntry, Ino: n.ino, Name: string(name), Note: "in the inline area"})
		return nil
	}
	var ents []dent
	for _, r := range [][]byte{ib, data} {
		if len(r) == 0 {
			continue
		}
		es, err := f.parseRegion(n, r, "inline data")
		if err != nil {
			return err
		}
		for _, e := range es {
			if e.ino != 0 {
				e.name = append([]byte(nil), e.name...)
				ents = append(ents, e)
			}
		}
	}
	return f.convertInlineDir(n, parent, ents, name, ino, ft)
}

// convertInlineDir moves an inline directory's entries into a new block
// ("." and ".." first) and adds the new one.
func (f *FS) convertInlineDir(n *inode, parent uint32, ents []dent, name []byte, ino uint32, ft uint8) error {
	if err := f.removeSystemData(n); err != nil {
		return err
	}
	n.d.Flags &^= disklayout.FlagInlineData
	n.d.Block = [disklayout.NBlocks]uint32{}
	if f.hasExtents() {
		f.initExtents(n)
	}
	if err := f.setSize(n, 0); err != nil {
		return err
	}
	_, phys, b, err := f.dirAppendBlock(n)
	if err != nil {
		return err
	}
	f.initDirBlock(n, b, parent)
	area := b[:len(b)-f.tailLen()]
	for _, e := range append(ents, dent{ino: ino, name: name, ft: ft}) {
		ok, err := f.addToRegion(n, area, "leaf", e.name, e.ino, e.ft)
		if err != nil {
			return err
		}
		if !ok {
			return f.refuse("inline directory %d does not fit in one block", n.ino)
		}
	}
	f.sealLeaf(n, b)
	f.event(Event{Op: OpInlineConvert, Ino: n.ino, Name: string(name), Blocks: []Extent{{phys, 1}},
		Note: "inline directory moved to a block to make room"})
	return nil
}
