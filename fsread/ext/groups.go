package ext

import (
	"fmt"

	"github.com/vmmount/vmmount/fsread/ext/disklayout"
)

// hasSuper says whether group g holds a superblock backup (and so its
// descriptors start one block later).
func (f *FS) hasSuper(g uint64) bool { return f.sb.GroupHasSuper(g) }

// descBlock is where the descriptor block of meta group m lives
// (ext4 descriptor_loc): after the superblock, or with meta_bg in the
// first group of the meta group, after its superblock backup if any.
func (f *FS) descBlock(m uint64, perBlock uint64) uint64 {
	if !f.sb.HasIncompat(disklayout.IncompatMetaBg) || m < uint64(f.sb.FirstMetaBg) {
		return f.gdtBase + m
	}
	g := m * perBlock
	b := g*uint64(f.bpg) + f.firstData
	if f.hasSuper(g) {
		b++
	}
	return b
}

// group reads the descriptor of group g through the block cache (they are
// read on demand, so a volume's size costs no memory up front) and checks
// its checksum and inode table location. A bad descriptor spoils only the
// inodes of its group.
func (f *FS) group(g uint64) (group, error) {
	if g >= f.ngroups {
		return group{}, fmt.Errorf("group %d past the last group %d", g, f.ngroups-1)
	}
	ds := uint64(f.sb.DescSizeBytes())
	perBlock := uint64(f.bs) / ds
	blk := f.descBlock(g/perBlock, perBlock)
	if blk >= f.blocks {
		return group{}, fmt.Errorf("group %d descriptor block %d is outside the volume", g, blk)
	}
	cb, err := f.block(blk)
	if err != nil {
		return group{}, fmt.Errorf("reading group %d descriptor: %v", g, err)
	}
	i := g % perBlock
	raw := cb.data[i*ds : (i+1)*ds]
	gd, _ := disklayout.DecodeGroupDesc(raw)
	gr := group{inodeTable: gd.InodeTable(), flags: gd.Flags}
	if f.csum || f.sb.HasRoCompat(disklayout.RoCompatGdtCsum) {
		if c := disklayout.GroupDescChecksum(f.sb, f.seed, uint32(g), raw); c != gd.Checksum {
			return gr, fmt.Errorf("group %d descriptor checksum mismatch (stored %#04x, computed %#04x)", g, gd.Checksum, c)
		}
	}
	itBlocks := (uint64(f.ipg)*uint64(f.inodeSize) + uint64(f.bs) - 1) / uint64(f.bs)
	if gr.inodeTable < f.firstData || gr.inodeTable >= f.blocks || f.blocks-gr.inodeTable < itBlocks {
		return gr, fmt.Errorf("group %d inode table at block %d is outside the volume", g, gr.inodeTable)
	}
	return gr, nil
}

// maxGroupScan bounds the descriptors Open checks to warn about damage up
// front (all of them on volumes up to 8 TiB with 4 KiB blocks).
const maxGroupScan = 1 << 16

// loadGroups checks the group descriptors at Open: the descriptor blocks
// must be inside the volume, and damaged descriptors are named in the
// warnings (their inodes will fail with the reason).
func (f *FS) loadGroups() error {
	f.ngroups = (f.blocks - f.firstData + uint64(f.bpg) - 1) / uint64(f.bpg)
	ds := uint64(f.sb.DescSizeBytes())
	perBlock := uint64(f.bs) / ds
	for m := uint64(0); m*perBlock < f.ngroups; m++ {
		if blk := f.descBlock(m, perBlock); blk >= f.blocks {
			return f.corrupt(0, f.blockOff(blk), "group descriptor block %d of meta group %d is outside the volume", blk, m)
		}
		if m*perBlock > maxGroupScan {
			break
		}
	}
	bad := 0
	for g := uint64(0); g < min(f.ngroups, maxGroupScan); g++ {
		if _, err := f.group(g); err != nil {
			if bad++; bad <= 10 {
				f.warn(err.Error() + " (its inodes are unreadable)")
			}
		}
	}
	if bad > 10 {
		f.warn(fmt.Sprintf("%d group descriptors are damaged in all", bad))
	}
	return nil
}
