package extwrite

import (
	"bytes"
	"sort"

	"github.com/vmmount/vmmount/fsread/ext"
	"github.com/vmmount/vmmount/fsread/ext/disklayout"
)

// Hash tree directories (directory.rst, "Hash Tree Directories"; the
// kernel's dx_probe, do_split and ext4_dx_add_entry). Logical block 0 is
// the root: fake "." and ".." records, dx_root_info, then the index
// entries; interior nodes are blocks with one empty record and the index
// entries. Entry 0's hash slot holds the count and limit. With
// metadata_csum, an 8-byte dx_tail follows limit entries.

// dxFrame is one index node on the path to a leaf.
type dxFrame struct {
	lblk  uint64
	phys  uint64
	off   int // where the count/limit (and entries) start
	count int
	limit int
	at    int // the entry followed
}

// dxInfo is what the root says.
type dxInfo struct {
	hashVersion uint8 // with the unsigned variant applied
	levels      int   // indirect levels
}

func (f *FS) dxMaxLevels() int {
	if f.sb.HasIncompat(disklayout.IncompatLargedir) {
		return disklayout.DxMaxLevelsLarg
	}
	return disklayout.DxMaxLevels
}

func (f *FS) dxLimit(off int) int {
	tail := 0
	if f.csum {
		tail = disklayout.DxTailSize
	}
	return (f.bs - off - tail) / disklayout.DxEntrySize
}

func dxEntry(b []byte, off, i int) (hash, blk uint32) {
	e := disklayout.DecodeDxEntry(b, off, i)
	return e.Hash, e.Block & 0x0FFFFFFF
}

func putDxEntry(b []byte, off, i int, hash, blk uint32) {
	p := off + i*disklayout.DxEntrySize
	if i > 0 {
		le.PutUint32(b[p:], hash)
	}
	le.PutUint32(b[p+4:], blk)
}

func putDxCount(b []byte, off, count, limit int) {
	le.PutUint16(b[off:], uint16(limit))
	le.PutUint16(b[off+2:], uint16(count))
}

// dxNode reads and checks the index node at lblk, its entries at off.
func (f *FS) dxNode(n *inode, lblk uint64, off int) (dxFrame, []byte, error) {
	if lblk >= f.dirBlocks(n) {
		return dxFrame{}, nil, f.corrupt("directory inode %d: htree points at block %d past its end", n.ino, lblk)
	}
	phys, err := f.mapBlock(n, lblk)
	if err != nil {
		return dxFrame{}, nil, err
	}
	if phys == 0 {
		return dxFrame{}, nil, f.corrupt("directory inode %d: htree node %d is a hole", n.ino, lblk)
	}
	b, err := f.st.read(phys)
	if err != nil {
		return dxFrame{}, nil, err
	}
	cl, _ := disklayout.DecodeDxCountLimit(b, off)
	fr := dxFrame{lblk: lblk, phys: phys, off: off, count: int(cl.Count), limit: int(cl.Limit)}
	if off == disklayout.DxNodeEntries && (le.Uint32(b) != 0 || disklayout.RecLen(le.Uint16(b[4:]), f.bs) != f.bs) {
		return fr, nil, f.corrupt("directory inode %d: htree node %d is not an index block", n.ino, lblk)
	}
	if fr.limit != f.dxLimit(off) || fr.count == 0 || fr.count > fr.limit {
		return fr, nil, f.corrupt("directory inode %d: htree node %d has count %d, limit %d", n.ino, lblk, fr.count, fr.limit)
	}
	if f.csum {
		stored, c, ok := disklayout.DxNodeChecksum(f.inodeSeed(n), b, off, fr.count, fr.limit)
		if !ok || stored != c {
			return fr, nil, f.corrupt("directory inode %d: htree node %d checksum mismatch", n.ino, lblk)
		}
	}
	return fr, b, nil
}

// dxRoot reads the root's info.
func (f *FS) dxRoot(n *inode) (dxInfo, int, error) {
	phys, err := f.mapBlock(n, 0)
	if err != nil {
		return dxInfo{}, 0, err
	}
	if phys == 0 {
		return dxInfo{}, 0, f.corrupt("directory inode %d: htree root is a hole", n.ino)
	}
	b, err := f.st.read(phys)
	if err != nil {
		return dxInfo{}, 0, err
	}
	ri, _ := disklayout.DecodeDxRootInfo(b)
	if ri.ReservedZero != 0 || ri.InfoLength != disklayout.DxRootInfoLen || int(ri.IndirectLevels) >= f.dxMaxLevels() {
		return dxInfo{}, 0, f.corrupt("directory inode %d: bad htree root (info length %d, levels %d)", n.ino, ri.InfoLength, ri.IndirectLevels)
	}
	v := ri.HashVersion
	if v <= disklayout.DxHashTea && f.unsignedH {
		v += 3
	}
	if _, ok := ext.DirHash(v, []byte("x"), f.hashSeed); !ok {
		return dxInfo{}, 0, f.refuse("directory inode %d uses htree hash version %d", n.ino, ri.HashVersion)
	}
	return dxInfo{hashVersion: v, levels: int(ri.IndirectLevels)}, disklayout.DxRootInfoOff + int(ri.InfoLength), nil
}

func (f *FS) dxHash(info dxInfo, name []byte) uint32 {
	h, _ := ext.DirHash(info.hashVersion, name, f.hashSeed)
	return h
}

// dxProbe walks from the root to the leaf whose hash range holds hash.
func (f *FS) dxProbe(n *inode, info dxInfo, rootOff int, hash uint32) ([]dxFrame, error) {
	frames := make([]dxFrame, 0, info.levels+1)
	lblk, off := uint64(0), rootOff
	for level := 0; ; level++ {
		fr, b, err := f.dxNode(n, lblk, off)
		if err != nil {
			return nil, err
		}
		fr.at = sort.Search(fr.count-1, func(i int) bool {
			h, _ := dxEntry(b, fr.off, i+1)
			return h > hash
		})
		frames = append(frames, fr)
		_, child := dxEntry(b, fr.off, fr.at)
		if level == info.levels {
			return frames, nil
		}
		if child == 0 {
			return nil, f.corrupt("directory inode %d: htree index points at block 0", n.ino)
		}
		lblk, off = uint64(child), disklayout.DxNodeEntries
	}
}

// leafOf is the leaf block the bottom frame points at.
func (f *FS) leafOf(n *inode, frames []dxFrame) (uint64, uint64, error) {
	fr := frames[len(frames)-1]
	b, err := f.st.read(fr.phys)
	if err != nil {
		return 0, 0, err
	}
	_, lblk := dxEntry(b, fr.off, fr.at)
	if lblk == 0 || uint64(lblk) >= f.dirBlocks(n) {
		return 0, 0, f.corrupt("directory inode %d: htree points at leaf %d", n.ino, lblk)
	}
	phys, err := f.mapBlock(n, uint64(lblk))
	if err != nil {
		return 0, 0, err
	}
	if phys == 0 {
		return 0, 0, f.corrupt("directory inode %d: htree leaf %d is a hole", n.ino, lblk)
	}
	return uint64(lblk), phys, nil
}

// dxLookup finds name by hash, following collision chains into the next
// leaves (the low bit of the next index hash).
func (f *FS) dxLookup(n *inode, name []byte) (uint32, uint8, error) {
	info, rootOff, err := f.dxRoot(n)
	if err != nil {
		return 0, 0, err
	}
	hash := f.dxHash(info, name)
	frames, err := f.dxProbe(n, info, rootOff, hash)
	if err != nil {
		return 0, 0, err
	}
	for range 1 << 16 {
		_, phys, err := f.leafOf(n, frames)
		if err != nil {
			return 0, 0, err
		}
		b, err := f.st.read(phys)
		if err != nil {
			return 0, 0, err
		}
		area, err := f.leafArea(n, b, phys)
		if err != nil {
			return 0, 0, err
		}
		ents, err := f.parseRegion(n, area, "htree leaf")
		if err != nil {
			return 0, 0, err
		}
		for _, e := range ents {
			if e.ino != 0 && bytes.Equal(e.name, name) {
				return e.ino, e.ft, nil
			}
		}
		more, err := f.dxNext(n, frames, hash)
		if err != nil || !more {
			return 0, 0, err
		}
	}
	return 0, 0, f.corrupt("directory inode %d: htree collision chain too long", n.ino)
}

// dxNext moves frames to the next leaf if it may hold more names with
// hash (ext4_htree_next_block).
func (f *FS) dxNext(n *inode, frames []dxFrame, hash uint32) (bool, error) {
	i := len(frames) - 1
	for ; i >= 0 && frames[i].at+1 >= frames[i].count; i-- {
	}
	if i < 0 {
		return false, nil
	}
	frames[i].at++
	b, err := f.st.read(frames[i].phys)
	if err != nil {
		return false, err
	}
	if h, _ := dxEntry(b, frames[i].off, frames[i].at); h&^1 != hash {
		return false, nil
	}
	for ; i < len(frames)-1; i++ {
		b, err := f.st.read(frames[i].phys)
		if err != nil {
			return false, err
		}
		_, child := dxEntry(b, frames[i].off, frames[i].at)
		fr, _, err := f.dxNode(n, uint64(child), disklayout.DxNodeEntries)
		if err != nil {
			return false, err
		}
		frames[i+1] = fr
	}
	return true, nil
}

// sealDx sets an index node's checksum tail.
func (f *FS) sealDx(n *inode, b []byte, fr dxFrame) {
	if !f.csum {
		return
	}
	tail := fr.off + fr.limit*disklayout.DxEntrySize
	le.PutUint32(b[tail:], 0)
	c := disklayout.Crc32c(f.inodeSeed(n), b[:fr.off+fr.count*disklayout.DxEntrySize])
	c = disklayout.Crc32c(c, b[tail:tail+4])
	c = disklayout.Crc32cZeros(c, 4)
	le.PutUint32(b[tail+4:], c)
}

// dxInsert puts (hash, blk) into node fr after its entry at, which has
// room, and stages the node.
func (f *FS) dxInsert(n *inode, fr *dxFrame, hash uint32, blk uint64) error {
	b, err := f.st.modify(fr.phys)
	if err != nil {
		return err
	}
	p := fr.at + 1
	es := disklayout.DxEntrySize
	copy(b[fr.off+(p+1)*es:fr.off+(fr.count+1)*es], b[fr.off+p*es:fr.off+fr.count*es])
	putDxEntry(b, fr.off, p, hash, uint32(blk))
	fr.count++
	putDxCount(b, fr.off, fr.count, fr.limit)
	f.sealDx(n, b, *fr)
	return nil
}

// newDxNode makes an empty interior node at the end of the directory.
func (f *FS) newDxNode(n *inode) (dxFrame, []byte, error) {
	lblk, phys, b, err := f.dirAppendBlock(n)
	if err != nil {
		return dxFrame{}, nil, err
	}
	putDirent(b, 0, f.bs, nil, 0, f.bs)
	fr := dxFrame{lblk: lblk, phys: phys, off: disklayout.DxNodeEntries, limit: f.dxLimit(disklayout.DxNodeEntries)}
	f.event(Event{Op: OpHtreeNode, Ino: n.ino, Blocks: []Extent{{phys, 1}}, Note: "index block " + itoa(lblk)})
	return fr, b, nil
}

// dxMakeRoom makes room in the bottom index node for one more leaf:
// splitting full interior nodes into two (the parent gets an entry) and,
// when every level is full, moving the root's entries into a new node one
// level down, as ext4_dx_add_entry does.
func (f *FS) dxMakeRoom(n *inode, info *dxInfo, frames []dxFrame) ([]dxFrame, error) {
	for range 2 * disklayout.DxMaxLevelsLarg {
		bottom := len(frames) - 1
		if frames[bottom].count < frames[bottom].limit {
			return frames, nil
		}
		j := bottom - 1
		for j >= 0 && frames[j].count >= frames[j].limit {
			j--
		}
		if j < 0 {
			if info.levels+1 >= f.dxMaxLevels() {
				return nil, f.refuse("directory inode %d: its htree index is full (%d levels)", n.ino, info.levels+1)
			}
			var err error
			if frames, err = f.dxAddLevel(n, info, frames); err != nil {
				return nil, err
			}
			continue
		}
		if err := f.dxSplitNode(n, frames, j+1); err != nil {
			return nil, err
		}
	}
	return nil, f.corrupt("directory inode %d: no room in its htree", n.ino)
}

// dxAddLevel moves the root's entries into a new node under it.
func (f *FS) dxAddLevel(n *inode, info *dxInfo, frames []dxFrame) ([]dxFrame, error) {
	root := frames[0]
	nf, nb, err := f.newDxNode(n)
	if err != nil {
		return nil, err
	}
	rb, err := f.st.modify(root.phys)
	if err != nil {
		return nil, err
	}
	es := disklayout.DxEntrySize
	copy(nb[nf.off+es:], rb[root.off+es:root.off+root.count*es])
	_, first := dxEntry(rb, root.off, 0)
	putDxEntry(nb, nf.off, 0, 0, first)
	nf.count, nf.at = root.count, root.at
	putDxCount(nb, nf.off, nf.count, nf.limit)
	f.sealDx(n, nb, nf)

	root.count, root.at = 1, 0
	putDxEntry(rb, root.off, 0, 0, uint32(nf.lblk))
	putDxCount(rb, root.off, root.count, root.limit)
	rb[disklayout.DxRootInfoOff+6]++ // indirect_levels
	info.levels++
	f.sealDx(n, rb, root)

	out := append([]dxFrame{root, nf}, frames[1:]...)
	return out, nil
}

// dxSplitNode splits the full node frames[k] in two; its parent
// frames[k-1] has room for the second half's entry.
func (f *FS) dxSplitNode(n *inode, frames []dxFrame, k int) error {
	old := frames[k]
	nf, nb, err := f.newDxNode(n)
	if err != nil {
		return err
	}
	ob, err := f.st.modify(old.phys)
	if err != nil {
		return err
	}
	es := disklayout.DxEntrySize
	c1 := old.count / 2
	c2 := old.count - c1
	hash2, first := dxEntry(ob, old.off, c1)
	copy(nb[nf.off+es:], ob[old.off+(c1+1)*es:old.off+old.count*es])
	putDxEntry(nb, nf.off, 0, 0, first)
	nf.count = c2
	putDxCount(nb, nf.off, nf.count, nf.limit)
	old.count = c1
	putDxCount(ob, old.off, old.count, old.limit)

	parent := &frames[k-1]
	if err := f.dxInsert(n, parent, hash2, nf.lblk); err != nil {
		return err
	}
	if old.at >= c1 {
		nf.at = old.at - c1
		parent.at++
		frames[k] = nf
	} else {
		frames[k] = old
	}
	f.sealDx(n, ob, old)
	f.sealDx(n, nb, nf)
	return nil
}

// hashed is an entry of a leaf being split.
type hashed struct {
	hash uint32
	ino  uint32
	ft   uint8
	name []byte
}

// dxAdd inserts name into an htree directory: into its leaf when there is
// room, else after splitting the leaf by hash (do_split).
func (f *FS) dxAdd(n *inode, name []byte, ino uint32, ft uint8) error {
	info, rootOff, err := f.dxRoot(n)
	if err != nil {
		return err
	}
	hash := f.dxHash(info, name)
	frames, err := f.dxProbe(n, info, rootOff, hash)
	if err != nil {
		return err
	}
	lblk, phys, err := f.leafOf(n, frames)
	if err != nil {
		return err
	}
	rb, err := f.st.read(phys)
	if err != nil {
		return err
	}
	if _, err := f.leafArea(n, rb, phys); err != nil {
		return err
	}
	b, err := f.st.modify(phys)
	if err != nil {
		return err
	}
	area := b[:len(b)-f.tailLen()]
	if ok, err := f.addToRegion(n, area, "htree leaf", name, ino, ft); err != nil {
		return err
	} else if ok {
		f.sealLeaf(n, b)
		f.event(Event{Op: OpDirEntry, Ino: n.ino, Name: string(name), Note: "in htree leaf " + itoa(lblk)})
		return nil
	}

	if frames, err = f.dxMakeRoom(n, &info, frames); err != nil {
		return err
	}
	ents, err := f.parseRegion(n, area, "htree leaf")
	if err != nil {
		return err
	}
	var hs []hashed
	for _, e := range ents {
		if e.ino != 0 {
			hs = append(hs, hashed{f.dxHash(info, e.name), e.ino, e.ft, append([]byte(nil), e.name...)})
		}
	}
	if len(hs) < 2 {
		return f.refuse("directory inode %d: htree leaf %d cannot be split", n.ino, lblk)
	}
	sort.SliceStable(hs, func(i, j int) bool { return hs[i].hash < hs[j].hash })
	// Move the upper half by size (do_split), at least one entry each side.
	size, move := 0, 0
	for i := len(hs) - 1; i > 0; i-- {
		s := disklayout.DirentMinLen(len(hs[i].name))
		if size+s/2 > f.bs/2 {
			break
		}
		size += s
		move++
	}
	split := len(hs) - max(1, min(move, len(hs)-1))
	hash2 := hs[split].hash
	cont := uint32(0)
	if hs[split-1].hash == hash2 {
		cont = 1
	}
	nlblk, nphys, nb, err := f.dirAppendBlock(n)
	if err != nil {
		return err
	}
	f.event(Event{Op: OpHtreeSplit, Ino: n.ino, Blocks: []Extent{{nphys, 1}}, Note: "leaf " + itoa(lblk) + " split into new block " + itoa(nlblk)})
	// b may have been staged anew by the allocation; fetch it again.
	if b, err = f.st.modify(phys); err != nil {
		return err
	}
	f.fillLeaf(n, b, hs[:split])
	f.fillLeaf(n, nb, hs[split:])
	bottom := &frames[len(frames)-1]
	if err := f.dxInsert(n, bottom, hash2|cont, nlblk); err != nil {
		return err
	}
	target, tb := b, "leaf "+itoa(lblk)
	if hash >= hash2 {
		target, tb = nb, "leaf "+itoa(nlblk)
	}
	ok, err := f.addToRegion(n, target[:len(target)-f.tailLen()], "htree leaf", name, ino, ft)
	if err != nil {
		return err
	}
	if !ok {
		return f.refuse("directory inode %d: a split htree leaf has no room for %q", n.ino, name)
	}
	f.sealLeaf(n, target)
	f.event(Event{Op: OpDirEntry, Ino: n.ino, Name: string(name), Note: "in htree " + tb})
	return nil
}

// fillLeaf writes entries packed into leaf block b, the last record
// spanning to the tail, and seals it.
func (f *FS) fillLeaf(n *inode, b []byte, hs []hashed) {
	clear(b)
	area := len(b) - f.tailLen()
	p := 0
	for i, h := range hs {
		rl := disklayout.DirentMinLen(len(h.name))
		if i == len(hs)-1 {
			rl = area - p
		}
		putDirent(b[p:], h.ino, rl, h.name, h.ft, f.bs)
		p += rl
	}
	if len(hs) == 0 {
		putDirent(b, 0, area, nil, 0, f.bs)
	}
	f.sealLeaf(n, b)
}

// dxMakeIndexed turns a one-block linear directory whose block is full
// into an htree directory, as make_indexed_dir does when such a directory
// needs a second block: the entries after "." and ".." move to a new
// block 1, and block 0 becomes the root (dx_root_info with the
// superblock's default hash version, one index entry pointing at block
// 1). ok is false when block 0 does not start with the "." and ".."
// records the root layout needs; the directory then stays linear.
func (f *FS) dxMakeIndexed(n *inode) (bool, error) {
	phys0, err := f.mapBlock(n, 0)
	if err != nil || phys0 == 0 {
		return false, err
	}
	rb, err := f.st.read(phys0)
	if err != nil {
		return false, err
	}
	area, err := f.leafArea(n, rb, phys0)
	if err != nil {
		return false, err
	}
	ents, err := f.parseRegion(n, area, "leaf")
	if err != nil {
		return false, err
	}
	if len(ents) < 2 || ents[0].off != 0 || string(ents[0].name) != "." || ents[0].recLen != disklayout.DirentMinLen(1) ||
		ents[1].off != ents[0].recLen || string(ents[1].name) != ".." {
		return false, nil
	}
	v := f.sb.DefHashVersion
	if v > disklayout.DxHashTea {
		return false, nil
	}
	var hs []hashed
	for _, e := range ents[2:] {
		if e.ino != 0 {
			hs = append(hs, hashed{ino: e.ino, ft: e.ft, name: append([]byte(nil), e.name...)})
		}
	}
	dotdot := ents[1]
	lblk, phys1, b1, err := f.dirAppendBlock(n)
	if err != nil {
		return false, err
	}
	if lblk != 1 {
		return false, f.corrupt("directory inode %d: new block %d is not block 1", n.ino, lblk)
	}
	f.fillLeaf(n, b1, hs)

	root, err := f.st.modify(phys0)
	if err != nil {
		return false, err
	}
	dot := disklayout.DirentMinLen(1)
	clear(root[dot:])
	putDirent(root[dot:], dotdot.ino, f.bs-dot, []byte(".."), dotdot.ft, f.bs)
	ri := root[disklayout.DxRootInfoOff:]
	ri[4] = v // hash_version
	ri[5] = disklayout.DxRootInfoLen
	off := disklayout.DxRootInfoOff + disklayout.DxRootInfoLen
	fr := dxFrame{lblk: 0, phys: phys0, off: off, count: 1, limit: f.dxLimit(off)}
	putDxCount(root, off, fr.count, fr.limit)
	putDxEntry(root, off, 0, 0, 1)
	f.sealDx(n, root, fr)
	n.d.Flags |= disklayout.FlagIndex
	f.event(Event{Op: OpHtreeIndex, Ino: n.ino, Blocks: []Extent{{phys1, 1}}, Note: "one-block directory indexed; its entries moved to block 1"})
	return true, nil
}
