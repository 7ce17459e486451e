package qcow2

// On-disk structures of the header extensions, the snapshot table and the
// bitmap directory (qemu docs/interop/qcow2.txt), with their decoders. Like
// layout.go, this file holds exact layouts only; header.go, snapshots.go and
// bitmaps.go walk them.

import "encoding/binary"

// ExtensionHeaderSize is the size of ExtensionHeader on disk (spec "Header
// extensions": type and length, then data padded to 8 bytes).
const ExtensionHeaderSize = 8

// FeatureNameEntry is one entry of the feature name table extension (spec
// "Feature name table").
type FeatureNameEntry struct {
	Type uint8    // 0: incompatible, 1: compatible, 2: autoclear
	Bit  uint8    // bit number within the selected bitmap, 0-63
	Name [46]byte // padded with zeros, not necessarily terminated
}

// FeatureNameEntrySize is the size of FeatureNameEntry on disk.
const FeatureNameEntrySize = 48

// Feature types of the feature name table.
const (
	FeatureIncompatible = 0
	FeatureCompatible   = 1
	FeatureAutoclear    = 2
)

// DecodeFeatureNameEntry decodes one entry; b holds at least
// FeatureNameEntrySize bytes.
func DecodeFeatureNameEntry(b []byte) FeatureNameEntry {
	var e FeatureNameEntry
	e.Type = b[0]
	e.Bit = b[1]
	copy(e.Name[:], b[2:FeatureNameEntrySize])
	return e
}

// NameString returns the name without its zero padding.
func (e *FeatureNameEntry) NameString() string {
	n := 0
	for n < len(e.Name) && e.Name[n] != 0 {
		n++
	}
	return string(e.Name[:n])
}

// BitmapsExtension is the bitmaps header extension (spec "Bitmaps
// extension").
type BitmapsExtension struct {
	NbBitmaps             uint32 // 0
	Reserved32            uint32 // 4, must be zero
	BitmapDirectorySize   uint64 // 8
	BitmapDirectoryOffset uint64 // 16
}

// BitmapsExtensionSize is the size of BitmapsExtension on disk.
const BitmapsExtensionSize = 24

// DecodeBitmapsExtension decodes b, which holds at least
// BitmapsExtensionSize bytes.
func DecodeBitmapsExtension(b []byte) BitmapsExtension {
	be := binary.BigEndian
	return BitmapsExtension{
		NbBitmaps:             be.Uint32(b[0:]),
		Reserved32:            be.Uint32(b[4:]),
		BitmapDirectorySize:   be.Uint64(b[8:]),
		BitmapDirectoryOffset: be.Uint64(b[16:]),
	}
}

// CryptoHeaderExtension is the full disk encryption header pointer (spec
// "Full disk encryption header pointer").
type CryptoHeaderExtension struct {
	Offset uint64 // 0
	Length uint64 // 8
}

// CryptoHeaderExtensionSize is the size of CryptoHeaderExtension on disk.
const CryptoHeaderExtensionSize = 16

// BitmapDirEntry is the fixed part of a bitmap directory entry (spec
// "Bitmap directory"); ExtraDataSize bytes of extra data, NameSize bytes of
// name and zero padding to 8 bytes follow it.
type BitmapDirEntry struct {
	BitmapTableOffset uint64 // 0
	BitmapTableSize   uint32 // 8
	Flags             uint32 // 12
	Type              uint8  // 16
	GranularityBits   uint8  // 17
	NameSize          uint16 // 18
	ExtraDataSize     uint32 // 20
}

// BitmapDirEntrySize is the size of BitmapDirEntry on disk.
const BitmapDirEntrySize = 24

// Bitmap limits qemu applies (block/qcow2.h); a directory beyond them is
// refused, so no reader has to allocate more.
const (
	MaxBitmaps             = 65535
	MaxBitmapDirectorySize = 1024 * MaxBitmaps
	MaxBitmapNameSize      = 1023
)

// DecodeBitmapDirEntry decodes b, which holds at least BitmapDirEntrySize
// bytes.
func DecodeBitmapDirEntry(b []byte) BitmapDirEntry {
	be := binary.BigEndian
	return BitmapDirEntry{
		BitmapTableOffset: be.Uint64(b[0:]),
		BitmapTableSize:   be.Uint32(b[8:]),
		Flags:             be.Uint32(b[12:]),
		Type:              b[16],
		GranularityBits:   b[17],
		NameSize:          be.Uint16(b[18:]),
		ExtraDataSize:     be.Uint32(b[20:]),
	}
}

// DecodeSnapshotHeader decodes the fixed part of a snapshot table entry; b
// holds at least SnapshotHeaderSize bytes.
func DecodeSnapshotHeader(b []byte) SnapshotHeader {
	be := binary.BigEndian
	return SnapshotHeader{
		L1TableOffset: be.Uint64(b[0:]),
		L1Size:        be.Uint32(b[8:]),
		IDStrSize:     be.Uint16(b[12:]),
		NameSize:      be.Uint16(b[14:]),
		DateSec:       be.Uint32(b[16:]),
		DateNsec:      be.Uint32(b[20:]),
		VMClockNsec:   be.Uint64(b[24:]),
		VMStateSize:   be.Uint32(b[32:]),
		ExtraDataSize: be.Uint32(b[36:]),
	}
}

// Snapshot extra data (spec "Snapshots", bytes 40-55 of an entry): a 64-bit
// VM state size and the virtual disk size at the time of the snapshot.
const (
	SnapshotExtraVMStateSize = 8  // extra bytes holding vm_state_size_large
	SnapshotExtraDiskSize    = 16 // extra bytes also holding disk_size
	// MaxSnapshotExtraData is qemu's bound on extra data per entry
	// (QCOW_MAX_SNAPSHOT_EXTRA_DATA).
	MaxSnapshotExtraData = 1024
)

// Extended L2 entries (spec "Extended L2 Entries"): each entry is the usual
// 64-bit descriptor followed by a 64-bit subcluster bitmap, allocation bits
// in the low half and zero bits in the high half.
const (
	L2EntrySize           = 8
	ExtendedL2EntrySize   = 16
	SubclustersPerCluster = 32
	// MinExtendedL2ClusterBits: subclusters must be at least 512 bytes.
	MinExtendedL2ClusterBits = 14
)

// HostOffsetLimit: every host offset (L1, L2 and compressed descriptors)
// lies below 64 PiB, bit 56 (spec "Cluster mapping").
const HostOffsetLimit = 1 << 56
