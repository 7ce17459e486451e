package vhdx

// On-disk structures of VHDX ([MS-VHDX] section 2). Integers are
// little-endian; GUIDs are stored in Microsoft's mixed-endian layout. This
// file holds the exact layouts and their encoders and decoders; the logic
// that walks them is elsewhere.

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
)

// Fixed locations and sizes (section 2.1 "Layout").
const (
	KiB = 1 << 10
	MiB = 1 << 20

	FileIdentifierOffset = 0
	Header1Offset        = 64 * KiB
	Header2Offset        = 128 * KiB
	RegionTable1Offset   = 192 * KiB
	RegionTable2Offset   = 256 * KiB
	HeaderSize           = 4 * KiB
	RegionTableSize      = 64 * KiB
	RegionEntrySize      = 32
	MaxRegionEntries     = 2047
	MetadataTableSize    = 64 * KiB
	MetadataEntrySize    = 32
	MaxMetadataEntries   = 2047
	SectorBitmapSize     = 1 * MiB
	// SectorsPerChunk is the number of logical sectors one sector bitmap
	// block describes (2^23).
	SectorsPerChunk = 1 << 23

	FileSignature     = "vhdxfile"
	HeaderSignature   = "head"
	RegionSignature   = "regi"
	MetadataSignature = "metadata"
	LogEntrySignature = "loge"
	ZeroDescSignature = "zero"
	DataDescSignature = "desc"
	DataSecSignature  = "data"
)

// GUID is a GUID in its on-disk byte order.
type GUID [16]byte

// MustGUID parses a GUID written as in the spec, "2DC27766-F623-4200-...",
// into its on-disk form (first three fields little-endian).
func MustGUID(s string) GUID {
	var g GUID
	var a uint32
	var b, c uint16
	var d [8]byte
	if _, err := fmt.Sscanf(s, "%8x-%4x-%4x-%2x%2x-%2x%2x%2x%2x%2x%2x", &a, &b, &c,
		&d[0], &d[1], &d[2], &d[3], &d[4], &d[5], &d[6], &d[7]); err != nil {
		panic("vhdx: bad GUID literal " + s)
	}
	binary.LittleEndian.PutUint32(g[0:], a)
	binary.LittleEndian.PutUint16(g[4:], b)
	binary.LittleEndian.PutUint16(g[6:], c)
	copy(g[8:], d[:])
	return g
}

// String formats g in the usual 8-4-4-4-12 form, lower case as Hyper-V
// writes it in parent locators.
func (g GUID) String() string {
	return fmt.Sprintf("%08x-%04x-%04x-%x-%x", binary.LittleEndian.Uint32(g[0:]), binary.LittleEndian.Uint16(g[4:]),
		binary.LittleEndian.Uint16(g[6:]), g[8:10], g[10:16])
}

// IsZero reports whether g is all zeros.
func (g GUID) IsZero() bool { return g == GUID{} }

// Region and metadata item GUIDs (sections 2.2.3.1, 2.6.2).
var (
	RegionBAT            = MustGUID("2DC27766-F623-4200-9D64-115E9BFD4A08")
	RegionMetadata       = MustGUID("8B7CA206-4790-4B9A-B8FE-575F050F886E")
	MetaFileParameters   = MustGUID("CAA16737-FA36-4D43-B3B6-33F0AA44E76B")
	MetaVirtualDiskSize  = MustGUID("2FA54224-CD1B-4876-B211-5DBED83BF4B8")
	MetaVirtualDiskID    = MustGUID("BECA12AB-B2E6-4523-93EF-C309E000C746")
	MetaLogicalSector    = MustGUID("8141BF1D-A96F-4709-BA47-F233A8FAAB5F")
	MetaPhysicalSector   = MustGUID("CDA348C7-445D-4471-9CC9-E9885251C556")
	MetaParentLocator    = MustGUID("A8D35F2D-B30B-454D-ABF7-D3D84834AB0C")
	ParentLocatorTypeVHD = MustGUID("B04AEFB7-D19E-4A81-B789-25B8E9445913")
)

// crcTable is CRC-32C (Castagnoli), the checksum of every VHDX structure.
var crcTable = crc32.MakeTable(crc32.Castagnoli)

// Checksum is the CRC-32C of b with the four bytes at sumOff taken as zero.
func Checksum(b []byte, sumOff int) uint32 {
	var zero [4]byte
	c := crc32.Update(0, crcTable, b[:sumOff])
	c = crc32.Update(c, crcTable, zero[:])
	return crc32.Update(c, crcTable, b[sumOff+4:])
}

// Header is a VHDX header (section 2.2.2).
type Header struct {
	Signature      [4]byte
	Checksum       uint32
	SequenceNumber uint64
	FileWriteGUID  GUID
	DataWriteGUID  GUID
	LogGUID        GUID
	LogVersion     uint16
	Version        uint16
	LogLength      uint32
	LogOffset      uint64
}

// DecodeHeader decodes b (at least 80 bytes).
func DecodeHeader(b []byte) Header {
	le := binary.LittleEndian
	var h Header
	copy(h.Signature[:], b[0:4])
	h.Checksum = le.Uint32(b[4:])
	h.SequenceNumber = le.Uint64(b[8:])
	copy(h.FileWriteGUID[:], b[16:32])
	copy(h.DataWriteGUID[:], b[32:48])
	copy(h.LogGUID[:], b[48:64])
	h.LogVersion = le.Uint16(b[64:])
	h.Version = le.Uint16(b[66:])
	h.LogLength = le.Uint32(b[68:])
	h.LogOffset = le.Uint64(b[72:])
	return h
}

// Encode writes h into b (HeaderSize bytes, the rest zeroed) with its
// checksum.
func (h *Header) Encode(b []byte) {
	clear(b[:HeaderSize])
	le := binary.LittleEndian
	copy(b[0:4], h.Signature[:])
	le.PutUint64(b[8:], h.SequenceNumber)
	copy(b[16:32], h.FileWriteGUID[:])
	copy(b[32:48], h.DataWriteGUID[:])
	copy(b[48:64], h.LogGUID[:])
	le.PutUint16(b[64:], h.LogVersion)
	le.PutUint16(b[66:], h.Version)
	le.PutUint32(b[68:], h.LogLength)
	le.PutUint64(b[72:], h.LogOffset)
	h.Checksum = Checksum(b[:HeaderSize], 4)
	le.PutUint32(b[4:], h.Checksum)
}

// RegionEntry is an entry of the region table (section 2.2.3.2).
type RegionEntry struct {
	GUID       GUID
	FileOffset uint64
	Length     uint32
	Required   uint32 // bit 0
}

// DecodeRegionTable decodes the table header's count and its entries from b
// (RegionTableSize bytes); the caller checks signature and checksum.
func DecodeRegionTable(b []byte) (count uint32, entries []RegionEntry) {
	le := binary.LittleEndian
	count = le.Uint32(b[8:])
	n := min(count, MaxRegionEntries)
	for i := uint32(0); i < n; i++ {
		e := b[16+i*RegionEntrySize:]
		var r RegionEntry
		copy(r.GUID[:], e[0:16])
		r.FileOffset = le.Uint64(e[16:])
		r.Length = le.Uint32(e[24:])
		r.Required = le.Uint32(e[28:])
		entries = append(entries, r)
	}
	return count, entries
}

// EncodeRegionTable writes a region table with its checksum into b
// (RegionTableSize bytes).
func EncodeRegionTable(b []byte, entries []RegionEntry) {
	clear(b[:RegionTableSize])
	le := binary.LittleEndian
	copy(b[0:4], RegionSignature)
	le.PutUint32(b[8:], uint32(len(entries)))
	for i, r := range entries {
		e := b[16+i*RegionEntrySize:]
		copy(e[0:16], r.GUID[:])
		le.PutUint64(e[16:], r.FileOffset)
		le.PutUint32(e[24:], r.Length)
		le.PutUint32(e[28:], r.Required)
	}
	le.PutUint32(b[4:], Checksum(b[:RegionTableSize], 4))
}

// Metadata entry flags (section 2.6.1.2).
const (
	MetaIsUser        = 1 << 0
	MetaIsVirtualDisk = 1 << 1
	MetaIsRequired    = 1 << 2
)

// MetadataEntry is an entry of the metadata table.
type MetadataEntry struct {
	ItemID GUID
	Offset uint32 // from the start of the metadata region
	Length uint32
	Flags  uint32
}

// DecodeMetadataTable decodes the table at the start of the metadata region
// (b holds MetadataTableSize bytes); the caller checks the signature.
func DecodeMetadataTable(b []byte) (count uint16, entries []MetadataEntry) {
	le := binary.LittleEndian
	count = le.Uint16(b[10:])
	n := min(int(count), MaxMetadataEntries)
	for i := 0; i < n; i++ {
		e := b[32+i*MetadataEntrySize:]
		var m MetadataEntry
		copy(m.ItemID[:], e[0:16])
		m.Offset = le.Uint32(e[16:])
		m.Length = le.Uint32(e[20:])
		m.Flags = le.Uint32(e[24:])
		entries = append(entries, m)
	}
	return count, entries
}

// EncodeMetadataTable writes the metadata table header and entries into b.
func EncodeMetadataTable(b []byte, entries []MetadataEntry) {
	clear(b[:MetadataTableSize])
	le := binary.LittleEndian
	copy(b[0:8], MetadataSignature)
	le.PutUint16(b[10:], uint16(len(entries)))
	for i, m := range entries {
		e := b[32+i*MetadataEntrySize:]
		copy(e[0:16], m.ItemID[:])
		le.PutUint32(e[16:], m.Offset)
		le.PutUint32(e[20:], m.Length)
		le.PutUint32(e[24:], m.Flags)
	}
}

// File parameter flags (section 2.6.2.1).
const (
	LeaveBlockAllocated = 1 << 0
	HasParent           = 1 << 1
)

// BAT entry states (sections 2.5.1.1 and 2.5.1.2).
const (
	PayloadNotPresent       = 0
	PayloadUndefined        = 1
	PayloadZero             = 2
	PayloadUnmapped         = 3
	PayloadUnmappedV095     = 5 // UNMAPPED in the 0.95 draft; qemu accepts it
	PayloadFullyPresent     = 6
	PayloadPartiallyPresent = 7
	SBNotPresent            = 0
	SBPresent               = 6
)

// BATEntry splits a BAT entry into its state and file offset.
func BATEntry(e uint64) (state uint8, fileOffset int64) {
	return uint8(e & 7), int64(e>>20) * MiB
}

// MakeBATEntry builds a BAT entry.
func MakeBATEntry(state uint8, fileOffset int64) uint64 {
	return uint64(fileOffset/MiB)<<20 | uint64(state)
}

// LogEntryHeader is the header of a log entry (section 2.3.1.1).
type LogEntryHeader struct {
	Signature         [4]byte
	Checksum          uint32
	EntryLength       uint32
	Tail              uint32
	SequenceNumber    uint64
	DescriptorCount   uint32
	Reserved          uint32
	LogGUID           GUID
	FlushedFileOffset uint64
	LastFileOffset    uint64
}

// LogEntryHeaderSize is its size; descriptors follow it.
const (
	LogEntryHeaderSize = 64
	LogDescriptorSize  = 32
	LogSectorSize      = 4 * KiB
)

// DecodeLogEntryHeader decodes b (at least LogEntryHeaderSize bytes).
func DecodeLogEntryHeader(b []byte) LogEntryHeader {
	le := binary.LittleEndian
	var h LogEntryHeader
	copy(h.Signature[:], b[0:4])
	h.Checksum = le.Uint32(b[4:])
	h.EntryLength = le.Uint32(b[8:])
	h.Tail = le.Uint32(b[12:])
	h.SequenceNumber = le.Uint64(b[16:])
	h.DescriptorCount = le.Uint32(b[24:])
	h.Reserved = le.Uint32(b[28:])
	copy(h.LogGUID[:], b[32:48])
	h.FlushedFileOffset = le.Uint64(b[48:])
	h.LastFileOffset = le.Uint64(b[56:])
	return h
}

// Encode writes h into b (LogEntryHeaderSize bytes); the checksum covers the
// whole entry and is set by the caller.
func (h *LogEntryHeader) Encode(b []byte) {
	le := binary.LittleEndian
	copy(b[0:4], h.Signature[:])
	le.PutUint32(b[4:], h.Checksum)
	le.PutUint32(b[8:], h.EntryLength)
	le.PutUint32(b[12:], h.Tail)
	le.PutUint64(b[16:], h.SequenceNumber)
	le.PutUint32(b[24:], h.DescriptorCount)
	le.PutUint32(b[28:], h.Reserved)
	copy(b[32:48], h.LogGUID[:])
	le.PutUint64(b[48:], h.FlushedFileOffset)
	le.PutUint64(b[56:], h.LastFileOffset)
}

// LogDescriptor is a zero or data descriptor (sections 2.3.1.2, 2.3.1.3):
// for "zero", Length bytes at FileOffset become zero; for "desc", the next
// data sector, with LeadingBytes and TrailingBytes put back at its ends,
// is written at FileOffset.
type LogDescriptor struct {
	Signature      [4]byte
	TrailingBytes  uint32 // desc; reserved for zero
	LeadingBytes   uint64 // desc; ZeroLength for zero
	FileOffset     uint64
	SequenceNumber uint64
}

// DecodeLogDescriptor decodes b (LogDescriptorSize bytes).
func DecodeLogDescriptor(b []byte) LogDescriptor {
	le := binary.LittleEndian
	var d LogDescriptor
	copy(d.Signature[:], b[0:4])
	d.TrailingBytes = le.Uint32(b[4:])
	d.LeadingBytes = le.Uint64(b[8:])
	d.FileOffset = le.Uint64(b[16:])
	d.SequenceNumber = le.Uint64(b[24:])
	return d
}

// Encode writes d into b (LogDescriptorSize bytes).
func (d *LogDescriptor) Encode(b []byte) {
	le := binary.LittleEndian
	copy(b[0:4], d.Signature[:])
	le.PutUint32(b[4:], d.TrailingBytes)
	le.PutUint64(b[8:], d.LeadingBytes)
	le.PutUint64(b[16:], d.FileOffset)
	le.PutUint64(b[24:], d.SequenceNumber)
}
