package vhdx

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"

	"github.com/vmmount/vmmount/imagefmt/internal/runs"
	"github.com/vmmount/vmmount/imagefmt/vdisk"
)

// Limits ([MS-VHDX] 2.6.2).
const (
	MinBlockSize   = 1 * MiB
	MaxBlockSize   = 256 * MiB
	MaxVirtualSize = 64 << 40 // 64 TiB
	// maxParentLocator bounds the parent locator item read into memory.
	maxParentLocator = 64 * KiB
	batPageEntries   = 4096 // BAT entries read and cached together (32 KiB)
	batCachePages    = 128  // 4 MiB of BAT
	bitmapPageBytes  = 4 * KiB
	bitmapCachePages = 256 // 1 MiB of sector bitmaps
)

// Image is an open VHDX image.
type Image struct {
	f          vdisk.File // the file, or the file seen through the replayed log
	raw        vdisk.File // the file itself
	name       string
	hdr        Header
	size       int64
	blockSize  int64
	sectorSize int64 // logical
	chunkRatio int64
	batOff     int64
	batEntries int64
	diff       bool
	backing    vdisk.Image
	batCache   *runs.Cache[int64, []uint64]
	sbCache    *runs.Cache[int64, []byte] // key: file offset of a bitmap page
	layer      runs.Layer
	info       vdisk.Info
}

var _ vdisk.Image = (*Image)(nil)

func (img *Image) errAt(off int64, val any, format string, args ...any) error {
	return &vdisk.FormatError{Image: img.name, Off: off, Msg: fmt.Sprintf(format, args...), Val: val, Err: vdisk.ErrFormat}
}

func (img *Image) unsupported(off int64, val any, format string, args ...any) error {
	return &vdisk.FormatError{Image: img.name, Off: off, Msg: fmt.Sprintf(format, args...), Val: val, Err: vdisk.ErrUnsupported}
}

// Open reads the image in f. The returned image owns f (and closes it); on
// error the caller still owns f.
func Open(f vdisk.File, opts vdisk.OpenOptions) (vdisk.Image, error) {
	name := opts.Name
	if name == "" {
		name = f.Name()
	}
	img := &Image{f: f, raw: f, name: name}
	if err := img.open(opts); err != nil {
		if img.backing != nil {
			img.backing.Close()
		}
		return nil, err
	}
	return img, nil
}

// read reads exactly len(b) bytes at off of the (replayed) file.
func (img *Image) read(b []byte, off int64, what string) error {
	if off < 0 || off > img.f.Size() || img.f.Size()-off < int64(len(b)) {
		return img.errAt(off, len(b), "%s (%d bytes) lies past the end of the file", what, len(b))
	}
	if _, err := img.f.ReadAt(b, off); err != nil {
		return fmt.Errorf("%s: reading %s at %d: %w", img.name, what, off, err)
	}
	return nil
}

func (img *Image) open(opts vdisk.OpenOptions) error {
	fileSize := img.f.Size()
	var sig [8]byte
	if fileSize < RegionTable2Offset+RegionTableSize {
		return img.errAt(0, fileSize, "file too small for VHDX headers")
	}
	if err := img.read(sig[:], 0, "file identifier"); err != nil {
		return err
	}
	if string(sig[:]) != FileSignature {
		return img.errAt(0, nil, "no VHDX file identifier (\"vhdxfile\")")
	}
	img.info = vdisk.Info{Filename: img.name, Format: "vhdx", FileSize: fileSize, AllocatedBytes: runs.Allocated(img.raw)}
	if err := img.readHeaders(); err != nil {
		return err
	}
	if !img.hdr.LogGUID.IsZero() {
		if err := img.replayLog(); err != nil {
			return err
		}
	}
	bat, meta, err := img.readRegions()
	if err != nil {
		return err
	}
	if err := img.readMetadata(meta, opts); err != nil {
		return err
	}
	if err := img.setupBAT(bat); err != nil {
		return err
	}
	img.batCache = runs.NewCache[int64, []uint64](batCachePages)
	img.sbCache = runs.NewCache[int64, []byte](bitmapCachePages)
	img.layer = runs.Layer{Name: img.name, Size: img.size, Mapper: runs.MapperFunc(img.mapAt), Backing: img.backing}
	return nil
}

// readHeaders picks the valid header with the highest sequence number
// (section 2.2.2.1: a header is valid when its signature and checksum are).
func (img *Image) readHeaders() error {
	var best *Header
	var bestOff int64
	for _, off := range []int64{Header1Offset, Header2Offset} {
		b := make([]byte, HeaderSize)
		if err := img.read(b, off, "header"); err != nil {
			return err
		}
		h := DecodeHeader(b)
		if string(h.Signature[:]) != HeaderSignature || h.Checksum != Checksum(b, 4) {
			continue
		}
		if best == nil || h.SequenceNumber > best.SequenceNumber {
			best, bestOff = &h, off
		}
	}
	if best == nil {
		return img.errAt(Header1Offset, nil, "neither VHDX header is valid (signature or CRC-32C)")
	}
	if best.Version != 1 {
		return img.unsupported(bestOff+66, best.Version, "unsupported VHDX version")
	}
	img.hdr = *best
	return nil
}

// readRegions reads the region table (section 2.2.3), the second copy when
// the first is damaged, and returns the BAT and metadata regions.
func (img *Image) readRegions() (bat, meta RegionEntry, err error) {
	var entries []RegionEntry
	var tableOff int64 = -1
	for _, off := range []int64{RegionTable1Offset, RegionTable2Offset} {
		b := make([]byte, RegionTableSize)
		if err := img.read(b, off, "region table"); err != nil {
			return bat, meta, err
		}
		count, es := DecodeRegionTable(b)
		if string(b[0:4]) != RegionSignature || binary.LittleEndian.Uint32(b[4:]) != Checksum(b, 4) || count > MaxRegionEntries {
			continue
		}
		entries, tableOff = es, off
		if off != RegionTable1Offset {
			img.info.Warnings = append(img.info.Warnings, "the first region table is damaged; using the second")
		}
		break
	}
	if tableOff < 0 {
		return bat, meta, img.errAt(RegionTable1Offset, nil, "neither region table is valid (signature or CRC-32C)")
	}
	var haveBAT, haveMeta bool
	for i, r := range entries {
		at := tableOff + 16 + int64(i)*RegionEntrySize
		switch r.GUID {
		case RegionBAT:
			bat, haveBAT = r, true
		case RegionMetadata:
			meta, haveMeta = r, true
		default:
			if r.Required&1 != 0 {
				return bat, meta, img.unsupported(at, r.GUID, "unknown required region")
			}
			continue
		}
		if r.FileOffset < MiB || r.FileOffset%MiB != 0 || r.Length%MiB != 0 || r.Length == 0 ||
			r.FileOffset > uint64(img.f.Size()) || uint64(img.f.Size())-r.FileOffset < uint64(r.Length) {
			return bat, meta, img.errAt(at, r.FileOffset, "region (%d bytes) misplaced or outside the file", r.Length)
		}
	}
	if !haveBAT || !haveMeta {
		return bat, meta, img.errAt(tableOff, nil, "region table lacks the BAT or the metadata region")
	}
	return bat, meta, nil
}

// readMetadata reads the metadata items (section 2.6).
func (img *Image) readMetadata(meta RegionEntry, opts vdisk.OpenOptions) error {
	base := int64(meta.FileOffset)
	tb := make([]byte, min(MetadataTableSize, int64(meta.Length)))
	if err := img.read(tb, base, "metadata table"); err != nil {
		return err
	}
	if string(tb[0:8]) != MetadataSignature {
		return img.errAt(base, nil, "no metadata table signature")
	}
	count, entries := DecodeMetadataTable(tb)
	if count > MaxMetadataEntries || int64(count)*MetadataEntrySize+32 > int64(len(tb)) {
		return img.errAt(base+10, count, "bad metadata entry count")
	}
	items := map[GUID][]byte{}
	itemOff := map[GUID]int64{}
	for i, e := range entries {
		at := base + 32 + int64(i)*MetadataEntrySize
		known := e.ItemID == MetaFileParameters || e.ItemID == MetaVirtualDiskSize || e.ItemID == MetaVirtualDiskID ||
			e.ItemID == MetaLogicalSector || e.ItemID == MetaPhysicalSector || e.ItemID == MetaParentLocator
		if !known {
			if e.Flags&MetaIsRequired != 0 {
				return img.unsupported(at, e.ItemID, "unknown required metadata item")
			}
			continue
		}
		if e.Length == 0 || e.Length > maxParentLocator || e.Offset < MetadataTableSize || uint64(e.Offset)+uint64(e.Length) > uint64(meta.Length) {
			return img.errAt(at, e.Offset, "metadata item %s (%d bytes) outside the metadata region", e.ItemID, e.Length)
		}
		b := make([]byte, e.Length)
		if err := img.read(b, base+int64(e.Offset), "metadata item"); err != nil {
			return err
		}
		items[e.ItemID], itemOff[e.ItemID] = b, base+int64(e.Offset)
	}
	need := func(id GUID, n int, what string) ([]byte, error) {
		b, ok := items[id]
		if !ok {
			return nil, img.errAt(base, nil, "metadata lacks the %s item", what)
		}
		if len(b) < n {
			return nil, img.errAt(itemOff[id], len(b), "metadata item %s too short", what)
		}
		return b, nil
	}
	le := binary.LittleEndian
	fp, err := need(MetaFileParameters, 8, "file parameters")
	if err != nil {
		return err
	}
	vs, err := need(MetaVirtualDiskSize, 8, "virtual disk size")
	if err != nil {
		return err
	}
	ls, err := need(MetaLogicalSector, 4, "logical sector size")
	if err != nil {
		return err
	}
	ps, err := need(MetaPhysicalSector, 4, "physical sector size")
	if err != nil {
		return err
	}
	id, err := need(MetaVirtualDiskID, 16, "virtual disk id")
	if err != nil {
		return err
	}
	bs, flags := le.Uint32(fp), le.Uint32(fp[4:])
	if bs < MinBlockSize || bs > MaxBlockSize || bits.OnesCount32(bs) != 1 {
		return img.errAt(itemOff[MetaFileParameters], bs, "block size is not a power of two from 1 MiB to 256 MiB")
	}
	img.blockSize = int64(bs)
	img.diff = flags&HasParent != 0
	lss := le.Uint32(ls)
	if lss != 512 && lss != 4096 {
		return img.errAt(itemOff[MetaLogicalSector], lss, "logical sector size is neither 512 nor 4096")
	}
	if pss := le.Uint32(ps); pss != 512 && pss != 4096 {
		return img.errAt(itemOff[MetaPhysicalSector], pss, "physical sector size is neither 512 nor 4096")
	}
	img.sectorSize = int64(lss)
	size := le.Uint64(vs)
	if size == 0 || size > MaxVirtualSize || size%uint64(lss) != 0 {
		return img.errAt(itemOff[MetaVirtualDiskSize], size, "virtual disk size is 0, above 64 TiB or not a multiple of the sector size")
	}
	img.size = int64(size)
	img.chunkRatio = SectorsPerChunk * img.sectorSize / img.blockSize

	var diskID GUID
	copy(diskID[:], id)
	img.info.VirtualSize = img.size
	img.info.ClusterSize = img.blockSize
	img.info.LogicalBlock = int(lss)
	img.info.UUID = diskID.String()
	switch {
	case img.diff:
		img.info.Subformat = "differencing"
	case flags&LeaveBlockAllocated != 0:
		img.info.Subformat = "fixed"
	default:
		img.info.Subformat = "dynamic"
	}
	if img.diff {
		loc, ok := items[MetaParentLocator]
		if !ok {
			return img.errAt(base, nil, "differencing disk without a parent locator")
		}
		return img.openParent(loc, itemOff[MetaParentLocator], opts)
	}
	return nil
}

// setupBAT checks the BAT region holds an entry for every block (section
// 2.5: payload entries interleaved with one sector bitmap entry per chunk).
func (img *Image) setupBAT(bat RegionEntry) error {
	payload := (img.size + img.blockSize - 1) / img.blockSize
	var total int64
	if img.diff {
		total = (payload + img.chunkRatio - 1) / img.chunkRatio * (img.chunkRatio + 1)
	} else {
		total = payload + (payload-1)/img.chunkRatio
	}
	if int64(bat.Length)/8 < total {
		return img.errAt(int64(bat.FileOffset), bat.Length, "BAT region too small for %d entries", total)
	}
	img.batOff = int64(bat.FileOffset)
	img.batEntries = int64(bat.Length) / 8
	return nil
}

// Size returns the virtual size.
func (img *Image) Size() int64 { return img.size }

// Info describes the image and its chain.
func (img *Image) Info() *vdisk.Info {
	info := img.info
	if img.backing != nil {
		info.Backing = img.backing.Info()
	}
	return &info
}

// Close closes the file and the parent.
func (img *Image) Close() error {
	err := img.raw.Close()
	if img.backing != nil {
		err = errors.Join(err, img.backing.Close())
	}
	return err
}

// ReadAt reads the virtual disk.
func (img *Image) ReadAt(p []byte, off int64) (int, error) { return img.layer.ReadAt(p, off) }

// Extents reports the allocation map.
func (img *Image) Extents(off, length int64) ([]vdisk.Extent, error) {
	return img.layer.Extents(off, length)
}
