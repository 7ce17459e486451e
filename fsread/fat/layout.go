package fat

import (
	"encoding/binary"
)

// On-disk structures, little endian, as named in the Microsoft FAT
// specification v1.03 ("FAT: General Overview of On-Disk Format").

// bpb is the BIOS parameter block common to FAT12/16/32: boot sector bytes
// 0..35 (spec section 3.1).
type bpb struct {
	JmpBoot    [3]byte
	OEMName    [8]byte
	BytsPerSec uint16
	SecPerClus uint8
	RsvdSecCnt uint16
	NumFATs    uint8
	RootEntCnt uint16
	TotSec16   uint16
	Media      uint8
	FATSz16    uint16
	SecPerTrk  uint16
	NumHeads   uint16
	HiddSec    uint32
	TotSec32   uint32
}

// bpb16 follows bpb on FAT12/16 volumes (spec section 3.2, offset 36).
type bpb16 struct {
	DrvNum     uint8
	Reserved1  uint8 // Linux: bit 0 is the "volume dirty" state
	BootSig    uint8
	VolID      uint32
	VolLab     [11]byte
	FilSysType [8]byte
}

// bpb32 follows bpb on FAT32 volumes (spec section 3.3, offset 36).
type bpb32 struct {
	FATSz32    uint32
	ExtFlags   uint16
	FSVer      uint16
	RootClus   uint32
	FSInfo     uint16
	BkBootSec  uint16
	Reserved   [12]byte
	DrvNum     uint8
	Reserved1  uint8
	BootSig    uint8
	VolID      uint32
	VolLab     [11]byte
	FilSysType [8]byte
}

const (
	bpbSize   = 36
	bpb16Size = 26
	bpb32Size = 54
)

// dirEntry is a 32-byte short (8.3) directory entry (spec section 6).
type dirEntry struct {
	Name         [11]byte
	Attr         uint8
	NTRes        uint8 // Windows NT case flags: 0x08 base, 0x10 extension lowercase
	CrtTimeTenth uint8 // creation time, 10 ms units, 0..199
	CrtTime      uint16
	CrtDate      uint16
	LstAccDate   uint16
	FstClusHI    uint16
	WrtTime      uint16
	WrtDate      uint16
	FstClusLO    uint16
	FileSize     uint32
}

// lfnEntry is a VFAT long name slot (spec section 7): 13 UTF-16 units of
// the name, last slot first, each carrying the checksum of the 8.3 name
// that follows the set.
type lfnEntry struct {
	Ord      uint8
	Name1    [5]uint16
	Attr     uint8
	Type     uint8
	Chksum   uint8
	Name2    [6]uint16
	FstClsLO uint16
	Name3    [2]uint16
}

const dirEntrySize = 32

// Directory entry attribute bits (spec section 6, DIR_Attr).
const (
	attrReadOnly  = 0x01
	attrHidden    = 0x02
	attrSystem    = 0x04
	attrVolumeID  = 0x08
	attrDirectory = 0x10
	attrArchive   = 0x20
	attrLongName  = attrReadOnly | attrHidden | attrSystem | attrVolumeID
)

// NT case flags in dirEntry.NTRes, as Windows NT and Linux vfat use them.
const (
	ntLowerBase = 0x08
	ntLowerExt  = 0x10
)

const (
	slotDeleted = 0xE5 // first name byte of a deleted entry
	slotKanji   = 0x05 // first name byte standing for a real 0xE5
	lfnLast     = 0x40 // Ord bit of the last (first stored) long name slot
	lfnMaxSlots = 20   // 255 characters / 13 per slot, rounded up
)

func decodeBPB(b []byte) (bpb, error) {
	var p bpb
	_, err := binary.Decode(b, binary.LittleEndian, &p)
	return p, err
}

func decodeBPB16(b []byte) (bpb16, error) {
	var p bpb16
	_, err := binary.Decode(b, binary.LittleEndian, &p)
	return p, err
}

func decodeBPB32(b []byte) (bpb32, error) {
	var p bpb32
	_, err := binary.Decode(b, binary.LittleEndian, &p)
	return p, err
}

func decodeDirEntry(b []byte) dirEntry {
	var d dirEntry
	binary.Decode(b[:dirEntrySize], binary.LittleEndian, &d)
	return d
}

func decodeLFN(b []byte) lfnEntry {
	var l lfnEntry
	binary.Decode(b[:dirEntrySize], binary.LittleEndian, &l)
	return l
}

// firstCluster is the entry's first cluster; FstClusHI is zero on FAT12/16.
func (d *dirEntry) firstCluster() uint32 {
	return uint32(d.FstClusHI)<<16 | uint32(d.FstClusLO)
}

// units returns the 13 UTF-16 units of a long name slot in order.
func (l *lfnEntry) units() [13]uint16 {
	var u [13]uint16
	copy(u[0:5], l.Name1[:])
	copy(u[5:11], l.Name2[:])
	copy(u[11:13], l.Name3[:])
	return u
}

// shortNameChecksum is the checksum over the 11 name bytes of an 8.3 entry
// that each long name slot stores (spec section 7.2, ChkSum).
func shortNameChecksum(name *[11]byte) uint8 {
	var sum uint8
	for _, c := range name {
		sum = (sum>>1 | sum<<7) + c
	}
	return sum
}
