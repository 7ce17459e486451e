package fsread

import (
	"encoding/binary"
	"fmt"
	"io"
	"strings"
)

// probeNTFS reads the volume serial (blkid's NTFS UUID) from the boot sector
// and the label from the $VOLUME_NAME attribute of MFT record 3 ($Volume).
// The first MFT records are contiguous from the MFT's first cluster
// ($MFTMirr mirrors them), so no runlist is needed for record 3.
func probeNTFS(r io.ReaderAt, size int64, boot []byte) probe {
	p := probe{typ: TypeNTFS, uuid: fmt.Sprintf("%016X", binary.LittleEndian.Uint64(boot[0x48:]))}
	bps := int64(binary.LittleEndian.Uint16(boot[0x0B:]))
	spcRaw := boot[0x0D]
	spc := int64(spcRaw)
	if spcRaw > 0x80 { // 2^(256-v) sectors for clusters over 64 KiB
		if 256-int(spcRaw) > 20 {
			return p
		}
		spc = 1 << (256 - int(spcRaw))
	}
	if bps < 256 || bps > 4096 || bps&(bps-1) != 0 || spc == 0 {
		return p
	}
	cluster := bps * spc
	var rec int64
	if c := int8(boot[0x40]); c < 0 {
		if -c < 9 || -c > 16 {
			return p
		}
		rec = 1 << -c
	} else {
		rec = int64(c) * cluster
	}
	mft := binary.LittleEndian.Uint64(boot[0x30:])
	if rec < 512 || rec > 64<<10 || mft > uint64(size/cluster) {
		return p
	}
	off := int64(mft)*cluster + 3*rec
	if off+rec > size {
		return p
	}
	b := make([]byte, rec)
	if n, _ := r.ReadAt(b, off); int64(n) < rec || string(b[:4]) != "FILE" {
		return p
	}
	// Undo the update sequence fixups: the last two bytes of every
	// sector hold the update sequence number, their real values are in
	// the array.
	usaOff := int(binary.LittleEndian.Uint16(b[4:]))
	usaCount := int(binary.LittleEndian.Uint16(b[6:]))
	if usaCount == 0 || usaOff+2*usaCount > len(b) || int64(usaCount-1)*512 > rec {
		return p
	}
	usn := b[usaOff : usaOff+2]
	for i := 1; i < usaCount; i++ {
		end := i*512 - 2
		if b[end] != usn[0] || b[end+1] != usn[1] {
			return p // torn record
		}
		copy(b[end:end+2], b[usaOff+2*i:])
	}
	for a := int(binary.LittleEndian.Uint16(b[0x14:])); a+24 <= len(b); {
		typ := binary.LittleEndian.Uint32(b[a:])
		length := int(binary.LittleEndian.Uint32(b[a+4:]))
		if typ == 0xFFFFFFFF || length < 24 || a+length > len(b) {
			break
		}
		if typ == 0x60 && b[a+8] == 0 { // $VOLUME_NAME, resident
			vlen := int(binary.LittleEndian.Uint32(b[a+0x10:]))
			voff := int(binary.LittleEndian.Uint16(b[a+0x14:]))
			if voff+vlen <= length {
				p.label = utf16String(b[a+voff : a+voff+vlen])
			}
			break
		}
		a += length
	}
	return p
}

// probeFAT recognizes a FAT12/16/32 boot sector (the BPB checks of
// libblkid's vfat probe) and reads the label from the root directory's
// volume label entry, falling back to the boot sector's, as blkid does.
// Only the first root directory cluster is searched; mkfs.vfat and Windows
// put the label entry first.
func probeFAT(r io.ReaderAt, size int64, b []byte) (probe, bool) {
	if len(b) < 512 || (b[0] != 0xEB && b[0] != 0xE9) || b[510] != 0x55 || b[511] != 0xAA {
		return probe{}, false
	}
	bps := int64(binary.LittleEndian.Uint16(b[11:]))
	spc := int64(b[13])
	reserved := int64(binary.LittleEndian.Uint16(b[14:]))
	fats := int64(b[16])
	rootEntries := int64(binary.LittleEndian.Uint16(b[17:]))
	media := b[21]
	fat16 := int64(binary.LittleEndian.Uint16(b[22:]))
	fat32 := int64(binary.LittleEndian.Uint32(b[36:]))
	pow2 := func(v int64) bool { return v > 0 && v&(v-1) == 0 }
	if bps < 512 || bps > 4096 || !pow2(bps) || !pow2(spc) || reserved == 0 || fats == 0 || fats > 4 || !(media == 0xF0 || media >= 0xF8) {
		return probe{}, false
	}
	p := probe{typ: TypeVFAT}
	var bootLabel []byte
	var serial uint32
	var rootOff, rootLen int64
	if fat16 == 0 {
		if fat32 == 0 {
			return probe{}, false
		}
		p.version = "FAT32"
		serial = binary.LittleEndian.Uint32(b[0x43:])
		bootLabel = b[0x47:0x52]
		rootCluster := int64(binary.LittleEndian.Uint32(b[0x2C:]))
		rootOff = (reserved + fats*fat32 + (rootCluster-2)*spc) * bps
		rootLen = min(spc*bps, 64<<10)
	} else {
		p.version = "FAT16" // blkid's FAT12/FAT16 split needs the cluster count
		serial = binary.LittleEndian.Uint32(b[0x27:])
		bootLabel = b[0x2B:0x36]
		rootOff = (reserved + fats*fat16) * bps
		rootLen = min(rootEntries*32, 64<<10)
	}
	p.uuid = fmt.Sprintf("%04X-%04X", serial>>16, serial&0xffff)
	if rootOff > 0 && rootLen > 0 && rootOff+rootLen <= size {
		dir := make([]byte, rootLen)
		if n, _ := r.ReadAt(dir, rootOff); int64(n) == rootLen {
			for i := 0; i+32 <= len(dir); i += 32 {
				e := dir[i : i+32]
				if e[0] == 0 {
					break
				}
				if e[0] == 0xE5 || e[11] == 0x0F || e[11]&0x08 == 0 {
					continue
				}
				p.label = fatLabel(e[:11])
				return p, true
			}
		}
	}
	if l := fatLabel(bootLabel); l != "NO NAME" {
		p.label = l
	}
	return p, true
}

func fatLabel(b []byte) string {
	b = []byte(strings.TrimRight(string(b), " \x00"))
	if len(b) > 0 && b[0] == 0x05 { // a name starting with 0xE5 is stored as 0x05
		b[0] = 0xE5
	}
	return latin1(b)
}
