package vmdk

// On-disk structures of VMDK sparse extents (VMware "Virtual Disk Format
// 1.1", "Hosted Sparse Extent Header" and "The Stream-Optimized Compressed
// Sparse Extent"; the COWD header of ESX sparse extents as qemu's vmdk.c
// reads it). Integers are little-endian. This file holds the exact layouts
// and their encoders and decoders only.

import "encoding/binary"

// Magic numbers as they appear in the first four bytes.
const (
	MagicKDMV = "KDMV" // hosted sparse extent (SparseExtentHeader)
	MagicCOWD = "COWD" // ESX sparse extent (vmfsSparse)
)

// Sizes and special values.
const (
	SectorSize       = 512
	SparseHeaderSize = 512
	// GDAtEnd in the header's gdOffset says the real header is the footer
	// near the end of a stream-optimized file.
	GDAtEnd = ^uint64(0)
	// GTEZeroed is a grain table entry for a grain that reads as zeros
	// (version 2 and later, flag FlagZeroGrain).
	GTEZeroed = 1
	// COWDGTEs is the fixed number of entries of a COWD grain table.
	COWDGTEs = 4096
	// MarkerSize is the size of a stream marker sector; a grain marker is
	// its first 12 bytes followed by the compressed data.
	MarkerSize      = 512
	GrainMarkerSize = 12
)

// Header flags.
const (
	FlagNewlineTest = 1 << 0
	FlagRGD         = 1 << 1 // redundant grain directory present
	FlagZeroGrain   = 1 << 2 // GTE value 1 means a zeroed grain
	FlagCompressed  = 1 << 16
	FlagMarkers     = 1 << 17
)

// Compression algorithms.
const (
	CompressNone    = 0
	CompressDeflate = 1
)

// Stream marker types (the type field of a marker with size 0).
const (
	MarkerEOS    = 0
	MarkerGT     = 1
	MarkerGD     = 2
	MarkerFooter = 3
)

// SparseHeader is the SparseExtentHeader (packed, 512 bytes with padding).
type SparseHeader struct {
	MagicNumber        uint32
	Version            uint32
	Flags              uint32
	Capacity           uint64 // sectors
	GrainSize          uint64 // sectors
	DescriptorOffset   uint64 // sectors
	DescriptorSize     uint64 // sectors
	NumGTEsPerGT       uint32
	RGDOffset          uint64 // sectors
	GDOffset           uint64 // sectors
	OverHead           uint64 // sectors
	UncleanShutdown    uint8
	SingleEndLineChar  byte
	NonEndLineChar     byte
	DoubleEndLineChar1 byte
	DoubleEndLineChar2 byte
	CompressAlgorithm  uint16
}

// sparseHeaderFields is the packed length of the fields (the rest of the
// sector is padding).
const sparseHeaderFields = 79

// DecodeSparseHeader decodes b (at least sparseHeaderFields bytes).
func DecodeSparseHeader(b []byte) SparseHeader {
	le := binary.LittleEndian
	return SparseHeader{
		MagicNumber:        le.Uint32(b[0:]),
		Version:            le.Uint32(b[4:]),
		Flags:              le.Uint32(b[8:]),
		Capacity:           le.Uint64(b[12:]),
		GrainSize:          le.Uint64(b[20:]),
		DescriptorOffset:   le.Uint64(b[28:]),
		DescriptorSize:     le.Uint64(b[36:]),
		NumGTEsPerGT:       le.Uint32(b[44:]),
		RGDOffset:          le.Uint64(b[48:]),
		GDOffset:           le.Uint64(b[56:]),
		OverHead:           le.Uint64(b[64:]),
		UncleanShutdown:    b[72],
		SingleEndLineChar:  b[73],
		NonEndLineChar:     b[74],
		DoubleEndLineChar1: b[75],
		DoubleEndLineChar2: b[76],
		CompressAlgorithm:  le.Uint16(b[77:]),
	}
}

// Encode writes the header into b (SparseHeaderSize bytes, padding zeroed).
func (h *SparseHeader) Encode(b []byte) {
	clear(b[:SparseHeaderSize])
	le := binary.LittleEndian
	le.PutUint32(b[0:], h.MagicNumber)
	le.PutUint32(b[4:], h.Version)
	le.PutUint32(b[8:], h.Flags)
	le.PutUint64(b[12:], h.Capacity)
	le.PutUint64(b[20:], h.GrainSize)
	le.PutUint64(b[28:], h.DescriptorOffset)
	le.PutUint64(b[36:], h.DescriptorSize)
	le.PutUint32(b[44:], h.NumGTEsPerGT)
	le.PutUint64(b[48:], h.RGDOffset)
	le.PutUint64(b[56:], h.GDOffset)
	le.PutUint64(b[64:], h.OverHead)
	b[72] = h.UncleanShutdown
	b[73] = h.SingleEndLineChar
	b[74] = h.NonEndLineChar
	b[75] = h.DoubleEndLineChar1
	b[76] = h.DoubleEndLineChar2
	le.PutUint16(b[77:], h.CompressAlgorithm)
}

// MagicKDMVValue is "KDMV" read as a little-endian uint32.
const MagicKDMVValue = 'K' | 'D'<<8 | 'M'<<16 | 'V'<<24

// Marker is a stream-optimized marker: a grain marker when Size > 0 (Val is
// the grain's first sector), otherwise a metadata marker of type Type whose
// Val is the number of sectors that follow.
type Marker struct {
	Val  uint64
	Size uint32
	Type uint32 // only meaningful when Size == 0
}

// DecodeMarker decodes b (at least 16 bytes).
func DecodeMarker(b []byte) Marker {
	le := binary.LittleEndian
	return Marker{Val: le.Uint64(b[0:]), Size: le.Uint32(b[8:]), Type: le.Uint32(b[12:])}
}

// Encode writes the marker into b (16 bytes).
func (m Marker) Encode(b []byte) {
	le := binary.LittleEndian
	le.PutUint64(b[0:], m.Val)
	le.PutUint32(b[8:], m.Size)
	le.PutUint32(b[12:], m.Type)
}

// COWDHeader is the start of an ESX sparse extent (qemu's VMDK3Header after
// the magic).
type COWDHeader struct {
	MagicNumber  [4]byte
	Version      uint32
	Flags        uint32
	NumSectors   uint32 // capacity in sectors
	GrainSize    uint32 // sectors
	GDOffset     uint32 // sectors
	NumGDEntries uint32
	FreeSector   uint32
}

// COWDHeaderFields is the length of the fields decoded here.
const COWDHeaderFields = 32

// DecodeCOWDHeader decodes b (at least COWDHeaderFields bytes).
func DecodeCOWDHeader(b []byte) COWDHeader {
	le := binary.LittleEndian
	var h COWDHeader
	copy(h.MagicNumber[:], b[0:4])
	h.Version = le.Uint32(b[4:])
	h.Flags = le.Uint32(b[8:])
	h.NumSectors = le.Uint32(b[12:])
	h.GrainSize = le.Uint32(b[16:])
	h.GDOffset = le.Uint32(b[20:])
	h.NumGDEntries = le.Uint32(b[24:])
	h.FreeSector = le.Uint32(b[28:])
	return h
}

// Encode writes the header into b (COWDHeaderFields bytes).
func (h *COWDHeader) Encode(b []byte) {
	le := binary.LittleEndian
	copy(b[0:4], h.MagicNumber[:])
	le.PutUint32(b[4:], h.Version)
	le.PutUint32(b[8:], h.Flags)
	le.PutUint32(b[12:], h.NumSectors)
	le.PutUint32(b[16:], h.GrainSize)
	le.PutUint32(b[20:], h.GDOffset)
	le.PutUint32(b[24:], h.NumGDEntries)
	le.PutUint32(b[28:], h.FreeSector)
}
