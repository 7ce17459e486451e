package part

import (
	"encoding/binary"
	"hash/crc32"
	"unicode/utf16"
)

// Builders of crafted tables for tests and fuzz seeds. They write what the
// specifications describe, independently of the decoders under test.

type mbrPart struct {
	boot  uint8
	typ   uint8
	start uint32 // sectors
	size  uint32
}

// putMBR writes an MBR or EBR sector with signature at byte off of disk.
func putMBR(disk []byte, off int64, diskSig uint32, parts ...mbrPart) {
	s := disk[off : off+512]
	binary.LittleEndian.PutUint32(s[440:], diskSig)
	for i, p := range parts {
		e := s[446+16*i:]
		e[0] = p.boot
		e[4] = p.typ
		binary.LittleEndian.PutUint32(e[8:], p.start)
		binary.LittleEndian.PutUint32(e[12:], p.size)
	}
	s[510], s[511] = 0x55, 0xAA
}

type gptPart struct {
	index      int // entry index (partition number - 1)
	typ        [16]byte
	uuid       [16]byte
	first      uint64
	last       uint64
	attributes uint64
	name       string
}

var (
	guidLinux = [16]byte{0xaf, 0x3d, 0xc6, 0x0f, 0x83, 0x84, 0x72, 0x47, 0x8e, 0x79, 0x3d, 0x69, 0xd8, 0x47, 0x7d, 0xe4} // 0fc63daf-8483-4772-8e79-3d69d8477de4
	guidESP   = [16]byte{0x28, 0x73, 0x2a, 0xc1, 0x1f, 0xf8, 0xd2, 0x11, 0xba, 0x4b, 0x00, 0xa0, 0xc9, 0x3e, 0xc9, 0x3b} // c12a7328-f81f-11d2-ba4b-00a0c93ec93b
)

type gptSpec struct {
	ss         int64
	size       int64
	parts      []gptPart
	numEntries uint32 // default 128
	entrySize  uint32 // default 128
	noPMBR     bool
	hybrid     []mbrPart // extra MBR entries after the 0xEE one
}

// buildGPT makes a disk image with a protective MBR, a primary GPT at LBA 1
// with its entries at LBA 2, and the backup entries and header at the end,
// as UEFI 2.10 section 5.3 lays them out.
func buildGPT(spec gptSpec) []byte {
	ss := spec.ss
	if spec.numEntries == 0 {
		spec.numEntries = 128
	}
	if spec.entrySize == 0 {
		spec.entrySize = 128
	}
	disk := make([]byte, spec.size)
	last := uint64(spec.size/ss) - 1
	arr := make([]byte, int(spec.numEntries)*int(spec.entrySize))
	for _, p := range spec.parts {
		e := arr[p.index*int(spec.entrySize):]
		copy(e[0:], p.typ[:])
		copy(e[16:], p.uuid[:])
		binary.LittleEndian.PutUint64(e[32:], p.first)
		binary.LittleEndian.PutUint64(e[40:], p.last)
		binary.LittleEndian.PutUint64(e[48:], p.attributes)
		for i, c := range utf16.Encode([]rune(p.name)) {
			binary.LittleEndian.PutUint16(e[56+2*i:], c)
		}
	}
	arrSectors := (uint64(len(arr)) + uint64(ss) - 1) / uint64(ss)
	if !spec.noPMBR {
		size := uint32(min(last, 0xFFFFFFFF))
		putMBR(disk, 0, 0, append([]mbrPart{{typ: 0xEE, start: 1, size: size}}, spec.hybrid...)...)
	}
	header := func(my, alt, entryLBA uint64) {
		h := disk[int64(my)*ss:]
		copy(h, "EFI PART")
		binary.LittleEndian.PutUint32(h[8:], 0x00010000)
		binary.LittleEndian.PutUint32(h[12:], 92)
		binary.LittleEndian.PutUint64(h[24:], my)
		binary.LittleEndian.PutUint64(h[32:], alt)
		binary.LittleEndian.PutUint64(h[40:], 2+arrSectors)
		binary.LittleEndian.PutUint64(h[48:], last-1-arrSectors)
		copy(h[56:], []byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16})
		binary.LittleEndian.PutUint64(h[72:], entryLBA)
		binary.LittleEndian.PutUint32(h[80:], spec.numEntries)
		binary.LittleEndian.PutUint32(h[84:], spec.entrySize)
		binary.LittleEndian.PutUint32(h[88:], crc32.ChecksumIEEE(arr))
		binary.LittleEndian.PutUint32(h[16:], crc32.ChecksumIEEE(h[:92]))
		copy(disk[int64(entryLBA)*ss:], arr)
	}
	header(1, last, 2)
	header(last, 1, last-arrSectors)
	return disk
}

// fixHeaderCRC recomputes the CRC of the GPT header at byte off after a test
// changed a field.
func fixHeaderCRC(disk []byte, off int64) {
	h := disk[off:]
	binary.LittleEndian.PutUint32(h[16:], 0)
	binary.LittleEndian.PutUint32(h[16:], crc32.ChecksumIEEE(h[:92]))
}
