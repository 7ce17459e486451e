package extwrite

// Block maps (Documentation/filesystems/ext4/ifork.rst, "Direct/Indirect
// Block Addressing"): i_block[0..11] point at data, i_block[12] at a block
// of pointers, [13] at a block of pointers to those, [14] one level more.

const (
	nDirect   = 12
	indSingle = 12
	indDouble = 13
	indTriple = 14
)

func (f *FS) ptrsPerBlock() uint64 { return uint64(f.bs / 4) }

// blockMapPath turns a logical block into the i_block slot and the indexes
// into each indirect level; ok is false past the triple indirect range.
func (f *FS) blockMapPath(lblk uint64) (slot int, idx []uint64, ok bool) {
	p := f.ptrsPerBlock()
	if lblk < nDirect {
		return int(lblk), nil, true
	}
	lblk -= nDirect
	if lblk < p {
		return indSingle, []uint64{lblk}, true
	}
	lblk -= p
	if lblk < p*p {
		return indDouble, []uint64{lblk / p, lblk % p}, true
	}
	lblk -= p * p
	if lblk < p*p*p {
		return indTriple, []uint64{lblk / (p * p), lblk / p % p, lblk % p}, true
	}
	return 0, nil, false
}

func (f *FS) checkPtr(n *inode, ptr uint64) error {
	if ptr != 0 && (ptr < f.firstData || ptr >= f.blocks) {
		return f.corrupt("inode %d: block pointer %d is outside the volume", n.ino, ptr)
	}
	return nil
}

// blockMapMap maps one logical block; 0 is a hole.
func (f *FS) blockMapMap(n *inode, lblk uint64) (uint64, error) {
	slot, idx, ok := f.blockMapPath(lblk)
	if !ok {
		return 0, nil
	}
	ptr := uint64(n.d.Block[slot])
	for _, i := range idx {
		if err := f.checkPtr(n, ptr); err != nil || ptr == 0 {
			return 0, err
		}
		b, err := f.st.read(ptr)
		if err != nil {
			return 0, err
		}
		ptr = uint64(le.Uint32(b[4*i:]))
	}
	return ptr, f.checkPtr(n, ptr)
}

// blockMapWalk calls data for every mapped data block and meta for every
// indirect block, before its children.
func (f *FS) blockMapWalk(n *inode, data func(blk uint64) error, meta func(blk uint64) error) error {
	var walk func(ptr uint64, level int) error
	walk = func(ptr uint64, level int) error {
		if ptr == 0 {
			return nil
		}
		if err := f.checkPtr(n, ptr); err != nil {
			return err
		}
		if level == 0 {
			return data(ptr)
		}
		// meta first: it refuses a block seen before, so a hostile map
		// pointing at the same indirect block over and over costs
		// nothing.
		if err := meta(ptr); err != nil {
			return err
		}
		b, err := f.st.read(ptr)
		if err != nil {
			return err
		}
		ptrs := append([]byte(nil), b...)
		for i := 0; i < len(ptrs); i += 4 {
			if err := walk(uint64(le.Uint32(ptrs[i:])), level-1); err != nil {
				return err
			}
		}
		return nil
	}
	for i := range nDirect {
		if err := walk(uint64(n.d.Block[i]), 0); err != nil {
			return err
		}
	}
	for level, slot := range []int{indSingle, indDouble, indTriple} {
		if err := walk(uint64(n.d.Block[slot]), level+1); err != nil {
			return err
		}
	}
	return nil
}

// blockMapSet maps logical block lblk to phys, allocating (zeroed)
// indirect blocks near goal as needed; they count in i_blocks.
func (f *FS) blockMapSet(n *inode, lblk, phys, goal uint64) error {
	slot, idx, ok := f.blockMapPath(lblk)
	if !ok {
		return f.refuse("inode %d: block %d is past what a block map addresses (the filesystem has no extents)", n.ino, lblk)
	}
	if phys >= 1<<32 {
		return f.refuse("inode %d: block %d is past what a block map's 32-bit pointers address", n.ino, phys)
	}
	if len(idx) == 0 {
		n.d.Block[slot] = uint32(phys)
		return nil
	}
	newInd := func() (uint64, error) {
		blk, _, err := f.allocRun(goal, 1)
		if err != nil {
			return 0, err
		}
		if blk >= 1<<32 {
			return 0, f.refuse("inode %d: indirect block %d is past what 32-bit pointers address", n.ino, blk)
		}
		if _, err := f.st.fresh(blk); err != nil {
			return 0, err
		}
		return blk, f.addBlocks(n, 1)
	}
	ptr := uint64(n.d.Block[slot])
	if ptr == 0 {
		var err error
		if ptr, err = newInd(); err != nil {
			return err
		}
		n.d.Block[slot] = uint32(ptr)
	}
	for level, i := range idx {
		if err := f.checkPtr(n, ptr); err != nil {
			return err
		}
		b, err := f.st.modify(ptr)
		if err != nil {
			return err
		}
		if level == len(idx)-1 {
			le.PutUint32(b[4*i:], uint32(phys))
			return nil
		}
		next := uint64(le.Uint32(b[4*i:]))
		if next == 0 {
			if next, err = newInd(); err != nil {
				return err
			}
			// newInd may have staged other blocks; b is still the
			// staged copy of ptr.
			le.PutUint32(b[4*i:], uint32(next))
		}
		ptr = next
	}
	return nil
}
