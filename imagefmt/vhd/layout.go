package vhd

// On-disk structures of VHD (spec "Hard Disk Footer Format" and "Dynamic
// Disk Header Format"). Every integer is big-endian. This file holds the
// exact layouts and their encoders and decoders; open.go and read.go walk
// them.

import (
	"encoding/binary"
)

// Sizes and magic values.
const (
	FooterSize    = 512
	DynHeaderSize = 1024
	SectorSize    = 512

	FooterCookie    = "conectix"
	DynHeaderCookie = "cxsparse"

	// NoOffset is the Data Offset of a fixed disk's footer and of the
	// dynamic header (0xFFFFFFFF in both halves, spec "Data Offset").
	NoOffset = ^uint64(0)
	// BATUnused marks a block that is not allocated.
	BATUnused = ^uint32(0)
)

// Disk types (footer "Disk Type").
const (
	TypeFixed        = 2
	TypeDynamic      = 3
	TypeDifferencing = 4
)

// Platform codes of parent locator entries (spec "Parent Locator Entries").
const (
	PlatformNone = 0
	PlatformWi2r = 0x57693272 // "Wi2r": deprecated, relative, ANSI
	PlatformWi2k = 0x5769326b // "Wi2k": deprecated, absolute, ANSI
	PlatformW2ru = 0x57327275 // "W2ru": relative path, UTF-16LE
	PlatformW2ku = 0x57326b75 // "W2ku": absolute path, UTF-16LE
	PlatformMac  = 0x4d616320 // "Mac ": Mac OS alias blob
	PlatformMacX = 0x4d616358 // "MacX": file URL, UTF-8
)

// Footer is the hard disk footer, at the end of every VHD file and copied at
// offset 0 of dynamic and differencing disks.
type Footer struct {
	Cookie             [8]byte
	Features           uint32
	FileFormatVersion  uint32
	DataOffset         uint64
	TimeStamp          uint32
	CreatorApplication [4]byte
	CreatorVersion     uint32
	CreatorHostOS      [4]byte
	OriginalSize       uint64
	CurrentSize        uint64
	Cylinders          uint16
	Heads              uint8
	SectorsPerTrack    uint8
	DiskType           uint32
	Checksum           uint32
	UniqueID           [16]byte
	SavedState         uint8
}

// DecodeFooter decodes b, which holds at least FooterSize bytes.
func DecodeFooter(b []byte) Footer {
	var f Footer
	be := binary.BigEndian
	copy(f.Cookie[:], b[0:8])
	f.Features = be.Uint32(b[8:])
	f.FileFormatVersion = be.Uint32(b[12:])
	f.DataOffset = be.Uint64(b[16:])
	f.TimeStamp = be.Uint32(b[24:])
	copy(f.CreatorApplication[:], b[28:32])
	f.CreatorVersion = be.Uint32(b[32:])
	copy(f.CreatorHostOS[:], b[36:40])
	f.OriginalSize = be.Uint64(b[40:])
	f.CurrentSize = be.Uint64(b[48:])
	f.Cylinders = be.Uint16(b[56:])
	f.Heads = b[58]
	f.SectorsPerTrack = b[59]
	f.DiskType = be.Uint32(b[60:])
	f.Checksum = be.Uint32(b[64:])
	copy(f.UniqueID[:], b[68:84])
	f.SavedState = b[84]
	return f
}

// Encode writes the footer into b (FooterSize bytes, the rest zeroed) with
// its checksum computed.
func (f *Footer) Encode(b []byte) {
	clear(b[:FooterSize])
	be := binary.BigEndian
	copy(b[0:8], f.Cookie[:])
	be.PutUint32(b[8:], f.Features)
	be.PutUint32(b[12:], f.FileFormatVersion)
	be.PutUint64(b[16:], f.DataOffset)
	be.PutUint32(b[24:], f.TimeStamp)
	copy(b[28:32], f.CreatorApplication[:])
	be.PutUint32(b[32:], f.CreatorVersion)
	copy(b[36:40], f.CreatorHostOS[:])
	be.PutUint64(b[40:], f.OriginalSize)
	be.PutUint64(b[48:], f.CurrentSize)
	be.PutUint16(b[56:], f.Cylinders)
	b[58] = f.Heads
	b[59] = f.SectorsPerTrack
	be.PutUint32(b[60:], f.DiskType)
	copy(b[68:84], f.UniqueID[:])
	b[84] = f.SavedState
	f.Checksum = Checksum(b[:FooterSize], 64)
	be.PutUint32(b[64:], f.Checksum)
}

// ParentLocator is one of the eight parent locator entries of the dynamic
// header.
type ParentLocator struct {
	PlatformCode       uint32
	PlatformDataSpace  uint32
	PlatformDataLength uint32
	Reserved           uint32
	PlatformDataOffset uint64
}

// ParentLocatorSize is the size of one entry.
const ParentLocatorSize = 24

// DynHeader is the dynamic disk header.
type DynHeader struct {
	Cookie            [8]byte
	DataOffset        uint64
	TableOffset       uint64
	HeaderVersion     uint32
	MaxTableEntries   uint32
	BlockSize         uint32
	Checksum          uint32
	ParentUniqueID    [16]byte
	ParentTimeStamp   uint32
	Reserved          uint32
	ParentUnicodeName [512]byte // UTF-16BE, NUL padded
	ParentLocators    [8]ParentLocator
}

// DecodeDynHeader decodes b, which holds at least DynHeaderSize bytes.
func DecodeDynHeader(b []byte) DynHeader {
	var h DynHeader
	be := binary.BigEndian
	copy(h.Cookie[:], b[0:8])
	h.DataOffset = be.Uint64(b[8:])
	h.TableOffset = be.Uint64(b[16:])
	h.HeaderVersion = be.Uint32(b[24:])
	h.MaxTableEntries = be.Uint32(b[28:])
	h.BlockSize = be.Uint32(b[32:])
	h.Checksum = be.Uint32(b[36:])
	copy(h.ParentUniqueID[:], b[40:56])
	h.ParentTimeStamp = be.Uint32(b[56:])
	h.Reserved = be.Uint32(b[60:])
	copy(h.ParentUnicodeName[:], b[64:576])
	for i := range h.ParentLocators {
		e := b[576+i*ParentLocatorSize:]
		h.ParentLocators[i] = ParentLocator{
			PlatformCode:       be.Uint32(e[0:]),
			PlatformDataSpace:  be.Uint32(e[4:]),
			PlatformDataLength: be.Uint32(e[8:]),
			Reserved:           be.Uint32(e[12:]),
			PlatformDataOffset: be.Uint64(e[16:]),
		}
	}
	return h
}

// Encode writes the header into b (DynHeaderSize bytes, the rest zeroed)
// with its checksum computed.
func (h *DynHeader) Encode(b []byte) {
	clear(b[:DynHeaderSize])
	be := binary.BigEndian
	copy(b[0:8], h.Cookie[:])
	be.PutUint64(b[8:], h.DataOffset)
	be.PutUint64(b[16:], h.TableOffset)
	be.PutUint32(b[24:], h.HeaderVersion)
	be.PutUint32(b[28:], h.MaxTableEntries)
	be.PutUint32(b[32:], h.BlockSize)
	copy(b[40:56], h.ParentUniqueID[:])
	be.PutUint32(b[56:], h.ParentTimeStamp)
	be.PutUint32(b[60:], h.Reserved)
	copy(b[64:576], h.ParentUnicodeName[:])
	for i, l := range h.ParentLocators {
		e := b[576+i*ParentLocatorSize:]
		be.PutUint32(e[0:], l.PlatformCode)
		be.PutUint32(e[4:], l.PlatformDataSpace)
		be.PutUint32(e[8:], l.PlatformDataLength)
		be.PutUint32(e[12:], l.Reserved)
		be.PutUint64(e[16:], l.PlatformDataOffset)
	}
	h.Checksum = Checksum(b[:DynHeaderSize], 36)
	be.PutUint32(b[36:], h.Checksum)
}

// Checksum is the one's complement of the byte sum of b, skipping the four
// checksum bytes at sumOff (spec "Checksum").
func Checksum(b []byte, sumOff int) uint32 {
	var s uint32
	for i, c := range b {
		if i >= sumOff && i < sumOff+4 {
			continue
		}
		s += uint32(c)
	}
	return ^s
}

// BitmapSize is the size of the sector bitmap in front of each block: one
// bit per sector, padded to a sector (spec "Block Allocation Table and Data
// Blocks").
func BitmapSize(blockSize uint32) int64 {
	bits := int64(blockSize) / SectorSize
	return ((bits+7)/8 + SectorSize - 1) / SectorSize * SectorSize
}
