package disklayout

import "encoding/binary"

// Extent tree nodes (Documentation/filesystems/ext4/ifork.rst, "Extent
// Tree"). Every node, the one in i_block included, starts with a 12-byte
// header followed by 12-byte entries: indexes in interior nodes (depth > 0),
// extents in leaves.
const (
	ExtentMagic      = 0xF30A
	ExtentHeaderSize = 12
	ExtentEntrySize  = 12
	// ExtentMaxDepth is the kernel's limit (EXT4_MAX_EXTENT_DEPTH).
	ExtentMaxDepth = 5
	// ExtentInitMaxLen: an ee_len above it marks an unwritten extent of
	// ee_len-ExtentInitMaxLen blocks.
	ExtentInitMaxLen = 32768
	// ExtentTailSize is the checksum after eh_max entries of a tree block.
	ExtentTailSize = 4
)

// ExtentHeader is struct ext4_extent_header.
type ExtentHeader struct {
	Magic      uint16
	Entries    uint16
	Max        uint16
	Depth      uint16
	Generation uint32
}

// ExtentIdx is struct ext4_extent_idx (interior entry).
type ExtentIdx struct {
	Block  uint32 // first logical block covered
	LeafLo uint32
	LeafHi uint16
	Unused uint16
}

// Extent is struct ext4_extent (leaf entry).
type Extent struct {
	Block   uint32 // first logical block
	Len     uint16
	StartHi uint16
	StartLo uint32
}

// DecodeExtentHeader decodes the node header at the start of b.
func DecodeExtentHeader(b []byte) (ExtentHeader, error) {
	var h ExtentHeader
	if len(b) < ExtentHeaderSize {
		return h, errShort
	}
	le := binary.LittleEndian
	h.Magic = le.Uint16(b[0:])
	h.Entries = le.Uint16(b[2:])
	h.Max = le.Uint16(b[4:])
	h.Depth = le.Uint16(b[6:])
	h.Generation = le.Uint32(b[8:])
	return h, nil
}

// DecodeExtentIdx decodes the i-th entry of an interior node b (header
// included); the caller checked i < Entries and the node length.
func DecodeExtentIdx(b []byte, i int) ExtentIdx {
	e := b[ExtentHeaderSize+i*ExtentEntrySize:]
	le := binary.LittleEndian
	return ExtentIdx{Block: le.Uint32(e[0:]), LeafLo: le.Uint32(e[4:]), LeafHi: le.Uint16(e[8:]), Unused: le.Uint16(e[10:])}
}

// DecodeExtent decodes the i-th entry of a leaf node b.
func DecodeExtent(b []byte, i int) Extent {
	e := b[ExtentHeaderSize+i*ExtentEntrySize:]
	le := binary.LittleEndian
	return Extent{Block: le.Uint32(e[0:]), Len: le.Uint16(e[4:]), StartHi: le.Uint16(e[6:]), StartLo: le.Uint32(e[8:])}
}

// Leaf is the physical block of the child node.
func (x ExtentIdx) Leaf() uint64 { return uint64(x.LeafLo) | uint64(x.LeafHi)<<32 }

// Start is the first physical block.
func (e Extent) Start() uint64 { return uint64(e.StartLo) | uint64(e.StartHi)<<32 }

// Length is the number of blocks covered.
func (e Extent) Length() uint32 {
	if e.Len > ExtentInitMaxLen {
		return uint32(e.Len) - ExtentInitMaxLen
	}
	return uint32(e.Len)
}

// Unwritten says the extent is allocated but reads as zeros.
func (e Extent) Unwritten() bool { return e.Len > ExtentInitMaxLen }

// ExtentBlockChecksum is the checksum of a non-root tree block: crc32c over
// the header and eh_max entries, seeded with the inode's seed. It is stored
// right after those entries.
func ExtentBlockChecksum(inodeSeed uint32, b []byte, max int) (stored, computed uint32, ok bool) {
	off := ExtentHeaderSize + max*ExtentEntrySize
	if off+ExtentTailSize > len(b) {
		return 0, 0, false
	}
	return binary.LittleEndian.Uint32(b[off:]), Crc32c(inodeSeed, b[:off]), true
}
