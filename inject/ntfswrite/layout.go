package ntfswrite

import (
	"encoding/binary"
	"unicode/utf16"

	"github.com/vmmount/vmmount/fsread/ntfs"
)

// On-disk constants the writer needs beyond the reader's structs
// (fsread/ntfs exports those), named as in ntfs-3g's layout.h.

var le = binary.LittleEndian

// Attribute types (layout.h ATTR_TYPES).
const (
	atStandardInformation = 0x10
	atAttributeList       = 0x20
	atFileName            = 0x30
	atObjectID            = 0x40
	atSecurityDescriptor  = 0x50
	atVolumeName          = 0x60
	atVolumeInformation   = 0x70
	atData                = 0x80
	atIndexRoot           = 0x90
	atIndexAllocation     = 0xA0
	atBitmap              = 0xB0
	atReparsePoint        = 0xC0
	atEAInformation       = 0xD0
	atEA                  = 0xE0
	atLoggedUtilityStream = 0x100
	atEnd                 = 0xFFFFFFFF
)

// Attribute flags (layout.h ATTR_FLAGS).
const (
	attrCompressionMask = 0x00FF
	attrEncrypted       = 0x4000
	attrSparse          = 0x8000
)

// Resident attribute flags.
const residentIndexed = 0x01 // RESIDENT_ATTR_IS_INDEXED ($FILE_NAME)

// MFT record header: byte offsets (layout.h MFT_RECORD, NTFS 3.1).
const (
	recUSAOfs       = 0x04
	recUSACount     = 0x06
	recLSN          = 0x08
	recSeq          = 0x10
	recLinkCount    = 0x12
	recAttrsOffset  = 0x14
	recFlags        = 0x16
	recBytesInUse   = 0x18
	recBytesAlloc   = 0x1C
	recBase         = 0x20
	recNextInstance = 0x28
	recNumber       = 0x2C
	recHeaderSize   = ntfs.RecordHeaderSize
)

// MFT record flags.
const (
	recordInUse     = 0x0001
	recordDirectory = 0x0002
)

// File attribute flags (layout.h FILE_ATTR_FLAGS).
const (
	FileAttrReadOnly          = 0x00000001
	FileAttrHidden            = 0x00000002
	FileAttrSystem            = 0x00000004
	FileAttrDirectory         = 0x00000010
	FileAttrArchive           = 0x00000020
	FileAttrDevice            = 0x00000040
	FileAttrNormal            = 0x00000080
	FileAttrTemporary         = 0x00000100
	FileAttrSparse            = 0x00000200
	FileAttrReparsePoint      = 0x00000400
	FileAttrCompressed        = 0x00000800
	FileAttrOffline           = 0x00001000
	FileAttrNotContentIndexed = 0x00002000
	FileAttrEncrypted         = 0x00004000
	FileAttrIntegrityStream   = 0x00008000
	FileAttrRecallOnOpen      = 0x00040000
	FileAttrRecallOnAccess    = 0x00400000
	fileAttrI30IndexPresent   = 0x10000000 // in $FILE_NAME: the file is a directory
	fileAttrViewIndexPresent  = 0x20000000
)

// SettableAttrs are the Windows attributes a caller may set: the ones
// that describe the file without changing how its content is stored.
const SettableAttrs = FileAttrReadOnly | FileAttrHidden | FileAttrSystem | FileAttrArchive |
	FileAttrNormal | FileAttrTemporary | FileAttrOffline | FileAttrNotContentIndexed

// File name namespaces (layout.h FILE_NAME_TYPE_FLAGS).
const (
	nsPOSIX       = 0
	nsWin32       = 1
	nsDOS         = 2
	nsWin32AndDOS = 3
)

// $STANDARD_INFORMATION sizes: NTFS 1.2 (times and flags) and 3.x (owner
// and security ids, quota, USN).
const (
	siSizeV1 = ntfs.StandardInformationSize
	siSizeV3 = 72
	// Field offsets in the value.
	siCreation   = 0x00
	siDataChange = 0x08
	siMFTChange  = 0x10
	siAccess     = 0x18
	siAttributes = 0x20
	siOwnerID    = 0x30
	siSecurityID = 0x34
	siQuota      = 0x38
	siUSN        = 0x40
)

// $FILE_NAME field offsets (layout.h FILE_NAME_ATTR).
const (
	fnParent     = 0x00
	fnCreation   = 0x08
	fnDataChange = 0x10
	fnMFTChange  = 0x18
	fnAccess     = 0x20
	fnAllocSize  = 0x28
	fnDataSize   = 0x30
	fnAttributes = 0x38
	fnReparse    = 0x3C
	fnNameLen    = 0x40
	fnNameType   = 0x41
	fnName       = ntfs.FileNameHeaderSize
)

// Index structures (layout.h INDEX_ROOT, INDEX_HEADER, INDEX_ENTRY).
const (
	irHeaderSize   = 16 // INDEX_ROOT before its INDEX_HEADER
	ihSize         = 16 // INDEX_HEADER
	ihEntriesOff   = 0x00
	ihIndexLength  = 0x04
	ihAllocSize    = 0x08
	ihFlags        = 0x0C
	ieHeaderSize   = ntfs.IndexEntryHeaderSize
	ieFlagNode     = 0x01
	ieFlagEnd      = 0x02
	ihFlagLarge    = 0x01 // root: LARGE_INDEX; block: INDEX_NODE
	collationFName = 0x01
	indxUSAOfs     = 0x28 // where ntfs-3g and Windows put an INDX block's USA
	indxVCN        = 0x10
)

// $VOLUME_INFORMATION flags (layout.h VOLUME_FLAGS).
const (
	volumeIsDirty           = 0x0001
	volumeResizeLogFile     = 0x0002
	volumeUpgradeOnMount    = 0x0004
	volumeDeleteUSNUnderway = 0x0010
	volumeRepairObjectID    = 0x0020
	volumeChkdskUnderway    = 0x4000
)

// Well-known MFT records.
const (
	recMFT     = 0
	recMFTMirr = 1
	recLogFile = 2
	recVolume  = 3
	recAttrDef = 4
	recRoot    = 5
	recBitmap  = 6
	recBoot    = 7
	recBadClus = 8
	recSecure  = 9
	recUpCase  = 10
	recExtend  = 11
	firstUser  = 16
	// firstFree is where new records are searched from, as ntfs-3g does
	// (mft.c RESERVED_MFT_RECORDS): records below are the system files
	// and the extension records of $MFT and chkdsk.
	firstFree = 64
)

// RootRecord is the root directory's MFT record.
const RootRecord = recRoot

// ntfsBlock is the stride of update sequence fixups (NTFS_BLOCK_SIZE).
const ntfsBlock = 512

// mref builds an MFT reference from a record and sequence number.
func mref(rec uint64, seq uint16) uint64 { return rec&0xFFFFFFFFFFFF | uint64(seq)<<48 }

// splitRef splits an MFT reference.
func splitRef(r uint64) (uint64, uint16) { return r & 0xFFFFFFFFFFFF, uint16(r >> 48) }

func align8(n int) int { return (n + 7) &^ 7 }

// utf16Units encodes s as UTF-16 code units.
func utf16Units(s string) []uint16 { return utf16.Encode([]rune(s)) }

// utf16Bytes encodes UTF-16 units little endian.
func utf16Bytes(u []uint16) []byte {
	b := make([]byte, 2*len(u))
	for i, c := range u {
		le.PutUint16(b[2*i:], c)
	}
	return b
}

// unitsOf decodes little-endian UTF-16 bytes into units.
func unitsOf(b []byte) []uint16 {
	u := make([]uint16, len(b)/2)
	for i := range u {
		u[i] = le.Uint16(b[2*i:])
	}
	return u
}

func utf16String(u []uint16) string { return string(utf16.Decode(u)) }

// ntfsEpochDelta is 1601-01-01 to 1970-01-01 in 100 ns units.
const ntfsEpochDelta = 116444736000000000
