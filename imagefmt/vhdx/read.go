package vhdx

import (
	"encoding/binary"

	"github.com/vmmount/vmmount/imagefmt/internal/runs"
)

// batEntry returns BAT entry i, reading its page through the cache.
func (img *Image) batEntry(i int64) (uint64, error) {
	if i >= img.batEntries {
		return 0, img.errAt(img.batOff, i, "BAT entry %d beyond the BAT", i)
	}
	page := i / batPageEntries
	t, ok := img.batCache.Get(page)
	if !ok {
		n := min(batPageEntries, img.batEntries-page*batPageEntries)
		b := make([]byte, n*8)
		if err := img.read(b, img.batOff+page*batPageEntries*8, "BAT"); err != nil {
			return 0, err
		}
		t = make([]uint64, n)
		for j := range t {
			t[j] = binary.LittleEndian.Uint64(b[8*j:])
		}
		img.batCache.Put(page, t)
	}
	return t[i%batPageEntries], nil
}

// payloadIndex is the BAT index of payload block b: each chunk of
// chunkRatio payload entries is followed by its sector bitmap entry.
func (img *Image) payloadIndex(b int64) int64 { return b + b/img.chunkRatio }

// mapAt describes the run at virtual offset off by the state of its payload
// block (section 2.5.1.1).
func (img *Image) mapAt(off int64) (runs.Run, error) {
	blk := off / img.blockSize
	in := off % img.blockSize
	left := img.blockSize - in
	e, err := img.batEntry(img.payloadIndex(blk))
	if err != nil {
		return runs.Run{}, err
	}
	state, fo := BATEntry(e)
	switch state {
	case PayloadNotPresent:
		// Absent from a differencing disk: the parent has it. Absent from
		// a dynamic one: zeros, reported unallocated.
		return runs.Run{Kind: runs.Backing, Len: left + img.sameState(blk, state)}, nil
	case PayloadUndefined, PayloadZero, PayloadUnmapped, PayloadUnmappedV095:
		// The contents are zeros or undefined; qemu and Hyper-V read
		// zeros, and so does the guest.
		return runs.Run{Kind: runs.Zero, Len: left + img.sameState(blk, state)}, nil
	case PayloadFullyPresent:
		if fo < MiB || fo >= img.f.Size() {
			return runs.Run{}, img.errAt(img.batOff+8*img.payloadIndex(blk), fo, "block %d lies outside the file", blk)
		}
		return runs.Run{Kind: runs.Data, Len: left, File: img.f, Off: fo + in}, nil
	case PayloadPartiallyPresent:
		if !img.diff {
			return runs.Run{}, img.errAt(img.batOff+8*img.payloadIndex(blk), e, "partially present block %d in a disk without a parent", blk)
		}
		if fo < MiB || fo >= img.f.Size() {
			return runs.Run{}, img.errAt(img.batOff+8*img.payloadIndex(blk), fo, "block %d lies outside the file", blk)
		}
		return img.mapPartial(off, blk, in, fo)
	}
	return runs.Run{}, img.errAt(img.batOff+8*img.payloadIndex(blk), e, "reserved state %d of block %d", state, blk)
}

// sameState counts the bytes of the following blocks in the same state
// within blk's BAT page, so long holes are one run and a small read in one
// costs one page scan at most.
func (img *Image) sameState(blk int64, state uint8) int64 {
	page := img.payloadIndex(blk) / batPageEntries
	t, ok := img.batCache.Get(page)
	if !ok {
		return 0 // batEntry just loaded it; evicted meanwhile: no matter
	}
	payload := (img.size + img.blockSize - 1) / img.blockSize
	var n int64
	for b := blk + 1; b < payload; b++ {
		i := img.payloadIndex(b)
		if i/batPageEntries != page || i%batPageEntries >= int64(len(t)) {
			break
		}
		if s, _ := BATEntry(t[i%batPageEntries]); s != state && !(isZeroState(s) && isZeroState(state)) {
			break
		}
		n += img.blockSize
	}
	return n
}

func isZeroState(s uint8) bool {
	return s == PayloadUndefined || s == PayloadZero || s == PayloadUnmapped || s == PayloadUnmappedV095
}

// mapPartial follows the sector bitmap of a partially present block
// (section 2.4.2): bit i of the chunk's bitmap (bit 0 of byte 0 first) set
// means sector i is in this file.
func (img *Image) mapPartial(off, blk, in, fo int64) (runs.Run, error) {
	chunk := blk / img.chunkRatio
	sbIndex := chunk*(img.chunkRatio+1) + img.chunkRatio
	e, err := img.batEntry(sbIndex)
	if err != nil {
		return runs.Run{}, err
	}
	state, sbOff := BATEntry(e)
	if state != SBPresent || sbOff < MiB || sbOff > img.f.Size()-SectorBitmapSize {
		return runs.Run{}, img.errAt(img.batOff+8*sbIndex, e, "sector bitmap of chunk %d missing or outside the file", chunk)
	}
	ss := img.sectorSize
	first := off/ss - chunk*SectorsPerChunk // bit of the sector at off
	blockEnd := (blk+1)*img.blockSize/ss - chunk*SectorsPerChunk
	set, err := img.bit(sbOff, first)
	if err != nil {
		return runs.Run{}, err
	}
	end := first + 1
	for end < blockEnd {
		b, err := img.bit(sbOff, end)
		if err != nil {
			return runs.Run{}, err
		}
		if b != set {
			break
		}
		end++
	}
	n := (end+chunk*SectorsPerChunk)*ss - off
	if set {
		return runs.Run{Kind: runs.Data, Len: n, File: img.f, Off: fo + in}, nil
	}
	return runs.Run{Kind: runs.Backing, Len: n}, nil
}

func (img *Image) bit(sbOff, i int64) (bool, error) {
	byteOff := i / 8
	pageOff := sbOff + byteOff/bitmapPageBytes*bitmapPageBytes
	page, ok := img.sbCache.Get(pageOff)
	if !ok {
		page = make([]byte, bitmapPageBytes)
		if err := img.read(page, pageOff, "sector bitmap"); err != nil {
			return false, err
		}
		img.sbCache.Put(pageOff, page)
	}
	return page[byteOff%bitmapPageBytes]&(1<<(i%8)) != 0, nil
}
