package disklayout

import "encoding/binary"

// Directory entries (Documentation/filesystems/ext4/directory.rst).
const (
	DirentHeaderSize = 8
	DirentTailSize   = 12 // struct ext4_dir_entry_tail
	DirentTailType   = 0xDE
	NameMax          = 255
)

// File types in ext4_dir_entry_2.file_type.
const (
	FtUnknown = 0
	FtRegFile = 1
	FtDir     = 2
	FtChrdev  = 3
	FtBlkdev  = 4
	FtFifo    = 5
	FtSock    = 6
	FtSymlink = 7
)

// Dirent is struct ext4_dir_entry_2 without its name (NameLen bytes follow
// the 8-byte header). Without the filetype feature FileType is the high
// byte of a 16-bit name length (struct ext4_dir_entry); callers ignore it.
type Dirent struct {
	Inode    uint32
	RecLen   uint16
	NameLen  uint8
	FileType uint8
}

// DecodeDirent decodes the header at b[0:8].
func DecodeDirent(b []byte) (Dirent, error) {
	if len(b) < DirentHeaderSize {
		return Dirent{}, errShort
	}
	le := binary.LittleEndian
	return Dirent{Inode: le.Uint32(b[0:]), RecLen: le.Uint16(b[4:]), NameLen: b[6], FileType: b[7]}, nil
}

// RecLen decodes rec_len for a block size: with 64 KiB blocks a whole-block
// entry does not fit 16 bits, so 65535 and 0 mean the block size and the
// low two bits carry bits 16-17 (ext4_rec_len_from_disk).
func RecLen(raw uint16, blockSize int) int {
	if blockSize < 65536 {
		return int(raw)
	}
	if raw == 65535 || raw == 0 {
		return blockSize
	}
	return int(raw&65532) | int(raw&3)<<16
}

// DirentMinLen is EXT4_DIR_REC_LEN(name_len): header plus name, rounded up
// to 4 bytes.
func DirentMinLen(nameLen int) int { return (DirentHeaderSize + nameLen + 3) &^ 3 }

// DirBlockTail finds the checksum tail at the end of a leaf block: a fake
// entry with inode 0, rec_len 12, name_len 0 and file type 0xDE.
func DirBlockTail(b []byte) (csum uint32, ok bool) {
	if len(b) < DirentTailSize {
		return 0, false
	}
	t := b[len(b)-DirentTailSize:]
	le := binary.LittleEndian
	if le.Uint32(t[0:]) != 0 || le.Uint16(t[4:]) != DirentTailSize || t[6] != 0 || t[7] != DirentTailType {
		return 0, false
	}
	return le.Uint32(t[8:]), true
}

// DirBlockChecksum is crc32c(inode seed, block without its tail).
func DirBlockChecksum(inodeSeed uint32, b []byte) uint32 {
	return Crc32c(inodeSeed, b[:len(b)-DirentTailSize])
}

// Hash tree ("htree", directory.rst "Hash Tree Directories"). The root
// block starts with fake "." and ".." entries, then dx_root_info at 0x18,
// then a dx_countlimit overlaying the first dx_entry. Interior nodes start
// with an empty fake entry spanning the block, the countlimit at 0x8.
const (
	DxRootInfoOff   = 0x18
	DxRootEntries   = 0x20
	DxNodeEntries   = 0x8
	DxEntrySize     = 8
	DxTailSize      = 8
	DxRootInfoLen   = 8
	DxHashLegacy    = 0
	DxHashHalfMD4   = 1
	DxHashTea       = 2
	DxHashLegacyU   = 3
	DxHashHalfMD4U  = 4
	DxHashTeaU      = 5
	DxHashSiphash   = 6
	DxMaxLevels     = 2 // indirect_levels limit without large_dir
	DxMaxLevelsLarg = 3 // with large_dir
)

// DxRootInfo is struct dx_root_info.
type DxRootInfo struct {
	ReservedZero   uint32
	HashVersion    uint8
	InfoLength     uint8
	IndirectLevels uint8
	UnusedFlags    uint8
}

// DxCountLimit is struct dx_countlimit; it shares its 8 bytes with the
// first dx_entry (whose hash is implicitly 0), Block being that entry's.
type DxCountLimit struct {
	Limit uint16
	Count uint16
	Block uint32
}

// DxEntry is struct dx_entry.
type DxEntry struct {
	Hash  uint32
	Block uint32
}

// DecodeDxRootInfo decodes dx_root_info from a root block.
func DecodeDxRootInfo(b []byte) (DxRootInfo, error) {
	if len(b) < DxRootInfoOff+DxRootInfoLen {
		return DxRootInfo{}, errShort
	}
	r := b[DxRootInfoOff:]
	return DxRootInfo{ReservedZero: binary.LittleEndian.Uint32(r), HashVersion: r[4], InfoLength: r[5], IndirectLevels: r[6], UnusedFlags: r[7]}, nil
}

// DecodeDxCountLimit decodes the countlimit at off.
func DecodeDxCountLimit(b []byte, off int) (DxCountLimit, error) {
	if off < 0 || off+8 > len(b) {
		return DxCountLimit{}, errShort
	}
	le := binary.LittleEndian
	return DxCountLimit{Limit: le.Uint16(b[off:]), Count: le.Uint16(b[off+2:]), Block: le.Uint32(b[off+4:])}, nil
}

// DecodeDxEntry decodes the i-th dx_entry of the array starting at off;
// the caller checked bounds.
func DecodeDxEntry(b []byte, off, i int) DxEntry {
	e := b[off+i*DxEntrySize:]
	le := binary.LittleEndian
	return DxEntry{Hash: le.Uint32(e[0:]), Block: le.Uint32(e[4:])}
}

// DxNodeChecksum is the checksum of an htree node whose countlimit is at
// off: crc32c(inode seed, bytes up to the end of the count entries, then
// the dx_tail's reserved word and four zero bytes). The tail sits after
// limit entries. ok is false when it would not fit the block.
func DxNodeChecksum(inodeSeed uint32, b []byte, off int, count, limit int) (stored, computed uint32, ok bool) {
	size := off + count*DxEntrySize
	tail := off + limit*DxEntrySize
	if count > limit || tail+DxTailSize > len(b) {
		return 0, 0, false
	}
	c := Crc32c(inodeSeed, b[:size])
	c = Crc32c(c, b[tail:tail+4])
	c = Crc32cZeros(c, 4)
	return binary.LittleEndian.Uint32(b[tail+4:]), c, true
}
