package extwrite

import (
	"encoding/binary"
	"time"

	"github.com/vmmount/vmmount/fsread/ext/disklayout"
)

// Encoders for the on-disk structures of package disklayout, which only
// decodes. Offsets follow Documentation/filesystems/ext4 (inodes.rst,
// group_descr.rst, super.rst, directory.rst, ifork.rst).

var le = binary.LittleEndian

// putInode writes n into raw (one on-disk inode of the volume's inode
// size): the 128-byte base, then the extra fields that fit in
// 128+i_extra_isize. The checksum fields are written as they are in n;
// sealInode sets them.
func putInode(raw []byte, n *disklayout.Inode) {
	le.PutUint16(raw[0x0:], n.Mode)
	le.PutUint16(raw[0x2:], n.UidLo)
	le.PutUint32(raw[0x4:], n.SizeLo)
	le.PutUint32(raw[0x8:], n.Atime)
	le.PutUint32(raw[0xC:], n.Ctime)
	le.PutUint32(raw[0x10:], n.Mtime)
	le.PutUint32(raw[0x14:], n.Dtime)
	le.PutUint16(raw[0x18:], n.GidLo)
	le.PutUint16(raw[0x1A:], n.LinksCount)
	le.PutUint32(raw[0x1C:], n.BlocksLo)
	le.PutUint32(raw[0x20:], n.Flags)
	le.PutUint32(raw[0x24:], n.Version)
	for i, b := range n.Block {
		le.PutUint32(raw[0x28+4*i:], b)
	}
	le.PutUint32(raw[0x64:], n.Generation)
	le.PutUint32(raw[0x68:], n.FileACLLo)
	le.PutUint32(raw[0x6C:], n.SizeHigh)
	le.PutUint32(raw[0x70:], n.ObsoFaddr)
	le.PutUint16(raw[0x74:], n.BlocksHigh)
	le.PutUint16(raw[0x76:], n.FileACLHigh)
	le.PutUint16(raw[0x78:], n.UidHigh)
	le.PutUint16(raw[0x7A:], n.GidHigh)
	le.PutUint16(raw[0x7C:], n.ChecksumLo)
	le.PutUint16(raw[0x7E:], n.Reserved)
	if len(raw) <= disklayout.InodeBaseSize {
		return
	}
	le.PutUint16(raw[0x80:], n.ExtraIsize)
	end := min(len(raw), disklayout.InodeBaseSize+int(n.ExtraIsize))
	p16 := func(off int, v uint16) {
		if off+2 <= end {
			le.PutUint16(raw[off:], v)
		}
	}
	p32 := func(off int, v uint32) {
		if off+4 <= end {
			le.PutUint32(raw[off:], v)
		}
	}
	p16(0x82, n.ChecksumHi)
	p32(0x84, n.CtimeExtra)
	p32(0x88, n.MtimeExtra)
	p32(0x8C, n.AtimeExtra)
	p32(0x90, n.Crtime)
	p32(0x94, n.CrtimeExtra)
	p32(0x98, n.VersionHi)
	p32(0x9C, n.Projid)
}

// putGroupDesc writes g into raw (32 or 64 bytes and more: the high halves
// only when len(raw) >= 64).
func putGroupDesc(raw []byte, g *disklayout.GroupDesc) {
	le.PutUint32(raw[0x0:], g.BlockBitmapLo)
	le.PutUint32(raw[0x4:], g.InodeBitmapLo)
	le.PutUint32(raw[0x8:], g.InodeTableLo)
	le.PutUint16(raw[0xC:], g.FreeBlocksCountLo)
	le.PutUint16(raw[0xE:], g.FreeInodesCountLo)
	le.PutUint16(raw[0x10:], g.UsedDirsCountLo)
	le.PutUint16(raw[0x12:], g.Flags)
	le.PutUint32(raw[0x14:], g.ExcludeBitmapLo)
	le.PutUint16(raw[0x18:], g.BlockBitmapCsumLo)
	le.PutUint16(raw[0x1A:], g.InodeBitmapCsumLo)
	le.PutUint16(raw[0x1C:], g.ItableUnusedLo)
	le.PutUint16(raw[0x1E:], g.Checksum)
	if len(raw) < disklayout.GroupDescSize64 {
		return
	}
	le.PutUint32(raw[0x20:], g.BlockBitmapHi)
	le.PutUint32(raw[0x24:], g.InodeBitmapHi)
	le.PutUint32(raw[0x28:], g.InodeTableHi)
	le.PutUint16(raw[0x2C:], g.FreeBlocksCountHi)
	le.PutUint16(raw[0x2E:], g.FreeInodesCountHi)
	le.PutUint16(raw[0x30:], g.UsedDirsCountHi)
	le.PutUint16(raw[0x32:], g.ItableUnusedHi)
	le.PutUint32(raw[0x34:], g.ExcludeBitmapHi)
	le.PutUint16(raw[0x38:], g.BlockBitmapCsumHi)
	le.PutUint16(raw[0x3A:], g.InodeBitmapCsumHi)
	le.PutUint32(raw[0x3C:], g.Reserved)
}

// Group descriptor field accessors joining the Lo/Hi halves; the high
// halves are zero in 32-byte descriptors.
func gdBlockBitmap(g *disklayout.GroupDesc) uint64 {
	return uint64(g.BlockBitmapLo) | uint64(g.BlockBitmapHi)<<32
}
func gdInodeBitmap(g *disklayout.GroupDesc) uint64 {
	return uint64(g.InodeBitmapLo) | uint64(g.InodeBitmapHi)<<32
}
func gdFreeBlocks(g *disklayout.GroupDesc) uint32 {
	return uint32(g.FreeBlocksCountLo) | uint32(g.FreeBlocksCountHi)<<16
}
func gdFreeInodes(g *disklayout.GroupDesc) uint32 {
	return uint32(g.FreeInodesCountLo) | uint32(g.FreeInodesCountHi)<<16
}
func gdUsedDirs(g *disklayout.GroupDesc) uint32 {
	return uint32(g.UsedDirsCountLo) | uint32(g.UsedDirsCountHi)<<16
}
func gdItableUnused(g *disklayout.GroupDesc) uint32 {
	return uint32(g.ItableUnusedLo) | uint32(g.ItableUnusedHi)<<16
}
func setGdFreeBlocks(g *disklayout.GroupDesc, v uint32) {
	g.FreeBlocksCountLo, g.FreeBlocksCountHi = uint16(v), uint16(v>>16)
}
func setGdFreeInodes(g *disklayout.GroupDesc, v uint32) {
	g.FreeInodesCountLo, g.FreeInodesCountHi = uint16(v), uint16(v>>16)
}
func setGdUsedDirs(g *disklayout.GroupDesc, v uint32) {
	g.UsedDirsCountLo, g.UsedDirsCountHi = uint16(v), uint16(v>>16)
}
func setGdItableUnused(g *disklayout.GroupDesc, v uint32) {
	g.ItableUnusedLo, g.ItableUnusedHi = uint16(v), uint16(v>>16)
}

// Superblock fields the writer updates, as byte offsets (super.rst).
const (
	sbFreeBlocksLo = 0x0C
	sbFreeInodes   = 0x10
	sbRoCompat     = 0x64
	sbFreeBlocksHi = 0x158
	sbChecksum     = 0x3FC
)

// putDirent writes an entry header and its name at b[0:]; recLen is
// encoded for the block size (ext4_rec_len_to_disk).
func putDirent(b []byte, ino uint32, recLen int, name []byte, ft uint8, blockSize int) {
	le.PutUint32(b[0:], ino)
	le.PutUint16(b[4:], encodeRecLen(recLen, blockSize))
	b[6] = uint8(len(name))
	b[7] = ft
	copy(b[8:], name)
}

// encodeRecLen is ext4_rec_len_to_disk: lengths of 64 KiB and more (64 KiB
// blocks only) keep bits 16-17 in the low two bits, a whole 64 KiB block is
// 65535.
func encodeRecLen(n, blockSize int) uint16 {
	if n < 65536 {
		return uint16(n)
	}
	if n == blockSize {
		if blockSize == 65536 {
			return 65535
		}
		return 0
	}
	return uint16(n&65532 | (n>>16)&3)
}

// putDirTail writes the metadata_csum tail at the end of a leaf block.
func putDirTail(b []byte, seed uint32) {
	t := b[len(b)-disklayout.DirentTailSize:]
	le.PutUint32(t[0:], 0)
	le.PutUint16(t[4:], disklayout.DirentTailSize)
	t[6] = 0
	t[7] = disklayout.DirentTailType
	le.PutUint32(t[8:], disklayout.DirBlockChecksum(seed, b))
}

// putExtentHeader writes a tree node header.
func putExtentHeader(b []byte, entries, max, depth int) {
	le.PutUint16(b[0:], disklayout.ExtentMagic)
	le.PutUint16(b[2:], uint16(entries))
	le.PutUint16(b[4:], uint16(max))
	le.PutUint16(b[6:], uint16(depth))
	le.PutUint32(b[8:], 0)
}

// putExtent writes the i-th leaf entry of node b.
func putExtent(b []byte, i int, lblk uint32, n uint16, start uint64) {
	e := b[disklayout.ExtentHeaderSize+i*disklayout.ExtentEntrySize:]
	le.PutUint32(e[0:], lblk)
	le.PutUint16(e[4:], n)
	le.PutUint16(e[6:], uint16(start>>32))
	le.PutUint32(e[8:], uint32(start))
}

// putExtentIdx writes the i-th index entry of node b.
func putExtentIdx(b []byte, i int, lblk uint32, leaf uint64) {
	e := b[disklayout.ExtentHeaderSize+i*disklayout.ExtentEntrySize:]
	le.PutUint32(e[0:], lblk)
	le.PutUint32(e[4:], uint32(leaf))
	le.PutUint16(e[8:], uint16(leaf>>32))
	le.PutUint16(e[10:], 0)
}

// Timestamp range: 32-bit signed seconds, extended by two epoch bits when
// the inode has the _extra fields (inodes.rst, "Inode Timestamps"); the
// kernel clamps times outside it.
const (
	minTime      = -1 << 31
	maxTime32    = 1<<31 - 1
	maxTimeExtra = 1<<31 - 1 + 3<<32
)

// encodeTime returns the seconds field and its _extra companion for t.
// Without extra, t is clamped to the 32-bit range and nanoseconds dropped.
func encodeTime(t time.Time, extra bool) (sec, ext uint32) {
	s := t.Unix()
	ns := uint32(t.Nanosecond())
	if !extra {
		return uint32(int32(max(minTime, min(s, maxTime32)))), 0
	}
	if s < minTime {
		s, ns = minTime, 0
	} else if s > maxTimeExtra {
		s, ns = maxTimeExtra, 999999999
	}
	epoch := uint32((s-int64(int32(s)))>>32) & 3
	return uint32(int32(s)), ns<<2 | epoch
}
