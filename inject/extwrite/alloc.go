package extwrite

import (
	"fmt"
	"math/bits"

	"github.com/vmmount/vmmount/fsread/ext/disklayout"
)

// Bitmaps and allocation (Documentation/filesystems/ext4/blockgroup.rst and
// group_descr.rst). Bit i of a group's block bitmap is block
// groupFirst(g)+i; bit i of its inode bitmap is inode g*ipg+i+1.

func bitSet(b []byte, i uint64) bool { return b[i/8]&(1<<(i%8)) != 0 }
func setBit(b []byte, i uint64)      { b[i/8] |= 1 << (i % 8) }
func clearBit(b []byte, i uint64)    { b[i/8] &^= 1 << (i % 8) }

// buildBlockBitmap makes the bitmap of a group whose bitmap is not
// initialized on disk, as ext4_init_block_bitmap does: the superblock
// backup and descriptor blocks, the group's own bitmaps and inode table
// where they lie inside it, and the bits past its last block. The free
// count it implies must be the descriptor's, or the group is not what the
// flag says (metadata of other groups inside it, say) and is refused.
func (f *FS) buildBlockBitmap(gr *group) ([]byte, error) {
	b := make([]byte, f.bs)
	first, n := f.groupFirst(gr.nr), f.groupLen(gr.nr)
	base := min(f.baseMeta(gr.nr), n)
	for i := range base {
		setBit(b, i)
	}
	mark := func(blk uint64) {
		if blk >= first && blk < first+n {
			setBit(b, blk-first)
		}
	}
	mark(gr.blockBitmap())
	mark(gr.inodeBitmap())
	for t := gr.inodeTable(); t < gr.inodeTable()+f.itBlocks; t++ {
		mark(t)
	}
	for i := n; i < uint64(f.bs)*8; i++ {
		setBit(b, i)
	}
	used := uint64(0)
	for i := range n {
		if bitSet(b, i) {
			used++
		}
	}
	if free := n - used; free != uint64(gdFreeBlocks(&gr.gd)) {
		return nil, f.corrupt("group %d has an uninitialized block bitmap with %d free blocks, but its descriptor counts %d", gr.nr, free, gdFreeBlocks(&gr.gd))
	}
	return b, nil
}

// blockBitmap returns a group's block bitmap for reading, checked against
// its metadata_csum checksum the first time.
func (f *FS) blockBitmap(gr *group) ([]byte, error) {
	if f.blockUninit(gr) {
		return f.buildBlockBitmap(gr)
	}
	b, err := f.st.read(gr.blockBitmap())
	if err != nil {
		return nil, err
	}
	if !gr.bbmOK {
		if f.csum {
			c := disklayout.Crc32c(f.seed, b[:f.bpg/8])
			stored := uint32(gr.gd.BlockBitmapCsumLo)
			if f.descSize >= 0x3A {
				stored |= uint32(gr.gd.BlockBitmapCsumHi) << 16
			} else {
				c &= 0xFFFF
			}
			if c != stored {
				return nil, f.corrupt("group %d block bitmap checksum mismatch (stored %#x, computed %#x)", gr.nr, stored, c)
			}
		}
		gr.bbmOK = true
	}
	return b, nil
}

// blockBitmapRW stages a group's block bitmap for changes; an
// uninitialized one is built, written out and its flag cleared.
func (f *FS) blockBitmapRW(gr *group) ([]byte, error) {
	view, err := f.blockBitmap(gr)
	if err != nil {
		return nil, err
	}
	if f.blockUninit(gr) {
		b, err := f.st.fresh(gr.blockBitmap())
		if err != nil {
			return nil, err
		}
		copy(b, view)
		gr.gd.Flags &^= disklayout.BgBlockUninit
		gr.dirty, gr.bbmOK = true, true
		return b, nil
	}
	return f.st.modify(gr.blockBitmap())
}

// inodeBitmap returns a group's inode bitmap for reading.
func (f *FS) inodeBitmap(gr *group) ([]byte, error) {
	if f.inodeUninit(gr) {
		b := make([]byte, f.bs)
		for i := f.ipg; i < uint64(f.bs)*8; i++ {
			setBit(b, i)
		}
		return b, nil
	}
	b, err := f.st.read(gr.inodeBitmap())
	if err != nil {
		return nil, err
	}
	if !gr.ibmOK {
		if f.csum {
			c := disklayout.Crc32c(f.seed, b[:f.ipg/8])
			stored := uint32(gr.gd.InodeBitmapCsumLo)
			if f.descSize >= 0x3C {
				stored |= uint32(gr.gd.InodeBitmapCsumHi) << 16
			} else {
				c &= 0xFFFF
			}
			if c != stored {
				return nil, f.corrupt("group %d inode bitmap checksum mismatch (stored %#x, computed %#x)", gr.nr, stored, c)
			}
		}
		gr.ibmOK = true
	}
	return b, nil
}

func (f *FS) inodeBitmapRW(gr *group) ([]byte, error) {
	view, err := f.inodeBitmap(gr)
	if err != nil {
		return nil, err
	}
	if f.inodeUninit(gr) {
		b, err := f.st.fresh(gr.inodeBitmap())
		if err != nil {
			return nil, err
		}
		copy(b, view)
		gr.gd.Flags &^= disklayout.BgInodeUninit
		gr.dirty, gr.ibmOK = true, true
		return b, nil
	}
	return f.st.modify(gr.inodeBitmap())
}

// freedBefore returns the first block of [start, start+n) that the
// transaction freed, or start+n.
func (f *FS) freedBefore(start, n uint64) uint64 {
	end := start + n
	for _, r := range f.freed {
		if r.start < end && r.start+r.n > start {
			end = max(start, r.start)
		}
	}
	return end
}

// groupScanWindow is how many groups from the goal a first pass searches
// for a run of the whole wanted length before taking shorter runs.
const groupScanWindow = 64

// allocRun allocates one run of up to want free blocks, preferably at or
// after goal and preferably of the whole length, and marks it used.
func (f *FS) allocRun(goal, want uint64) (start, n uint64, err error) {
	if want == 0 {
		return 0, 0, fmt.Errorf("extwrite: allocating 0 blocks")
	}
	if goal < f.firstData || goal >= f.blocks {
		goal = f.firstData
	}
	g0 := (goal - f.firstData) / f.bpg
	whole := min(want, f.bpg)
	for pass := 0; pass < 2; pass++ {
		limit := f.ngroups
		if pass == 0 {
			limit = min(f.ngroups, groupScanWindow)
		}
		for k := uint64(0); k < limit; k++ {
			g := (g0 + k) % f.ngroups
			gr, err := f.group(g)
			if err != nil {
				return 0, 0, err
			}
			if gdFreeBlocks(&gr.gd) == 0 {
				continue
			}
			from := uint64(0)
			if k == 0 && goal > f.groupFirst(g) {
				from = goal - f.groupFirst(g)
			}
			need := uint64(1)
			if pass == 0 {
				need = whole
			}
			s, m, ok, err := f.findFree(gr, from, need, want)
			if err != nil {
				return 0, 0, err
			}
			if !ok && from > 0 {
				s, m, ok, err = f.findFree(gr, 0, need, want)
				if err != nil {
					return 0, 0, err
				}
			}
			if ok {
				return s, m, f.markBlocks(s, m)
			}
		}
	}
	return 0, 0, fmt.Errorf("%s: %w (%d blocks wanted)", f.label, ErrNoSpace, want)
}

// findFree finds in group gr, from bit from on, the first run of at least
// need free blocks (not freed by this transaction) and returns up to want
// of it.
func (f *FS) findFree(gr *group, from, need, want uint64) (start, n uint64, ok bool, err error) {
	bm, err := f.blockBitmap(gr)
	if err != nil {
		return 0, 0, false, err
	}
	first, glen := f.groupFirst(gr.nr), f.groupLen(gr.nr)
	for i := from; i < glen; {
		if bm[i/8] == 0xFF && i%8 == 0 {
			i += 8
			continue
		}
		if bitSet(bm, i) {
			i++
			continue
		}
		j := i + 1
		for j < glen && j-i < want && !bitSet(bm, j) {
			j++
		}
		s := first + i
		e := f.freedBefore(s, j-i)
		if e == s {
			// Freed in this transaction: step over it.
			i++
			continue
		}
		if e-s >= need {
			return s, e - s, true, nil
		}
		i = j
	}
	return 0, 0, false, nil
}

// markBlocks marks [start, start+n) used; they must be free.
func (f *FS) markBlocks(start, n uint64) error {
	return f.forGroups(start, n, func(gr *group, bm []byte, i, k uint64) error {
		for b := i; b < i+k; b++ {
			if bitSet(bm, b) {
				return f.corrupt("block %d is already in use", f.groupFirst(gr.nr)+b)
			}
			setBit(bm, b)
		}
		free := gdFreeBlocks(&gr.gd)
		if uint64(free) < k {
			return f.corrupt("group %d free block count %d is below what its bitmap shows", gr.nr, free)
		}
		setGdFreeBlocks(&gr.gd, free-uint32(k))
		f.freeBlocksDelta -= int64(k)
		return nil
	})
}

// freeBlocks returns [start, start+n) to the free pool. They must be in
// use and must not be group metadata.
func (f *FS) freeBlocks(start, n uint64) error {
	if n == 0 {
		return nil
	}
	if start < f.firstData || start >= f.blocks || f.blocks-start < n {
		return f.corrupt("freeing blocks %d+%d outside the volume", start, n)
	}
	err := f.forGroups(start, n, func(gr *group, bm []byte, i, k uint64) error {
		if err := f.notGroupMeta(gr, f.groupFirst(gr.nr)+i, k); err != nil {
			return err
		}
		for b := i; b < i+k; b++ {
			if !bitSet(bm, b) {
				return f.corrupt("block %d to free is not in use", f.groupFirst(gr.nr)+b)
			}
			clearBit(bm, b)
		}
		setGdFreeBlocks(&gr.gd, gdFreeBlocks(&gr.gd)+uint32(k))
		f.freeBlocksDelta += int64(k)
		return nil
	})
	if err != nil {
		return err
	}
	f.freed = append(f.freed, blockRun{start, n})
	return nil
}

// notGroupMeta refuses to free a run that overlaps the group's own
// superblock, descriptors, bitmaps or inode table: a file claiming them is
// damage, and freeing them would spread it.
func (f *FS) notGroupMeta(gr *group, s, k uint64) error {
	first := f.groupFirst(gr.nr)
	over := func(a, n uint64) bool { return s < a+n && a < s+k }
	if over(first, f.baseMeta(gr.nr)) || over(gr.blockBitmap(), 1) || over(gr.inodeBitmap(), 1) ||
		over(gr.inodeTable(), f.itBlocks) {
		return f.corrupt("a file claims blocks %d+%d, which hold group %d's metadata", s, k, gr.nr)
	}
	return nil
}

// forGroups calls fn for each group [start, start+n) spans, with the
// group's staged bitmap and the bit range, and marks the group changed.
func (f *FS) forGroups(start, n uint64, fn func(gr *group, bm []byte, i, k uint64) error) error {
	for n > 0 {
		g := (start - f.firstData) / f.bpg
		gr, err := f.group(g)
		if err != nil {
			return err
		}
		i := start - f.groupFirst(g)
		k := min(n, f.groupLen(g)-i)
		bm, err := f.blockBitmapRW(gr)
		if err != nil {
			return err
		}
		if err := fn(gr, bm, i, k); err != nil {
			return err
		}
		gr.dirty = true
		start += k
		n -= k
	}
	return nil
}

// allocInode takes the lowest free inode of the first group from goal on
// that has one, so the used part of the inode table grows without gaps
// (bg_itable_unused stays exact).
func (f *FS) allocInode(goalGroup uint64, dir bool) (uint32, error) {
	for k := uint64(0); k < f.ngroups; k++ {
		g := (goalGroup + k) % f.ngroups
		gr, err := f.group(g)
		if err != nil {
			return 0, err
		}
		if gdFreeInodes(&gr.gd) == 0 {
			continue
		}
		bm, err := f.inodeBitmap(gr)
		if err != nil {
			return 0, err
		}
		idx, ok := firstZero(bm, f.ipg, f.minIndex(g))
		if !ok {
			continue
		}
		if bm, err = f.inodeBitmapRW(gr); err != nil {
			return 0, err
		}
		setBit(bm, idx)
		setGdFreeInodes(&gr.gd, gdFreeInodes(&gr.gd)-1)
		if dir {
			setGdUsedDirs(&gr.gd, gdUsedDirs(&gr.gd)+1)
		}
		if f.gdtCsum {
			if unused := uint64(gdItableUnused(&gr.gd)); idx >= f.ipg-unused {
				setGdItableUnused(&gr.gd, uint32(f.ipg-idx-1))
			}
			// The kernel initializes the block bitmap of a group it
			// puts an inode in (__ext4_new_inode).
			if f.blockUninit(gr) {
				if _, err := f.blockBitmapRW(gr); err != nil {
					return 0, err
				}
			}
		}
		gr.dirty = true
		f.freeInodesDelta--
		return uint32(g*f.ipg + idx + 1), nil
	}
	return 0, fmt.Errorf("%s: %w (no free inode)", f.label, ErrNoSpace)
}

// minIndex is the first inode index of group g that may be allocated
// (inodes below s_first_ino are reserved).
func (f *FS) minIndex(g uint64) uint64 {
	first := uint64(f.sb.FirstInode())
	if g*f.ipg+1 >= first {
		return 0
	}
	return first - 1 - g*f.ipg
}

// firstZero finds the first clear bit in [from, n).
func firstZero(b []byte, n, from uint64) (uint64, bool) {
	for i := from; i < n; {
		if i%64 == 0 && i+64 <= n {
			w := le.Uint64(b[i/8:])
			if w == ^uint64(0) {
				i += 64
				continue
			}
			return i + uint64(bits.TrailingZeros64(^w)), true
		}
		if !bitSet(b, i) {
			return i, true
		}
		i++
	}
	return 0, false
}
