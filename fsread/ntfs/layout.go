package ntfs

import (
	"encoding/binary"
	"time"
	"unicode/utf16"
)

// On-disk structures, little endian, named as in ntfs-3g's layout.h (the
// most complete public description of NTFS 3.1).

// bootSector is the NTFS boot sector (layout.h NTFS_BOOT_SECTOR).
type bootSector struct {
	Jump                   [3]byte
	OEMID                  [8]byte // "NTFS    "
	BytesPerSector         uint16
	SectorsPerCluster      uint8 // > 0x80: 2^(256-value) sectors
	ReservedSectors        uint16
	FATs                   uint8
	RootEntries            uint16
	Sectors16              uint16
	MediaType              uint8
	SectorsPerFAT          uint16
	SectorsPerTrack        uint16
	Heads                  uint16
	HiddenSectors          uint32
	LargeSectors           uint32
	PhysicalDrive          uint8
	CurrentHead            uint8
	ExtendedBootSignature  uint8
	Reserved2              uint8
	NumberOfSectors        int64
	MFTLCN                 int64
	MFTMirrLCN             int64
	ClustersPerMFTRecord   int8 // < 0: 2^-value bytes
	Reserved0              [3]byte
	ClustersPerIndexRecord int8
	Reserved1              [3]byte
	VolumeSerialNumber     uint64
	Checksum               uint32
}

const bootSectorSize = 0x54

// recordHeader starts every MFT record (layout.h MFT_RECORD, NTFS 3.1).
type recordHeader struct {
	Magic           [4]byte // "FILE"
	USAOfs          uint16
	USACount        uint16
	LSN             uint64
	SequenceNumber  uint16
	LinkCount       uint16
	AttrsOffset     uint16
	Flags           uint16
	BytesInUse      uint32
	BytesAllocated  uint32
	BaseMFTRecord   uint64
	NextAttrInst    uint16
	Reserved        uint16
	MFTRecordNumber uint32
}

const recordHeaderSize = 48

// MFT record flags.
const (
	recordInUse     = 0x0001
	recordDirectory = 0x0002
)

// attrHeader starts every attribute (layout.h ATTR_RECORD, common part).
type attrHeader struct {
	Type        uint32
	Length      uint32
	NonResident uint8
	NameLength  uint8 // UTF-16 units
	NameOffset  uint16
	Flags       uint16
	Instance    uint16
}

// residentHeader follows attrHeader for resident attributes.
type residentHeader struct {
	ValueLength   uint32
	ValueOffset   uint16
	ResidentFlags uint8
	Reserved      uint8
}

// nonResidentHeader follows attrHeader for non-resident attributes;
// CompressedSize is only present when the attribute is compressed or
// sparse (the header is then 72 bytes, else 64).
type nonResidentHeader struct {
	LowestVCN          int64
	HighestVCN         int64
	MappingPairsOffset uint16
	CompressionUnit    uint8 // log2 of clusters per compression unit
	Reserved           [5]byte
	AllocatedSize      int64
	DataSize           int64
	InitializedSize    int64
	CompressedSize     int64
}

const (
	attrHeaderSize        = 16
	residentHeaderSize    = 8
	nonResidentHeaderSize = 56 // with CompressedSize
)

// Attribute types (layout.h ATTR_TYPES).
const (
	atStandardInformation = 0x10
	atAttributeList       = 0x20
	atFileName            = 0x30
	atObjectID            = 0x40
	atVolumeName          = 0x60
	atVolumeInformation   = 0x70
	atData                = 0x80
	atIndexRoot           = 0x90
	atIndexAllocation     = 0xA0
	atBitmap              = 0xB0
	atReparsePoint        = 0xC0
	atEnd                 = 0xFFFFFFFF
)

// Attribute flags (layout.h ATTR_FLAGS).
const (
	attrCompressionMask = 0x00FF
	attrEncrypted       = 0x4000
	attrSparse          = 0x8000
)

// standardInformation is $STANDARD_INFORMATION (48 bytes in NTFS 1.2,
// 72 in 3.x; only the first 48 are needed).
type standardInformation struct {
	CreationTime       int64
	LastDataChangeTime int64
	LastMFTChangeTime  int64
	LastAccessTime     int64
	FileAttributes     uint32
	MaximumVersions    uint32
	VersionNumber      uint32
	ClassID            uint32
}

const standardInformationSize = 48

// fileNameHeader is $FILE_NAME before the name (layout.h FILE_NAME_ATTR).
type fileNameHeader struct {
	ParentDirectory    uint64
	CreationTime       int64
	LastDataChangeTime int64
	LastMFTChangeTime  int64
	LastAccessTime     int64
	AllocatedSize      int64
	DataSize           int64
	FileAttributes     uint32
	ReparseOrEA        uint32
	FileNameLength     uint8
	FileNameType       uint8
}

const fileNameHeaderSize = 66

// File name namespaces (layout.h FILE_NAME_TYPE_FLAGS).
const (
	nsPOSIX = 0
	nsWin32 = 1
	nsDOS   = 2
)

// File attribute flags (layout.h FILE_ATTR_FLAGS).
const (
	fileAttrReadOnly        = 0x00000001
	fileAttrHidden          = 0x00000002
	fileAttrSystem          = 0x00000004
	fileAttrDirectory       = 0x00000010
	fileAttrArchive         = 0x00000020
	fileAttrSparse          = 0x00000200
	fileAttrReparsePoint    = 0x00000400
	fileAttrCompressed      = 0x00000800
	fileAttrEncrypted       = 0x00004000
	fileAttrRecallOnOpen    = 0x00040000
	fileAttrI30IndexPresent = 0x10000000
)

// attrListEntry is one entry of $ATTRIBUTE_LIST (layout.h ATTR_LIST_ENTRY).
type attrListEntry struct {
	Type         uint32
	Length       uint16
	NameLength   uint8
	NameOffset   uint8
	LowestVCN    int64
	MFTReference uint64
	Instance     uint16
}

const attrListEntrySize = 26

// indexRoot is $INDEX_ROOT before its index header (layout.h INDEX_ROOT).
type indexRoot struct {
	Type                  uint32
	CollationRule         uint32
	IndexBlockSize        uint32
	ClustersPerIndexBlock uint8
	Reserved              [3]byte
	EntriesOffset         uint32 // INDEX_HEADER, offsets from its start
	IndexLength           uint32
	AllocatedSize         uint32
	Flags                 uint8
	ReservedHeader        [3]byte
}

const indexRootSize = 32

// indexBlockHeader starts each $INDEX_ALLOCATION block ("INDX"), followed
// at offset 0x18 by an INDEX_HEADER (layout.h INDEX_BLOCK).
type indexBlockHeader struct {
	Magic         [4]byte
	USAOfs        uint16
	USACount      uint16
	LSN           uint64
	IndexBlockVCN int64
	EntriesOffset uint32
	IndexLength   uint32
	AllocatedSize uint32
	Flags         uint8
	Reserved      [3]byte
}

const (
	indexBlockHeaderSize = 40
	indexHeaderOffset    = 0x18
)

// indexEntryHeader starts each index entry (layout.h INDEX_ENTRY).
type indexEntryHeader struct {
	IndexedFile uint64
	Length      uint16
	KeyLength   uint16
	Flags       uint16
	Reserved    uint16
}

const indexEntryHeaderSize = 16

// Index entry flags.
const (
	ieNode = 0x01 // has a sub-node, whose VCN is the entry's last 8 bytes
	ieEnd  = 0x02 // last entry of a node, no key
)

// Reparse tags (layout.h PREDEFINED_REPARSE_TAGS).
const (
	tagMountPoint = 0xA0000003
	tagSymlink    = 0xA000000C
	tagLXSymlink  = 0xA000001D
	tagAFUnix     = 0x80000023
	tagLXFIFO     = 0x80000024
	tagLXChr      = 0x80000025
	tagLXBlk      = 0x80000026
	tagMicrosoft  = 0x80000000
)

// Interix special files: a system file's $DATA starts with one of these
// (layout.h INTX_FILE_TYPES).
const (
	intxSymlink = 0x014B4E4C78746E49 // "IntxLNK\1"
	intxChr     = 0x0052484378746E49 // "IntxCHR\0"
	intxBlk     = 0x004B4C4278746E49 // "IntxBLK\0"
)

// Well-known MFT records.
const (
	mftRecordMFT     = 0
	mftRecordLogFile = 2
	mftRecordVolume  = 3
	mftRecordRoot    = 5
	firstUserRecord  = 16
)

// mftRef splits an MFT reference into record number and sequence number.
func mftRef(r uint64) (rec uint64, seq uint16) { return r & 0xFFFFFFFFFFFF, uint16(r >> 48) }

// ntfsEpochDelta is 1601-01-01 to 1970-01-01 in 100 ns units.
const ntfsEpochDelta = 116444736000000000

// ntfsTime converts an NTFS time (100 ns since 1601, UTC) as ntfs-3g's
// ntfs2timespec does.
func ntfsTime(t int64) time.Time {
	u := t - ntfsEpochDelta
	sec, rem := u/10_000_000, u%10_000_000
	if rem < 0 {
		sec--
		rem += 10_000_000
	}
	return time.Unix(sec, rem*100).UTC()
}

func le16(b []byte) uint16 { return binary.LittleEndian.Uint16(b) }
func le32(b []byte) uint32 { return binary.LittleEndian.Uint32(b) }
func le64(b []byte) uint64 { return binary.LittleEndian.Uint64(b) }

// utf16le decodes UTF-16LE bytes; unpaired surrogates become U+FFFD.
func utf16le(b []byte) string {
	u := make([]uint16, len(b)/2)
	for i := range u {
		u[i] = le16(b[2*i:])
	}
	return string(utf16.Decode(u))
}

// decode fills v (a pointer to a fixed-size struct) from b, which must be
// long enough.
func decode(b []byte, v any) bool {
	_, err := binary.Decode(b, binary.LittleEndian, v)
	return err == nil
}
