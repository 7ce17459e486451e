package disklayout

import "encoding/binary"

// Group descriptor sizes (Documentation/filesystems/ext4/group_descr.rst).
const (
	GroupDescSize32 = 32
	GroupDescSize64 = 64
	gdCsumOff       = 0x1E
)

// Block group flags (bg_flags).
const (
	BgInodeUninit = 0x1
	BgBlockUninit = 0x2
	BgInodeZeroed = 0x4
)

// GroupDesc is struct ext4_group_desc; the fields after Checksum exist only
// when the descriptor is 64 bytes (64bit feature).
type GroupDesc struct {
	BlockBitmapLo     uint32
	InodeBitmapLo     uint32
	InodeTableLo      uint32
	FreeBlocksCountLo uint16
	FreeInodesCountLo uint16
	UsedDirsCountLo   uint16
	Flags             uint16
	ExcludeBitmapLo   uint32
	BlockBitmapCsumLo uint16
	InodeBitmapCsumLo uint16
	ItableUnusedLo    uint16
	Checksum          uint16
	BlockBitmapHi     uint32
	InodeBitmapHi     uint32
	InodeTableHi      uint32
	FreeBlocksCountHi uint16
	FreeInodesCountHi uint16
	UsedDirsCountHi   uint16
	ItableUnusedHi    uint16
	ExcludeBitmapHi   uint32
	BlockBitmapCsumHi uint16
	InodeBitmapCsumHi uint16
	Reserved          uint32
}

// DecodeGroupDesc decodes a descriptor of len(b) bytes (32 or more); the
// high halves are read only when len(b) >= 64.
func DecodeGroupDesc(b []byte) (GroupDesc, error) {
	var g GroupDesc
	if len(b) < GroupDescSize32 {
		return g, errShort
	}
	le := binary.LittleEndian
	g.BlockBitmapLo = le.Uint32(b[0x0:])
	g.InodeBitmapLo = le.Uint32(b[0x4:])
	g.InodeTableLo = le.Uint32(b[0x8:])
	g.FreeBlocksCountLo = le.Uint16(b[0xC:])
	g.FreeInodesCountLo = le.Uint16(b[0xE:])
	g.UsedDirsCountLo = le.Uint16(b[0x10:])
	g.Flags = le.Uint16(b[0x12:])
	g.ExcludeBitmapLo = le.Uint32(b[0x14:])
	g.BlockBitmapCsumLo = le.Uint16(b[0x18:])
	g.InodeBitmapCsumLo = le.Uint16(b[0x1A:])
	g.ItableUnusedLo = le.Uint16(b[0x1C:])
	g.Checksum = le.Uint16(b[0x1E:])
	if len(b) >= GroupDescSize64 {
		g.BlockBitmapHi = le.Uint32(b[0x20:])
		g.InodeBitmapHi = le.Uint32(b[0x24:])
		g.InodeTableHi = le.Uint32(b[0x28:])
		g.FreeBlocksCountHi = le.Uint16(b[0x2C:])
		g.FreeInodesCountHi = le.Uint16(b[0x2E:])
		g.UsedDirsCountHi = le.Uint16(b[0x30:])
		g.ItableUnusedHi = le.Uint16(b[0x32:])
		g.ExcludeBitmapHi = le.Uint32(b[0x34:])
		g.BlockBitmapCsumHi = le.Uint16(b[0x38:])
		g.InodeBitmapCsumHi = le.Uint16(b[0x3A:])
		g.Reserved = le.Uint32(b[0x3C:])
	}
	return g, nil
}

// InodeTable is the first block of the group's inode table.
func (g *GroupDesc) InodeTable() uint64 {
	return uint64(g.InodeTableLo) | uint64(g.InodeTableHi)<<32
}

// GroupDescChecksum computes bg_checksum for the raw descriptor b of group
// nr. With metadata_csum it is the low 16 bits of crc32c(seed, group,
// descriptor with the checksum field as zeros); with the older gdt_csum it
// is crc16(~0, uuid, group, descriptor without the field, rest)
// (group_descr.rst, "bg_checksum").
func GroupDescChecksum(sb *Superblock, seed uint32, nr uint32, b []byte) uint16 {
	if sb.MetadataCsum() {
		c := Crc32cU32(seed, nr)
		c = Crc32c(c, b[:gdCsumOff])
		c = Crc32cZeros(c, 2)
		c = Crc32c(c, b[gdCsumOff+2:])
		return uint16(c)
	}
	var le [4]byte
	binary.LittleEndian.PutUint32(le[:], nr)
	c := Crc16(0xFFFF, sb.UUID[:])
	c = Crc16(c, le[:])
	c = Crc16(c, b[:gdCsumOff])
	if len(b) > gdCsumOff+2 {
		c = Crc16(c, b[gdCsumOff+2:])
	}
	return c
}
