package lvm

import (
	"encoding/binary"
	"hash/crc32"
)

// On-disk structures, little-endian (LVM2 lib/label/label.h and
// lib/format_text/layout.h). "_xl" fields there are these.

const (
	sectorSize     = 512
	labelScanSects = 4 // the label is in one of the first four sectors
	labelID        = "LABELONE"
	labelType      = "LVM2 001"
	mdaHeaderSize  = 512
	mdaMagic       = " LVM2 x[5A%r0N*>"
	mdaVersion     = 1
	// initialCRC seeds every LVM2 checksum (lib/misc/crc.h INITIAL_CRC).
	initialCRC = 0xf597a6cf
	// rawLocnIgnored marks a metadata area the VG chose not to use.
	rawLocnIgnored = 0x00000001
)

// LabelHeader starts the label sector.
type LabelHeader struct {
	ID       [8]byte // "LABELONE"
	Sector   uint64  // sector number of this label
	CRC      uint32  // of the bytes from Offset to the end of the sector
	Offset   uint32  // from the start of this struct to the PV header (32)
	TypeName [8]byte // "LVM2 001"
}

const labelHeaderSize = 32

// DiskLocn is an area of a PV: data (PEs) or metadata. Lists end with an
// all-zero entry.
type DiskLocn struct {
	Offset uint64 // bytes from the start of the PV
	Size   uint64 // bytes; 0 for a data area means "to the end"
}

const diskLocnSize = 16

// PVHeaderFixed is the start of struct pv_header; two DiskLocn lists (data
// areas, then metadata areas) follow it, then an optional extension.
type PVHeaderFixed struct {
	UUID    [32]byte // ID_LEN characters, no dashes
	DevSize uint64   // bytes
}

const pvHeaderFixedSize = 40

// MDAHeaderFixed is the start of struct mda_header; a list of RawLocn
// follows, ending with an entry whose Offset is 0.
type MDAHeaderFixed struct {
	Checksum uint32   // of the rest of the 512-byte header
	Magic    [16]byte // mdaMagic
	Version  uint32   // 1
	Start    uint64   // absolute byte offset of this header on the PV
	Size     uint64   // bytes of the metadata area, header included
}

const mdaHeaderFixedSize = 40

// RawLocn locates one copy of the text metadata in the circular buffer of a
// metadata area: the first is the committed metadata, a second (if any) the
// precommitted one.
type RawLocn struct {
	Offset   uint64 // bytes from the start of the metadata area
	Size     uint64
	Checksum uint32 // of the text
	Flags    uint32 // rawLocnIgnored
}

const rawLocnSize = 24

func decode[T any](b []byte) (v T) {
	binary.Decode(b, binary.LittleEndian, &v)
	return v
}

// calcCRC is LVM2's calc_crc: the reflected CRC-32 polynomial 0xedb88320
// without the initial and final inversion of IEEE CRC-32, seeded with
// initial. crc32.Update inverts on entry and exit, so invert around it.
func calcCRC(initial uint32, b []byte) uint32 {
	return ^crc32.Update(^initial, crc32.IEEETable, b)
}

// formatUUID writes an LVM UUID (32 characters) in its displayed 6-4-4-4-4-4-6
// form (lib/uuid/uuid.c id_write_format).
func formatUUID(u string) string {
	if len(u) != 32 {
		return u
	}
	groups := []int{6, 4, 4, 4, 4, 4, 6}
	out := make([]byte, 0, 38)
	i := 0
	for g, n := range groups {
		if g > 0 {
			out = append(out, '-')
		}
		out = append(out, u[i:i+n]...)
		i += n
	}
	return string(out)
}

// plainUUID removes the dashes of a displayed UUID.
func plainUUID(u string) string {
	out := make([]byte, 0, 32)
	for i := 0; i < len(u); i++ {
		if u[i] != '-' {
			out = append(out, u[i])
		}
	}
	return string(out)
}
