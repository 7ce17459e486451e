package jbd2

import (
	"encoding/binary"
	"hash/crc32"
)

// On-disk journal structures (journal.rst). Everything is big-endian.
const (
	Magic = 0xC03B3998

	BlockDescriptor = 1
	BlockCommit     = 2
	BlockSuperV1    = 3
	BlockSuperV2    = 4
	BlockRevoke     = 5

	HeaderSize        = 12
	SuperblockSize    = 1024
	superCsumOff      = 0xFC
	RevokeHeaderSize  = 16
	TailSize          = 4 // struct jbd2_journal_block_tail
	commitCsumOff     = 16
	CrcChecksumCrc32c = 4

	CompatChecksum = 0x1

	IncompatRevoke      = 0x1
	Incompat64bit       = 0x2
	IncompatAsyncCommit = 0x4
	IncompatCsumV2      = 0x8
	IncompatCsumV3      = 0x10
	IncompatFastCommit  = 0x20

	FlagEscape   = 1
	FlagSameUUID = 2
	FlagDeleted  = 4
	FlagLastTag  = 8

	// DefaultFastCommitBlocks is used when s_num_fc_blks is 0.
	DefaultFastCommitBlocks = 256
)

var be = binary.BigEndian

// Header is journal_header_t, at the start of every metadata block.
type Header struct {
	Magic     uint32
	BlockType uint32
	Sequence  uint32
}

// Superblock is journal_superblock_t (the fields up to s_users).
type Superblock struct {
	Header
	BlockSize       uint32
	MaxLen          uint32
	First           uint32
	Sequence        uint32
	Start           uint32
	Errno           int32
	FeatureCompat   uint32
	FeatureIncompat uint32
	FeatureRoCompat uint32
	UUID            [16]byte
	NrUsers         uint32
	Dynsuper        uint32
	MaxTransaction  uint32
	MaxTransData    uint32
	ChecksumType    uint8
	Padding2        [3]uint8
	NumFcBlocks     uint32
	Head            uint32
	Padding         [40]uint32
	Checksum        uint32
	Users           [16 * 48]byte
}

// Tag3 is journal_block_tag3_t (checksum v3).
type Tag3 struct {
	Blocknr     uint32
	Flags       uint32
	BlocknrHigh uint32
	Checksum    uint32
}

// Tag is journal_block_tag_t; BlocknrHigh exists only with 64bit.
type Tag struct {
	Blocknr     uint32
	Checksum    uint16
	Flags       uint16
	BlocknrHigh uint32
}

// CommitHeader is struct commit_header.
type CommitHeader struct {
	Header
	ChksumType uint8
	ChksumSize uint8
	Padding    [2]uint8
	Chksum     [8]uint32
	CommitSec  uint64
	CommitNsec uint32
}

// DecodeHeader decodes the first 12 bytes of a block.
func DecodeHeader(b []byte) Header {
	return Header{Magic: be.Uint32(b[0:]), BlockType: be.Uint32(b[4:]), Sequence: be.Uint32(b[8:])}
}

// DecodeSuperblock decodes a journal superblock.
func DecodeSuperblock(b []byte) (*Superblock, bool) {
	if len(b) < SuperblockSize {
		return nil, false
	}
	s := new(Superblock)
	if _, err := binary.Decode(b[:SuperblockSize], be, s); err != nil {
		return nil, false
	}
	return s, true
}

// tagBytes is the size of one descriptor tag (journal_tag_bytes): v3 tags
// are 16 bytes; others 12 with 64bit, 8 without, plus 2 with checksum v2.
func tagBytes(incompat uint32) int {
	if incompat&IncompatCsumV3 != 0 {
		return 16
	}
	sz := 12
	if incompat&IncompatCsumV2 != 0 {
		sz += 2
	}
	if incompat&Incompat64bit != 0 {
		return sz
	}
	return sz - 4
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// crc32c is the kernel's raw crc32c(seed, p) (no final inversion).
func crc32c(seed uint32, p []byte) uint32 { return ^crc32.Update(^seed, castagnoli, p) }

var zero4 [4]byte

// superChecksum: crc32c(~0, superblock with s_checksum zero).
func superChecksum(b []byte) uint32 {
	c := crc32c(^uint32(0), b[:superCsumOff])
	c = crc32c(c, zero4[:])
	return crc32c(c, b[superCsumOff+4:SuperblockSize])
}

// tailChecksum: descriptor and revoke blocks, crc32c(seed, block with the
// tail zero).
func tailChecksum(seed uint32, b []byte) (stored, computed uint32) {
	n := len(b) - TailSize
	c := crc32c(seed, b[:n])
	return be.Uint32(b[n:]), crc32c(c, zero4[:])
}

// commitChecksum: crc32c(seed, block with h_chksum[0] zero).
func commitChecksum(seed uint32, b []byte) (stored, computed uint32) {
	c := crc32c(seed, b[:commitCsumOff])
	c = crc32c(c, zero4[:])
	return be.Uint32(b[commitCsumOff:]), crc32c(c, b[commitCsumOff+4:])
}

// dataChecksum: crc32c(seed, be32 sequence, block) as a tag stores it.
func dataChecksum(seed, seq uint32, b []byte) uint32 {
	var s [4]byte
	be.PutUint32(s[:], seq)
	return crc32c(crc32c(seed, s[:]), b)
}
