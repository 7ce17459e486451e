package part

import (
	"encoding/binary"
	"fmt"
	"unicode/utf16"
)

// On-disk structures, little-endian. Field names follow the UEFI
// specification (2.10, section 5) for GPT and the kernel's struct
// msdos_partition for MBR.

// MBR layout (UEFI 2.10 section 5.2.1, table 5-1).
const (
	mbrDiskSignatureOff = 440 // UniqueMBRDiskSignature
	mbrEntriesOff       = 446 // PartitionRecord[4]
	mbrEntrySize        = 16
	mbrSignatureOff     = 510 // 0x55 0xAA
	mbrSize             = 512
)

// MBREntry is one of the four partition records of an MBR or EBR.
type MBREntry struct {
	BootIndicator uint8 // 0x80 active, 0 inactive; anything else is not a table
	StartCHS      [3]byte
	OSType        uint8 // the partition type ("system indicator")
	EndCHS        [3]byte
	StartingLBA   uint32 // in logical sectors, relative to the table's base
	SizeInLBA     uint32 // "nr_sects"
}

// MBR is the first sector of a disk, or an EBR.
type MBR struct {
	DiskSignature uint32
	Entries       [4]MBREntry
	Signature     uint16 // 0xAA55 when valid
}

func decodeMBR(b []byte) MBR {
	var m MBR
	m.DiskSignature = binary.LittleEndian.Uint32(b[mbrDiskSignatureOff:])
	for i := range m.Entries {
		binary.Decode(b[mbrEntriesOff+i*mbrEntrySize:], binary.LittleEndian, &m.Entries[i])
	}
	m.Signature = binary.LittleEndian.Uint16(b[mbrSignatureOff:])
	return m
}

// GPTHeader is the GPT header (UEFI 2.10 section 5.3.2, table 5-5). Bytes
// past HeaderSize up to the end of the sector are reserved and must be zero;
// they are not part of the CRC.
type GPTHeader struct {
	Signature                [8]byte // "EFI PART"
	Revision                 uint32  // 0x00010000
	HeaderSize               uint32  // 92 <= HeaderSize <= logical block size
	HeaderCRC32              uint32  // over HeaderSize bytes with this field zero
	Reserved                 uint32
	MyLBA                    uint64
	AlternateLBA             uint64
	FirstUsableLBA           uint64
	LastUsableLBA            uint64
	DiskGUID                 [16]byte
	PartitionEntryLBA        uint64
	NumberOfPartitionEntries uint32
	SizeOfPartitionEntry     uint32 // 128 * 2^n
	PartitionEntryArrayCRC32 uint32
}

const (
	gptHeaderSize = 92
	gptEntrySize  = 128 // the part of each entry that has fields
	gptSignature  = "EFI PART"
)

// GPTEntry is one partition entry (UEFI 2.10 section 5.3.3, table 5-6).
// Entries larger than 128 bytes carry reserved bytes after these fields.
type GPTEntry struct {
	PartitionTypeGUID   [16]byte // all zero: unused entry
	UniquePartitionGUID [16]byte
	StartingLBA         uint64
	EndingLBA           uint64 // inclusive
	Attributes          uint64
	PartitionName       [72]byte // 36 UTF-16LE code units, NUL-padded
}

func decodeGPTHeader(b []byte) (h GPTHeader) {
	binary.Decode(b, binary.LittleEndian, &h)
	return h
}

func decodeGPTEntry(b []byte) (e GPTEntry) {
	binary.Decode(b, binary.LittleEndian, &e)
	return e
}

// Name decodes the UTF-16LE partition name up to its first NUL. Unpaired
// surrogates become U+FFFD.
func (e *GPTEntry) Name() string {
	u := make([]uint16, 0, 36)
	for i := 0; i+1 < len(e.PartitionName); i += 2 {
		c := binary.LittleEndian.Uint16(e.PartitionName[i:])
		if c == 0 {
			break
		}
		u = append(u, c)
	}
	return string(utf16.Decode(u))
}

// FormatGUID formats a GUID as stored on disk in the EFI mixed-endian layout
// (first three fields little-endian), lowercase as Linux shows PARTUUIDs.
func FormatGUID(g [16]byte) string {
	return fmt.Sprintf("%08x-%04x-%04x-%02x%02x-%02x%02x%02x%02x%02x%02x",
		binary.LittleEndian.Uint32(g[0:4]), binary.LittleEndian.Uint16(g[4:6]),
		binary.LittleEndian.Uint16(g[6:8]), g[8], g[9], g[10], g[11], g[12], g[13], g[14], g[15])
}

func isZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
