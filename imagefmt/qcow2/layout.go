package qcow2

// On-disk structures of qcow2, as in qemu's docs/interop/qcow2.txt. Every
// integer is big-endian. This file holds the exact layouts and their
// encoders/decoders only; the logic that walks them lives elsewhere.

import (
	"encoding/binary"
)

// Magic is "QFI\xfb".
const Magic uint32 = 'Q'<<24 | 'F'<<16 | 'I'<<8 | 0xfb

// Header field offsets and sizes (spec "Header").
const (
	HeaderV2Size = 72  // version 2 header length
	HeaderV3Size = 104 // minimal version 3 header length
	// HeaderV3CompressionSize is the v3 header with the compression_type
	// byte, padded to a multiple of 8 as qemu writes it.
	HeaderV3CompressionSize = 112
)

// Incompatible feature bits (header offset 72).
const (
	IncompatDirty        = 1 << 0
	IncompatCorrupt      = 1 << 1
	IncompatDataFile     = 1 << 2
	IncompatCompression  = 1 << 3
	IncompatExtendedL2   = 1 << 4
	IncompatKnown        = IncompatDirty | IncompatCorrupt | IncompatDataFile | IncompatCompression | IncompatExtendedL2
	CompatLazyRefcounts  = 1 << 0
	AutoclearBitmaps     = 1 << 0
	AutoclearDataFileRaw = 1 << 1
)

// Encryption methods (crypt_method).
const (
	CryptNone = 0
	CryptAES  = 1
	CryptLUKS = 2
)

// Compression types (compression_type, header byte 104).
const (
	CompressionZlib = 0
	CompressionZstd = 1
)

// Header extension types (spec "Header extensions").
const (
	ExtEnd           uint32 = 0x00000000
	ExtBackingFormat uint32 = 0xe2792aca
	ExtFeatureTable  uint32 = 0x6803f857
	ExtBitmaps       uint32 = 0x23852875
	ExtEncryption    uint32 = 0x0537be77
	ExtDataFile      uint32 = 0x44415441
)

// Table entry bits (spec "Cluster mapping").
const (
	L1OffsetMask uint64 = 0x00fffffffffffe00 // bits 9-55
	L2OffsetMask uint64 = 0x00fffffffffffe00 // standard cluster host offset, bits 9-55
	EntryCopied  uint64 = 1 << 63            // refcount is exactly one
	L2Compressed uint64 = 1 << 62
	L2Zero       uint64 = 1 << 0 // standard cluster: reads as zeros (v3)
	// RefcountTableOffsetMask: refcount table entries, bits 9-63.
	RefcountTableOffsetMask uint64 = 0xfffffffffffffe00
)

// Limits from the spec and qemu's own bounds.
const (
	MinClusterBits = 9  // 512 B
	MaxClusterBits = 21 // 2 MiB
	// MaxVirtualSize mirrors qemu's QCOW_MAX_L1_SIZE-derived limit of
	// 32 MiB of L1 table; larger virtual sizes cannot be addressed.
	MaxL1Size       = 32 << 20 / 8
	MaxRefcountSize = 8 << 20 / 8 // refcount table entries qemu accepts (8 MiB)
	MaxSnapshots    = 65536
	MaxBackingName  = 1023
	// SectorSize is the unit of compressed-cluster sizes.
	SectorSize = 512
)

// Header is the qcow2 header (spec "Header"). Fields of version 3 are zero
// for version 2 images, except RefcountOrder (4) and HeaderLength (72),
// which the decoder fills in with their implied values.
type Header struct {
	Magic                 uint32 // 0
	Version               uint32 // 4
	BackingFileOffset     uint64 // 8
	BackingFileSize       uint32 // 16
	ClusterBits           uint32 // 20
	Size                  uint64 // 24
	CryptMethod           uint32 // 32
	L1Size                uint32 // 36
	L1TableOffset         uint64 // 40
	RefcountTableOffset   uint64 // 48
	RefcountTableClusters uint32 // 56
	NbSnapshots           uint32 // 60
	SnapshotsOffset       uint64 // 64
	// Version 3.
	IncompatibleFeatures uint64 // 72
	CompatibleFeatures   uint64 // 80
	AutoclearFeatures    uint64 // 88
	RefcountOrder        uint32 // 96
	HeaderLength         uint32 // 100
	CompressionType      uint8  // 104, when HeaderLength > 104
}

// DecodeHeader decodes the fixed header from b, which must hold at least
// HeaderV2Size bytes (and HeaderLength bytes for version 3). It does not
// validate values; see the reader.
func DecodeHeader(b []byte) (Header, bool) {
	var h Header
	if len(b) < HeaderV2Size {
		return h, false
	}
	be := binary.BigEndian
	h.Magic = be.Uint32(b[0:])
	h.Version = be.Uint32(b[4:])
	h.BackingFileOffset = be.Uint64(b[8:])
	h.BackingFileSize = be.Uint32(b[16:])
	h.ClusterBits = be.Uint32(b[20:])
	h.Size = be.Uint64(b[24:])
	h.CryptMethod = be.Uint32(b[32:])
	h.L1Size = be.Uint32(b[36:])
	h.L1TableOffset = be.Uint64(b[40:])
	h.RefcountTableOffset = be.Uint64(b[48:])
	h.RefcountTableClusters = be.Uint32(b[56:])
	h.NbSnapshots = be.Uint32(b[60:])
	h.SnapshotsOffset = be.Uint64(b[64:])
	if h.Version < 3 {
		h.RefcountOrder = 4
		h.HeaderLength = HeaderV2Size
		return h, true
	}
	if len(b) < HeaderV3Size {
		return h, false
	}
	h.IncompatibleFeatures = be.Uint64(b[72:])
	h.CompatibleFeatures = be.Uint64(b[80:])
	h.AutoclearFeatures = be.Uint64(b[88:])
	h.RefcountOrder = be.Uint32(b[96:])
	h.HeaderLength = be.Uint32(b[100:])
	if h.HeaderLength > 104 && len(b) > 104 {
		h.CompressionType = b[104]
	}
	return h, true
}

// Encode writes a version 3 header into b (at least HeaderLength bytes, 104
// minimum) and returns the number of bytes written.
func (h *Header) Encode(b []byte) int {
	be := binary.BigEndian
	be.PutUint32(b[0:], h.Magic)
	be.PutUint32(b[4:], h.Version)
	be.PutUint64(b[8:], h.BackingFileOffset)
	be.PutUint32(b[16:], h.BackingFileSize)
	be.PutUint32(b[20:], h.ClusterBits)
	be.PutUint64(b[24:], h.Size)
	be.PutUint32(b[32:], h.CryptMethod)
	be.PutUint32(b[36:], h.L1Size)
	be.PutUint64(b[40:], h.L1TableOffset)
	be.PutUint64(b[48:], h.RefcountTableOffset)
	be.PutUint32(b[56:], h.RefcountTableClusters)
	be.PutUint32(b[60:], h.NbSnapshots)
	be.PutUint64(b[64:], h.SnapshotsOffset)
	if h.Version < 3 {
		return HeaderV2Size
	}
	be.PutUint64(b[72:], h.IncompatibleFeatures)
	be.PutUint64(b[80:], h.CompatibleFeatures)
	be.PutUint64(b[88:], h.AutoclearFeatures)
	be.PutUint32(b[96:], h.RefcountOrder)
	be.PutUint32(b[100:], h.HeaderLength)
	n := HeaderV3Size
	if h.HeaderLength > HeaderV3Size {
		b[104] = h.CompressionType
		for i := 105; i < int(h.HeaderLength); i++ {
			b[i] = 0
		}
		n = int(h.HeaderLength)
	}
	return n
}

// ExtensionHeader precedes each header extension's data, which is padded to
// a multiple of 8 bytes.
type ExtensionHeader struct {
	Type   uint32
	Length uint32
}

// SnapshotHeader is the fixed part of a snapshot table entry (spec
// "Snapshots"); it is followed by ExtraDataSize bytes of extra data, the ID
// string, the name and padding to 8 bytes.
type SnapshotHeader struct {
	L1TableOffset uint64 // 0
	L1Size        uint32 // 8
	IDStrSize     uint16 // 12
	NameSize      uint16 // 14
	DateSec       uint32 // 16
	DateNsec      uint32 // 20
	VMClockNsec   uint64 // 24
	VMStateSize   uint32 // 32
	ExtraDataSize uint32 // 36
}

// SnapshotHeaderSize is the size of SnapshotHeader on disk.
const SnapshotHeaderSize = 40

// CompressedDescriptor splits a compressed cluster's L2 entry (spec
// "Compressed Clusters Descriptor"): bits 0..x-1 are the host offset and bits
// x..61 the number of additional 512-byte sectors, x = 62 - (cluster_bits-8).
func CompressedDescriptor(entry uint64, clusterBits uint32) (hostOff uint64, nbSectors uint64) {
	x := 62 - (clusterBits - 8)
	hostOff = entry & (1<<x - 1)
	nbSectors = (entry>>x)&(1<<(62-x)-1) + 1 // sectors used, counting the first
	return hostOff, nbSectors
}

// EncodeCompressed builds a compressed cluster's L2 entry from its host
// offset and its compressed length in bytes.
func EncodeCompressed(hostOff uint64, length int, clusterBits uint32) uint64 {
	x := 62 - (clusterBits - 8)
	// Sectors spanned by [hostOff, hostOff+length), minus the first.
	last := (hostOff + uint64(length) - 1) / SectorSize
	extra := last - hostOff/SectorSize
	return L2Compressed | extra<<x | hostOff
}
