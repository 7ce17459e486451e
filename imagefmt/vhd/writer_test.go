package vhd

import (
	"encoding/binary"
	"slices"
	"unicode/utf16"
)

// testDisk describes a dynamic or differencing VHD for buildVHD, the small
// writer the tests use to craft what qemu-img cannot make (differencing
// disks, odd block sizes, damaged headers).
type testDisk struct {
	size      int64 // virtual size, a multiple of 512
	blockSize uint32
	diskType  uint32
	creator   string // creator application, "win " by default
	uniqueID  [16]byte
	parentID  [16]byte
	// parentRel and parentAbs become W2ru and W2ku locators; parentName the
	// Parent Unicode Name.
	parentRel, parentAbs, parentName string
	// sectors holds the data of each written sector (512 bytes), keyed by
	// virtual sector number. A block holding any is allocated; only those
	// sectors have their bitmap bit set.
	sectors map[int64][]byte
}

func utf16Bytes(s string, bigEndian bool) []byte {
	u := utf16.Encode([]rune(s))
	b := make([]byte, 2*len(u))
	for i, c := range u {
		if bigEndian {
			binary.BigEndian.PutUint16(b[2*i:], c)
		} else {
			binary.LittleEndian.PutUint16(b[2*i:], c)
		}
	}
	return b
}

func (d *testDisk) footer() Footer {
	ft := Footer{
		Features: 2, FileFormatVersion: 0x00010000, DataOffset: FooterSize,
		CreatorVersion: 0x000a0000, OriginalSize: uint64(d.size), CurrentSize: uint64(d.size),
		Cylinders: 1, Heads: 16, SectorsPerTrack: 63, DiskType: d.diskType, UniqueID: d.uniqueID,
	}
	copy(ft.Cookie[:], FooterCookie)
	creator := d.creator
	if creator == "" {
		creator = "win "
	}
	copy(ft.CreatorApplication[:], creator)
	copy(ft.CreatorHostOS[:], "Wi2k")
	if d.diskType == TypeFixed {
		ft.DataOffset = NoOffset
	}
	return ft
}

// build returns the bytes of the VHD file.
func (d *testDisk) build() []byte {
	ft := d.footer()
	var foot [FooterSize]byte
	if d.diskType == TypeFixed {
		img := make([]byte, d.size+FooterSize)
		for s, data := range d.sectors {
			copy(img[s*SectorSize:], data)
		}
		ft.Encode(foot[:])
		copy(img[d.size:], foot[:])
		return img
	}
	bs := int64(d.blockSize)
	nblocks := (d.size + bs - 1) / bs
	batOff := int64(FooterSize + DynHeaderSize)
	batBytes := (nblocks*4 + 511) / 512 * 512
	pos := batOff + batBytes
	dyn := DynHeader{DataOffset: NoOffset, TableOffset: uint64(batOff), HeaderVersion: 0x00010000,
		MaxTableEntries: uint32(nblocks), BlockSize: d.blockSize, ParentUniqueID: d.parentID}
	copy(dyn.Cookie[:], DynHeaderCookie)
	copy(dyn.ParentUnicodeName[:], utf16Bytes(d.parentName, true))
	var locData [][]byte
	add := func(code uint32, data []byte) {
		space := (int64(len(data)) + 511) / 512 * 512
		dyn.ParentLocators[len(locData)] = ParentLocator{PlatformCode: code, PlatformDataSpace: uint32(space),
			PlatformDataLength: uint32(len(data)), PlatformDataOffset: uint64(pos)}
		padded := make([]byte, space)
		copy(padded, data)
		locData = append(locData, padded)
		pos += space
	}
	if d.parentRel != "" {
		add(PlatformW2ru, utf16Bytes(d.parentRel, false))
	}
	if d.parentAbs != "" {
		add(PlatformW2ku, utf16Bytes(d.parentAbs, false))
	}
	bat := make([]uint32, nblocks)
	for i := range bat {
		bat[i] = BATUnused
	}
	bmSize := BitmapSize(d.blockSize)
	type blk struct {
		bm, data []byte
	}
	blocks := map[int64]*blk{}
	var order []int64
	for s, data := range d.sectors {
		bi := s * SectorSize / bs
		b := blocks[bi]
		if b == nil {
			b = &blk{bm: make([]byte, bmSize), data: make([]byte, bs)}
			blocks[bi] = b
			order = append(order, bi)
		}
		in := s - bi*bs/SectorSize
		b.bm[in/8] |= 0x80 >> (in % 8)
		copy(b.data[in*SectorSize:], data)
	}
	// Lay blocks out in reverse order so file order differs from disk order.
	slices.Sort(order)
	img := make([]byte, pos)
	for i := len(order) - 1; i >= 0; i-- {
		b := blocks[order[i]]
		bat[order[i]] = uint32(int64(len(img)) / SectorSize)
		img = append(img, b.bm...)
		img = append(img, b.data...)
	}
	ft.Encode(foot[:])
	copy(img[0:], foot[:])
	dyn.Encode(img[FooterSize:])
	for i, e := range bat {
		binary.BigEndian.PutUint32(img[batOff+4*int64(i):], e)
	}
	for i := len(bat); int64(i)*4 < batBytes; i++ {
		binary.BigEndian.PutUint32(img[batOff+4*int64(i):], BATUnused)
	}
	for i, l := range locData {
		copy(img[dyn.ParentLocators[i].PlatformDataOffset:], l)
	}
	return append(img, foot[:]...)
}
