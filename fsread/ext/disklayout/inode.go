package disklayout

import (
	"encoding/binary"
	"time"
)

// Inode layout (Documentation/filesystems/ext4/inodes.rst).
const (
	InodeBaseSize = 128 // the "good old" part every inode has
	InodeFullSize = 160 // everything up to i_projid
	NBlocks       = 15  // i_block entries
	IBlockSize    = NBlocks * 4
	inodeCsumLo   = 0x7C
	inodeCsumHi   = 0x82
	// InodeCsumHiEnd: i_checksum_hi exists when i_extra_isize reaches
	// past it (EXT4_INODE_CSUM_HI_EXTRA_END).
	inodeCsumHiEnd = 0x84
)

// Inode flags (i_flags).
const (
	FlagSecrm       = 0x1
	FlagImmutable   = 0x10
	FlagAppend      = 0x20
	FlagEncrypt     = 0x800
	FlagIndex       = 0x1000
	FlagJournalData = 0x4000
	FlagHugeFile    = 0x40000
	FlagExtents     = 0x80000
	FlagVerity      = 0x100000
	FlagEaInode     = 0x200000
	FlagInlineData  = 0x10000000
	FlagCasefold    = 0x40000000
)

// Inode is struct ext4_inode. Fields past ExtraIsize are meaningful only
// when InodeBaseSize+ExtraIsize covers them (see Has).
type Inode struct {
	Mode        uint16
	UidLo       uint16
	SizeLo      uint32
	Atime       uint32
	Ctime       uint32
	Mtime       uint32
	Dtime       uint32
	GidLo       uint16
	LinksCount  uint16
	BlocksLo    uint32
	Flags       uint32
	Version     uint32 // osd1.l_i_version
	Block       [NBlocks]uint32
	Generation  uint32
	FileACLLo   uint32
	SizeHigh    uint32
	ObsoFaddr   uint32
	BlocksHigh  uint16 // osd2.linux2
	FileACLHigh uint16
	UidHigh     uint16
	GidHigh     uint16
	ChecksumLo  uint16
	Reserved    uint16
	ExtraIsize  uint16
	ChecksumHi  uint16
	CtimeExtra  uint32
	MtimeExtra  uint32
	AtimeExtra  uint32
	Crtime      uint32
	CrtimeExtra uint32
	VersionHi   uint32
	Projid      uint32
}

// DecodeInode decodes an on-disk inode of len(b) bytes (the volume's inode
// size, at least 128). Extra fields beyond the slice or beyond
// i_extra_isize are left zero.
func DecodeInode(b []byte) (Inode, error) {
	var n Inode
	if len(b) < InodeBaseSize {
		return n, errShort
	}
	le := binary.LittleEndian
	n.Mode = le.Uint16(b[0x0:])
	n.UidLo = le.Uint16(b[0x2:])
	n.SizeLo = le.Uint32(b[0x4:])
	n.Atime = le.Uint32(b[0x8:])
	n.Ctime = le.Uint32(b[0xC:])
	n.Mtime = le.Uint32(b[0x10:])
	n.Dtime = le.Uint32(b[0x14:])
	n.GidLo = le.Uint16(b[0x18:])
	n.LinksCount = le.Uint16(b[0x1A:])
	n.BlocksLo = le.Uint32(b[0x1C:])
	n.Flags = le.Uint32(b[0x20:])
	n.Version = le.Uint32(b[0x24:])
	for i := range n.Block {
		n.Block[i] = le.Uint32(b[0x28+4*i:])
	}
	n.Generation = le.Uint32(b[0x64:])
	n.FileACLLo = le.Uint32(b[0x68:])
	n.SizeHigh = le.Uint32(b[0x6C:])
	n.ObsoFaddr = le.Uint32(b[0x70:])
	n.BlocksHigh = le.Uint16(b[0x74:])
	n.FileACLHigh = le.Uint16(b[0x76:])
	n.UidHigh = le.Uint16(b[0x78:])
	n.GidHigh = le.Uint16(b[0x7A:])
	n.ChecksumLo = le.Uint16(b[0x7C:])
	n.Reserved = le.Uint16(b[0x7E:])
	if len(b) < InodeBaseSize+2 {
		return n, nil
	}
	n.ExtraIsize = le.Uint16(b[0x80:])
	end := min(len(b), InodeBaseSize+int(n.ExtraIsize))
	u16 := func(off int) uint16 {
		if off+2 <= end {
			return le.Uint16(b[off:])
		}
		return 0
	}
	u32 := func(off int) uint32 {
		if off+4 <= end {
			return le.Uint32(b[off:])
		}
		return 0
	}
	n.ChecksumHi = u16(0x82)
	n.CtimeExtra = u32(0x84)
	n.MtimeExtra = u32(0x88)
	n.AtimeExtra = u32(0x8C)
	n.Crtime = u32(0x90)
	n.CrtimeExtra = u32(0x94)
	n.VersionHi = u32(0x98)
	n.Projid = u32(0x9C)
	return n, nil
}

// Has says whether the extra field ending at byte end (offset from the
// inode start) is present: EXT4_FITS_IN_INODE.
func (n *Inode) Has(end int) bool { return InodeBaseSize+int(n.ExtraIsize) >= end }

// Ends of the extra timestamp fields, for Has.
const (
	EndCtimeExtra  = 0x88
	EndMtimeExtra  = 0x8C
	EndAtimeExtra  = 0x90
	EndCrtime      = 0x94
	EndCrtimeExtra = 0x98
)

// Uid and Gid join the 16-bit halves (32-bit ids).
func (n *Inode) Uid() uint32 { return uint32(n.UidLo) | uint32(n.UidHigh)<<16 }
func (n *Inode) Gid() uint32 { return uint32(n.GidLo) | uint32(n.GidHigh)<<16 }

// FileACL is the block holding this inode's extended attributes, 0 if none.
func (n *Inode) FileACL() uint64 { return uint64(n.FileACLLo) | uint64(n.FileACLHigh)<<32 }

// DecodeTime turns a 32-bit seconds field and its _extra companion into a
// time: seconds are signed (before 1970), the low two bits of extra extend
// them past 2038 (epoch bits), the upper 30 bits are nanoseconds
// (inodes.rst, "Inode Timestamps").
func DecodeTime(sec uint32, extra uint32, hasExtra bool) time.Time {
	s := int64(int32(sec))
	var ns int64
	if hasExtra {
		s += int64(extra&3) << 32
		ns = int64(extra >> 2)
		if ns > 999999999 {
			ns = 999999999 // the kernel never writes this; clamp hostile values
		}
	}
	return time.Unix(s, ns)
}

// InodeChecksum computes the 32-bit inode checksum: crc32c over the inode
// number, the generation and the raw inode with both checksum fields as
// zeros. seed is the volume's CsumSeed. Callers compare the low 16 bits only
// when the inode has no i_checksum_hi.
func InodeChecksum(seed uint32, ino uint32, gen uint32, raw []byte) uint32 {
	c := Crc32cU32(seed, ino)
	c = Crc32cU32(c, gen)
	c = Crc32c(c, raw[:inodeCsumLo])
	c = Crc32cZeros(c, 2)
	c = Crc32c(c, raw[inodeCsumLo+2:InodeBaseSize])
	if len(raw) <= InodeBaseSize {
		return c
	}
	extra := int(binary.LittleEndian.Uint16(raw[0x80:]))
	if InodeBaseSize+extra >= inodeCsumHiEnd {
		c = Crc32c(c, raw[InodeBaseSize:inodeCsumHi])
		c = Crc32cZeros(c, 2)
		c = Crc32c(c, raw[inodeCsumHi+2:])
	} else {
		c = Crc32c(c, raw[InodeBaseSize:])
	}
	return c
}

// InodeHasCsumHi says whether the raw inode stores i_checksum_hi.
func InodeHasCsumHi(raw []byte) bool {
	return len(raw) > InodeBaseSize+2 && InodeBaseSize+int(binary.LittleEndian.Uint16(raw[0x80:])) >= inodeCsumHiEnd
}

// InodeSeed is the per-inode checksum seed that extent, directory and
// xattr-in-inode checksums start from: crc32c(crc32c(fs seed, ino), gen).
func InodeSeed(seed uint32, ino uint32, gen uint32) uint32 {
	return Crc32cU32(Crc32cU32(seed, ino), gen)
}
