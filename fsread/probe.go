package fsread

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// Filesystem and container types: blkid's names, except the shorter
// "luks", "lvm2-pv" and "mdraid" for crypto_LUKS, LVM2_member and
// linux_raid_member. The same names are in `info --json`, `ls` and the mount.
const (
	TypeExt2    = "ext2"
	TypeExt3    = "ext3"
	TypeExt4    = "ext4"
	TypeJBD     = "jbd" // an external ext3/4 journal device
	TypeNTFS    = "ntfs"
	TypeVFAT    = "vfat"
	TypeExFAT   = "exfat"
	TypeXFS     = "xfs"
	TypeBtrfs   = "btrfs"
	TypeSwap    = "swap"
	TypeLUKS    = "luks"
	TypeLVM2PV  = "lvm2-pv"
	TypeMDRaid  = "mdraid"
	TypeUnknown = "unknown"
)

// probe is what the superblock magics of a volume say.
type probe struct {
	typ     string // one of the Type constants
	version string // "FAT32", "2" (LUKS2), "1.2" (md)
	label   string
	uuid    string
}

// probeHead is how much of a volume probing reads at once: the btrfs
// superblock at 64 KiB is the furthest magic from the start.
const probeHead = 64<<10 + 4096

// probeVolume identifies what a volume holds from its magics, reading only
// headers (a few KiB; one MFT record for an NTFS label, the first root
// directory cluster for a FAT label). The order puts the most specific
// signatures first, as blkid's probe list does; a RAID member is tried last
// so a raid1 member with its superblock at the end (metadata 1.0, 0.90)
// shows the filesystem it mirrors, which reads fine on its own.
func probeVolume(r io.ReaderAt, size int64) (probe, error) {
	head := make([]byte, min(size, probeHead))
	if n, err := r.ReadAt(head, 0); n < len(head) {
		if err == nil || err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return probe{}, fmt.Errorf("reading the first %d bytes: %w", len(head), err)
	}
	at := func(off int, n int) []byte {
		if off < 0 || off+n > len(head) {
			return nil
		}
		return head[off : off+n]
	}
	if b := at(0, 6); b != nil && bytes.Equal(b, []byte("LUKS\xba\xbe")) {
		return probeLUKS(head), nil
	}
	if p, ok := probeLVM(head); ok {
		return p, nil
	}
	if b := at(0, 4); b != nil && string(b) == "XFSB" {
		return probe{typ: TypeXFS, uuid: formatUUID(at(32, 16)), label: cString(at(108, 12))}, nil
	}
	if b := at(0x10040, 8); b != nil && string(b) == "_BHRfS_M" {
		return probe{typ: TypeBtrfs, uuid: formatUUID(at(0x10020, 16)), label: cString(at(0x1012b, 256))}, nil
	}
	if b := at(3, 8); b != nil && string(b) == "NTFS    " && len(head) >= 512 {
		return probeNTFS(r, size, head), nil
	}
	if b := at(3, 8); b != nil && string(b) == "EXFAT   " && len(head) >= 512 {
		s := binary.LittleEndian.Uint32(head[0x64:])
		return probe{typ: TypeExFAT, uuid: fmt.Sprintf("%04X-%04X", s>>16, s&0xffff)}, nil
	}
	if p, ok := probeExt(head); ok {
		return p, nil
	}
	if p, ok := probeSwap(head); ok {
		return p, nil
	}
	if p, ok := probeFAT(r, size, head); ok {
		return p, nil
	}
	if p, ok := probeMD(r, size, head); ok {
		return p, nil
	}
	return probe{typ: TypeUnknown}, nil
}

// probeExt tells ext2, ext3 and ext4 apart by their feature flags the way
// libblkid does (superblocks/ext.c): ext2 has no journal and only ext2
// features, ext3 a journal and only ext3 features, ext4 anything beyond.
func probeExt(head []byte) (probe, bool) {
	if len(head) < 2048 {
		return probe{}, false
	}
	sb := head[1024:2048]
	if binary.LittleEndian.Uint16(sb[0x38:]) != 0xEF53 || binary.LittleEndian.Uint32(sb[0x18:]) > 6 {
		return probe{}, false
	}
	compat := binary.LittleEndian.Uint32(sb[0x5C:])
	incompat := binary.LittleEndian.Uint32(sb[0x60:])
	roCompat := binary.LittleEndian.Uint32(sb[0x64:])
	const (
		hasJournal   = 0x4
		journalDev   = 0x8
		ext2ROSupp   = 0x1 | 0x2 | 0x4 // sparse_super, large_file, btree_dir
		ext2InSupp   = 0x2 | 0x10      // filetype, meta_bg
		ext3InSupp   = 0x2 | 0x4 | 0x10
		ext3ROSupp   = ext2ROSupp
		ext4TestFlag = 0x4
	)
	p := probe{uuid: formatUUID(sb[0x68:0x78]), label: cString(sb[0x78:0x88])}
	switch {
	case incompat&journalDev != 0:
		p.typ = TypeJBD
	case compat&hasJournal == 0 && roCompat&^ext2ROSupp == 0 && incompat&^ext2InSupp == 0:
		p.typ = TypeExt2
	case compat&hasJournal != 0 && roCompat&^ext3ROSupp == 0 && incompat&^ext3InSupp == 0:
		p.typ = TypeExt3
	default:
		p.typ = TypeExt4
	}
	return p, true
}

func probeLUKS(head []byte) probe {
	p := probe{typ: TypeLUKS, version: fmt.Sprint(binary.BigEndian.Uint16(head[6:]))}
	if len(head) >= 208 {
		p.uuid = cString(head[168:208])
		if p.version == "2" {
			p.label = cString(head[24:72])
		}
	}
	return p
}

// probeLVM finds an LVM2 label in the first four sectors.
func probeLVM(head []byte) (probe, bool) {
	for s := 0; s < 4 && (s+1)*512 <= len(head); s++ {
		b := head[s*512 : (s+1)*512]
		if string(b[:8]) != "LABELONE" || string(b[24:32]) != "LVM2 001" {
			continue
		}
		off := int(binary.LittleEndian.Uint32(b[20:]))
		if off < 32 || off+32 > 512 {
			continue
		}
		return probe{typ: TypeLVM2PV, uuid: lvmUUID(string(b[off : off+32]))}, true
	}
	return probe{}, false
}

func lvmUUID(u string) string {
	if len(u) != 32 {
		return u
	}
	return u[0:6] + "-" + u[6:10] + "-" + u[10:14] + "-" + u[14:18] + "-" + u[18:22] + "-" + u[22:26] + "-" + u[26:32]
}

// probeSwap finds the Linux swap signature at the end of the first page
// (4, 8, 16 or 64 KiB pages); version 1 headers carry a UUID and label
// after the 1 KiB of boot bits.
func probeSwap(head []byte) (probe, bool) {
	for _, page := range []int{4096, 8192, 16384, 65536} {
		if page > len(head) {
			break
		}
		switch string(head[page-10 : page]) {
		case "SWAPSPACE2":
			return probe{typ: TypeSwap, version: "1", uuid: formatUUID(head[1024+12 : 1024+28]), label: cString(head[1024+28 : 1024+44])}, true
		case "SWAP-SPACE":
			return probe{typ: TypeSwap, version: "0"}, true
		}
	}
	return probe{}, false
}

// probeMD finds an md RAID superblock: version 1.1 at 0, 1.2 at 4 KiB,
// 1.0 at 8 KiB before the end, 0.90 in the last 64 KiB-aligned block.
func probeMD(r io.ReaderAt, size int64, head []byte) (probe, bool) {
	const magic = 0xa92b4efc
	for _, c := range []struct {
		off     int64
		version string
	}{{0, "1.1"}, {4096, "1.2"}, {(size - 8192) &^ 4095, "1.0"}, {(size &^ 65535) - 65536, "0.90"}} {
		if c.off < 0 || c.off+4 > size {
			continue
		}
		b := make([]byte, 4)
		if c.off+4 <= int64(len(head)) {
			copy(b, head[c.off:])
		} else if n, _ := r.ReadAt(b, c.off); n < 4 {
			continue
		}
		if binary.LittleEndian.Uint32(b) == magic {
			return probe{typ: TypeMDRaid, version: c.version}, true
		}
	}
	return probe{}, false
}

// formatUUID formats 16 bytes as a big-endian RFC 4122 UUID, as blkid shows
// ext, xfs, btrfs and swap UUIDs; all zeros gives "".
func formatUUID(b []byte) string {
	if len(b) != 16 || isZero(b) {
		return ""
	}
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

func isZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// cString takes a NUL-padded string; invalid UTF-8 is replaced.
func cString(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return strings.ToValidUTF8(string(b), "\uFFFD")
}

func utf16String(b []byte) string {
	u := make([]uint16, len(b)/2)
	for i := range u {
		u[i] = binary.LittleEndian.Uint16(b[2*i:])
	}
	return string(utf16.Decode(u))
}

// latin1 turns an 8-bit FAT name into UTF-8, keeping ASCII as is.
func latin1(b []byte) string {
	if utf8.Valid(b) {
		return string(b)
	}
	r := make([]rune, len(b))
	for i, c := range b {
		r[i] = rune(c)
	}
	return string(r)
}
