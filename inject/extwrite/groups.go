package extwrite

import (
	"github.com/vmmount/vmmount/fsread/ext/disklayout"
)

// group is a block group's descriptor as the transaction changes it.
type group struct {
	nr      uint64
	gd      disklayout.GroupDesc
	descBlk uint64 // block of the descriptor table holding it
	descOff int    // its offset in that block
	dirty   bool
	// bbmOK and ibmOK say the bitmap was checked (checksum) or built.
	bbmOK, ibmOK bool
}

func (g *group) blockBitmap() uint64 { return gdBlockBitmap(&g.gd) }
func (g *group) inodeBitmap() uint64 { return gdInodeBitmap(&g.gd) }
func (g *group) inodeTable() uint64  { return g.gd.InodeTable() }
func (g *group) flag(fl uint16) bool { return g.gd.Flags&fl != 0 }

// blockUninit and inodeUninit say a bitmap is not initialized on disk.
// Without group descriptor checksums the flags mean nothing (the kernel
// ignores them) and the bitmaps are always initialized.
func (f *FS) blockUninit(g *group) bool { return f.gdtCsum && g.flag(disklayout.BgBlockUninit) }
func (f *FS) inodeUninit(g *group) bool { return f.gdtCsum && g.flag(disklayout.BgInodeUninit) }

// hasSuper says whether group g holds a superblock (backup).
func (f *FS) hasSuper(g uint64) bool { return f.sb.GroupHasSuper(g) }

func (f *FS) metaBg() bool { return f.sb.HasIncompat(disklayout.IncompatMetaBg) }

// descBlock is the block holding the descriptors of meta group m (the m-th
// block of descriptors): after the primary superblock, or with meta_bg
// in the first group of the meta group (ext4 descriptor_loc).
func (f *FS) descBlock(m uint64) uint64 {
	if !f.metaBg() || m < uint64(f.sb.FirstMetaBg) {
		return f.firstData + 1 + m
	}
	g := m * f.descPer
	b := f.groupFirst(g)
	if f.hasSuper(g) {
		b++
	}
	return b
}

// groupFirst is the first block of group g; groupLen its number of blocks
// (the last group may be short).
func (f *FS) groupFirst(g uint64) uint64 { return f.firstData + g*f.bpg }
func (f *FS) groupLen(g uint64) uint64 {
	return min(f.bpg, f.blocks-f.groupFirst(g))
}

// baseMeta is the number of blocks at the start of group g taken by a
// superblock backup, descriptor blocks and reserved descriptor blocks
// (ext4_num_base_meta_clusters).
func (f *FS) baseMeta(g uint64) uint64 {
	var n uint64
	if f.hasSuper(g) {
		n = 1
	}
	if !f.metaBg() || g < uint64(f.sb.FirstMetaBg)*f.descPer {
		if n != 0 {
			if f.metaBg() {
				n += uint64(f.sb.FirstMetaBg)
			} else {
				n += f.gdtBlocks
			}
			n += uint64(f.sb.ReservedGdtBlocks)
		}
		return n
	}
	if r := g % f.descPer; r == 0 || r == 1 || r == f.descPer-1 {
		n++
	}
	return n
}

// group reads and checks the descriptor of group g once per transaction.
func (f *FS) group(g uint64) (*group, error) {
	if gr := f.groups[g]; gr != nil {
		return gr, nil
	}
	if g >= f.ngroups {
		return nil, f.corrupt("group %d past the last group %d", g, f.ngroups-1)
	}
	blk := f.descBlock(g / f.descPer)
	b, err := f.st.read(blk)
	if err != nil {
		return nil, err
	}
	off := int(g%f.descPer) * f.descSize
	raw := b[off : off+f.descSize]
	gd, _ := disklayout.DecodeGroupDesc(raw)
	if f.gdtCsum {
		if c := disklayout.GroupDescChecksum(f.sb, f.seed, uint32(g), raw); c != gd.Checksum {
			return nil, f.corrupt("group %d descriptor checksum mismatch (stored %#04x, computed %#04x)", g, gd.Checksum, c)
		}
	}
	if f.descSize < disklayout.GroupDescSize64 {
		// Fields past 32 bytes are not there; keep them zero.
		gd.BlockBitmapHi, gd.InodeBitmapHi, gd.InodeTableHi = 0, 0, 0
	}
	gr := &group{nr: g, gd: gd, descBlk: blk, descOff: off}
	inVol := func(b, n uint64) bool { return b >= f.firstData && b < f.blocks && f.blocks-b >= n }
	switch {
	case !inVol(gr.blockBitmap(), 1):
		return nil, f.corrupt("group %d block bitmap at %d is outside the volume", g, gr.blockBitmap())
	case !inVol(gr.inodeBitmap(), 1):
		return nil, f.corrupt("group %d inode bitmap at %d is outside the volume", g, gr.inodeBitmap())
	case !inVol(gr.inodeTable(), f.itBlocks):
		return nil, f.corrupt("group %d inode table at %d is outside the volume", g, gr.inodeTable())
	case uint64(gdFreeBlocks(&gd)) > f.groupLen(g):
		return nil, f.corrupt("group %d counts %d free blocks of %d", g, gdFreeBlocks(&gd), f.groupLen(g))
	case uint64(gdFreeInodes(&gd)) > f.ipg:
		return nil, f.corrupt("group %d counts %d free inodes of %d", g, gdFreeInodes(&gd), f.ipg)
	case uint64(gdItableUnused(&gd)) > f.ipg:
		return nil, f.corrupt("group %d counts %d unused inodes of %d", g, gdItableUnused(&gd), f.ipg)
	}
	f.groups[g] = gr
	return gr, nil
}

// sealGroups writes every changed descriptor back with its bitmap
// checksums (metadata_csum: crc32c of the bitmap bytes the group uses) and
// its own checksum.
func (f *FS) sealGroups() error {
	for _, gr := range f.groups {
		if !gr.dirty {
			continue
		}
		if f.csum {
			if !f.blockUninit(gr) {
				b, err := f.st.read(gr.blockBitmap())
				if err != nil {
					return err
				}
				c := disklayout.Crc32c(f.seed, b[:f.bpg/8])
				gr.gd.BlockBitmapCsumLo = uint16(c)
				if f.descSize >= 0x3A {
					gr.gd.BlockBitmapCsumHi = uint16(c >> 16)
				}
			}
			if !f.inodeUninit(gr) {
				b, err := f.st.read(gr.inodeBitmap())
				if err != nil {
					return err
				}
				c := disklayout.Crc32c(f.seed, b[:f.ipg/8])
				gr.gd.InodeBitmapCsumLo = uint16(c)
				if f.descSize >= 0x3C {
					gr.gd.InodeBitmapCsumHi = uint16(c >> 16)
				}
			}
		}
		b, err := f.st.modify(gr.descBlk)
		if err != nil {
			return err
		}
		raw := b[gr.descOff : gr.descOff+f.descSize]
		putGroupDesc(raw, &gr.gd)
		if f.gdtCsum {
			gr.gd.Checksum = disklayout.GroupDescChecksum(f.sb, f.seed, uint32(gr.nr), raw)
			le.PutUint16(raw[0x1E:], gr.gd.Checksum)
		}
	}
	return nil
}
