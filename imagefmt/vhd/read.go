package vhd

import (
	"fmt"

	"github.com/vmmount/vmmount/imagefmt/internal/runs"
)

// mapFixed: the file is the disk up to the footer. A geometry larger than
// the data (which no tool writes) reads as zeros past it.
func (img *Image) mapFixed(off int64) (runs.Run, error) {
	if off < img.dataEnd {
		return runs.Run{Kind: runs.Data, Len: img.dataEnd - off, File: img.f, Off: off}, nil
	}
	return runs.Run{Kind: runs.Zero, Len: img.size - off}, nil
}

// mapDynamic follows the block allocation table (spec "Block Allocation
// Table and Data Blocks"). Dynamic disks read an allocated block whole, as
// qemu does: the sector bitmap only matters to differencing disks, where a
// clear bit means the sector comes from the parent.
func (img *Image) mapDynamic(off int64) (runs.Run, error) {
	bi := off / img.blockSize
	in := off % img.blockSize
	left := img.blockSize - in
	e := img.bat[bi]
	if e == BATUnused {
		// Coalesce a stretch of unallocated blocks into one run; the scan
		// is bounded so a small read in a huge hole stays cheap.
		n := left
		for j := bi + 1; j < int64(len(img.bat)) && j < bi+4096 && img.bat[j] == BATUnused; j++ {
			n += img.blockSize
		}
		return runs.Run{Kind: runs.Backing, Len: n}, nil
	}
	base := int64(e) * SectorSize
	if base+img.bitmapSize >= img.f.Size() {
		return runs.Run{}, img.errAt(img.batOffset+4*bi, e, "block %d lies past the end of the file (size %d)", bi, img.f.Size())
	}
	data := base + img.bitmapSize
	if img.diskType != TypeDifferencing {
		return runs.Run{Kind: runs.Data, Len: left, File: img.f, Off: data + in}, nil
	}
	bm, err := img.bitmap(bi, base)
	if err != nil {
		return runs.Run{}, err
	}
	sec := in / SectorSize
	nsec := img.blockSize / SectorSize
	set := bitSet(bm, sec)
	end := sec + 1
	for end < nsec && bitSet(bm, end) == set {
		end++
	}
	n := end*SectorSize - in
	if set {
		return runs.Run{Kind: runs.Data, Len: n, File: img.f, Off: data + in}, nil
	}
	return runs.Run{Kind: runs.Backing, Len: n}, nil
}

// bitSet reads bit i of a sector bitmap; bit 0 is the most significant bit
// of byte 0 (as Virtual PC and blktap write it).
func bitSet(bm []byte, i int64) bool {
	return bm[i>>3]&(0x80>>(i&7)) != 0
}

func (img *Image) bitmap(bi, base int64) ([]byte, error) {
	if bm, ok := img.bitmaps.Get(bi); ok {
		return bm, nil
	}
	bm := make([]byte, img.bitmapSize)
	if _, err := img.f.ReadAt(bm, base); err != nil {
		return nil, fmt.Errorf("%s: reading sector bitmap of block %d at %d: %w", img.name, bi, base, err)
	}
	img.bitmaps.Put(bi, bm)
	return bm, nil
}
