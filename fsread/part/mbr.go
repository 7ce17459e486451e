package part

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"slices"
)

// maxEmptyLinks is the kernel's bound on EBR links followed without finding
// a data partition (msdos.c parse_extended: "if (++loopct > 100) return").
const maxEmptyLinks = 100

// isExtended reports the MBR types Linux follows as extended partitions
// (msdos.c is_extended_partition): DOS, Win98 LBA and Linux extended.
func isExtended(t uint8) bool { return t == 0x05 || t == 0x0F || t == 0x85 }

// mbrReader walks an MBR and its EBR chains the way Linux does
// (block/partitions/msdos.c, msdos_partition and parse_extended).
type mbrReader struct {
	r       io.ReaderAt
	size    int64
	ss      int64 // logical sector size in bytes
	name    string
	diskSig uint32
	t       *Table
	next    int // number of the next logical partition
}

func readMBR(r io.ReaderAt, size int64, m MBR, opts Options) *Table {
	ss := int64(opts.SectorSize)
	if ss == 0 {
		ss = 512
	}
	t := &Table{Scheme: "dos", SectorSize: int(ss), DiskID: fmt.Sprintf("%08x", m.DiskSignature)}
	mr := &mbrReader{r: r, size: size, ss: ss, name: opts.Name, diskSig: m.DiskSignature, t: t, next: 5}
	for i, e := range m.Entries {
		slot := i + 1
		start := int64(e.StartingLBA) * ss
		sz := int64(e.SizeInLBA) * ss
		if sz == 0 {
			// An empty slot keeps its number: the next primary is
			// still slot+1, logicals still start at 5.
			continue
		}
		if isExtended(e.OSType) {
			mr.add(Partition{Number: slot, Start: start, Size: sz, Extended: true,
				Type: mbrType(e.OSType), TypeName: mbrTypeName(e.OSType), Bootable: e.BootIndicator == 0x80})
			mr.parseExtended(start, sz)
			continue
		}
		mr.add(Partition{Number: slot, Start: start, Size: sz,
			Type: mbrType(e.OSType), TypeName: mbrTypeName(e.OSType), Bootable: e.BootIndicator == 0x80})
	}
	slices.SortFunc(t.Partitions, func(a, b Partition) int { return a.Number - b.Number })
	t.checkLayout()
	return t
}

// add records a partition, skipping one that starts past the end of the
// disk and truncating one that runs past it, as the kernel does
// (block/partitions/core.c blk_add_partition).
func (mr *mbrReader) add(p Partition) {
	if p.Number > MaxPartitions {
		return
	}
	if p.Start >= mr.size {
		mr.t.Warnings = append(mr.t.Warnings, fmt.Sprintf("partition %d starts at byte %d, past the end of the disk (%d bytes); skipped", p.Number, p.Start, mr.size))
		return
	}
	if p.Start+p.Size > mr.size {
		mr.t.Warnings = append(mr.t.Warnings, fmt.Sprintf("partition %d (%d bytes at byte %d) runs past the end of the disk; truncated to %d bytes", p.Number, p.Size, p.Start, mr.size-p.Start))
		p.Size = mr.size - p.Start
	}
	if mr.diskSig != 0 {
		p.UUID = fmt.Sprintf("%08x-%02x", mr.diskSig, p.Number)
	}
	mr.t.Partitions = append(mr.t.Partitions, p)
}

// parseExtended follows the EBR chain of the extended partition at
// [first, first+firstSize). Each EBR's data entries are relative to that EBR;
// its link to the next EBR is relative to the extended partition's start.
func (mr *mbrReader) parseExtended(first, firstSize int64) {
	this, thisSize := first, firstSize
	seen := map[int64]bool{}
	empty := 0
	buf := make([]byte, mbrSize)
	for {
		if empty++; empty > maxEmptyLinks {
			mr.warn("EBR chain of partition at byte %d: %d links without a partition; stopped", first, maxEmptyLinks)
			return
		}
		if mr.next > MaxPartitions {
			return
		}
		if seen[this] {
			// The kernel would repeat the same partitions up to its
			// limit; a loop is damage, and we stop at it.
			mr.warn("EBR chain loops back to the EBR at byte %d; logical partitions after %d ignored", this, mr.next-1)
			return
		}
		seen[this] = true
		if this+mbrSize > mr.size {
			mr.warn("EBR at byte %d is past the end of the disk; logical partitions from %d on are missing", this, mr.next)
			return
		}
		if err := readFull(mr.r, buf, this); err != nil {
			mr.warn("reading the EBR at byte %d: %v; logical partitions from %d on are missing", this, err, mr.next)
			return
		}
		if binary.LittleEndian.Uint16(buf[mbrSignatureOff:]) != 0xAA55 {
			mr.warn("EBR at byte %d has no 0x55AA signature; logical partitions from %d on are missing", this, mr.next)
			return
		}
		e := decodeMBR(buf).Entries
		// Data partitions first. The 3rd and 4th entries "sometimes contain
		// random garbage" (msdos.c) and count only when they fit.
		for i := range e {
			if e[i].SizeInLBA == 0 || isExtended(e[i].OSType) {
				continue
			}
			offs := int64(e[i].StartingLBA) * mr.ss
			sz := int64(e[i].SizeInLBA) * mr.ss
			pos := this + offs
			if i >= 2 && (offs+sz > thisSize || pos < first || pos+sz > first+firstSize) {
				continue
			}
			mr.add(Partition{Number: mr.next, Start: pos, Size: sz, Logical: true,
				Type: mbrType(e[i].OSType), TypeName: mbrTypeName(e[i].OSType), Bootable: e[i].BootIndicator == 0x80})
			empty = 0
			if mr.next++; mr.next > MaxPartitions {
				return
			}
		}
		// Then the first link to the next EBR.
		link := -1
		for i := range e {
			if e[i].SizeInLBA != 0 && isExtended(e[i].OSType) {
				link = i
				break
			}
		}
		if link < 0 {
			return
		}
		this = first + int64(e[link].StartingLBA)*mr.ss
		thisSize = int64(e[link].SizeInLBA) * mr.ss
	}
}

func (mr *mbrReader) warn(format string, args ...any) {
	mr.t.Warnings = append(mr.t.Warnings, fmt.Sprintf(format, args...))
}

// isFSBootSector reports a boot sector of a filesystem that spans the whole
// disk: NTFS and exFAT by their OEM names, FAT by a sane BIOS parameter
// block (the checks of libblkid's vfat probe and the kernel's fat_valid_media).
func isFSBootSector(b []byte) bool {
	if bytes.Equal(b[3:11], []byte("NTFS    ")) || bytes.Equal(b[3:11], []byte("EXFAT   ")) {
		return true
	}
	if b[0] != 0xEB && b[0] != 0xE9 {
		return false
	}
	bps := binary.LittleEndian.Uint16(b[11:])
	spc := b[13]
	reserved := binary.LittleEndian.Uint16(b[14:])
	fats := b[16]
	media := b[21]
	pow2 := func(v int) bool { return v > 0 && v&(v-1) == 0 }
	return bps >= 512 && bps <= 4096 && pow2(int(bps)) && pow2(int(spc)) &&
		reserved >= 1 && fats >= 1 && fats <= 4 && (media == 0xF0 || media >= 0xF8)
}
