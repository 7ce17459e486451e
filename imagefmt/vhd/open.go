package vhd

import (
	"bytes"
	"errors"
	"fmt"
	"math/bits"

	"github.com/vmmount/vmmount/imagefmt/internal/runs"
	"github.com/vmmount/vmmount/imagefmt/vdisk"
)

// Limits on what an image may claim before we allocate or compute with it.
const (
	// MaxSectors is qemu's VHD_MAX_SECTORS: the spec's CHS geometry tops
	// out near 127 GiB, current sizes at 2040 GiB.
	MaxSectors = 0xff000000
	// maxBATEntries bounds the table held in memory (64 MiB): 32 TiB of
	// 2 MiB blocks, far above MaxSectors for any sane block size.
	maxBATEntries = 1 << 24
	// maxCHSSectors is the largest geometry, 65535/16/255; images that
	// reach it record their real size in Current Size (qemu does the same).
	maxCHSSectors = 65535 * 16 * 255
	// bitmapCacheBytes bounds the sector bitmaps cached for differencing
	// disks.
	bitmapCacheBytes = 4 << 20
)

// Image is an open VHD image.
type Image struct {
	f          vdisk.File
	name       string
	footer     Footer
	diskType   uint32
	size       int64
	dataEnd    int64 // fixed: end of the data in the file
	blockSize  int64
	bitmapSize int64
	batOffset  int64
	bat        []uint32
	badBlocks  int
	backing    vdisk.Image
	bitmaps    *runs.Cache[int64, []byte]
	layer      runs.Layer
	info       vdisk.Info
}

var _ vdisk.Image = (*Image)(nil)

func (img *Image) errAt(off int64, val any, format string, args ...any) error {
	return &vdisk.FormatError{Image: img.name, Off: off, Msg: fmt.Sprintf(format, args...), Val: val, Err: vdisk.ErrFormat}
}

// Open reads the image in f. The returned image owns f (and closes it);
// on error the caller still owns f.
func Open(f vdisk.File, opts vdisk.OpenOptions) (vdisk.Image, error) {
	name := opts.Name
	if name == "" {
		name = f.Name()
	}
	img := &Image{f: f, name: name}
	if err := img.open(opts); err != nil {
		if img.backing != nil {
			img.backing.Close()
		}
		return nil, err
	}
	return img, nil
}

func (img *Image) open(opts vdisk.OpenOptions) error {
	fileSize := img.f.Size()
	if fileSize < FooterSize {
		return img.errAt(0, fileSize, "file too small for a VHD footer")
	}
	if err := img.readFooter(fileSize); err != nil {
		return err
	}
	ft := &img.footer
	img.diskType = ft.DiskType
	subformat := ""
	switch ft.DiskType {
	case TypeFixed:
		subformat = "fixed"
	case TypeDynamic:
		subformat = "dynamic"
	case TypeDifferencing:
		subformat = "differencing"
	default:
		return &vdisk.FormatError{Image: img.name, Off: fileSize - FooterSize + 60, Msg: "unsupported VHD disk type", Val: ft.DiskType, Err: vdisk.ErrUnsupported}
	}

	sectors := int64(ft.Cylinders) * int64(ft.Heads) * int64(ft.SectorsPerTrack)
	if !usesCHS(ft.CreatorApplication) || sectors == maxCHSSectors {
		if ft.CurrentSize > MaxSectors*SectorSize {
			return img.errAt(48, ft.CurrentSize, "current size exceeds the VHD maximum of 2040 GiB")
		}
		sectors = int64(ft.CurrentSize / SectorSize)
	}
	if sectors > MaxSectors {
		return img.errAt(56, sectors, "CHS geometry exceeds the VHD maximum of 2040 GiB")
	}
	img.size = sectors * SectorSize

	img.info = vdisk.Info{
		Filename:       img.name,
		Format:         "vpc",
		Subformat:      subformat,
		VirtualSize:    img.size,
		FileSize:       fileSize,
		AllocatedBytes: runs.Allocated(img.f),
		UUID:           guidString(ft.UniqueID),
		Warnings:       img.info.Warnings,
	}
	if ft.SavedState != 0 {
		img.info.Warnings = append(img.info.Warnings, "the footer says the disk is in a saved state")
	}

	if ft.DiskType == TypeFixed {
		img.dataEnd = fileSize - FooterSize
		img.layer = runs.Layer{Name: img.name, Size: img.size, Mapper: runs.MapperFunc(img.mapFixed)}
		return nil
	}
	dyn, err := img.readDynamic(fileSize)
	if err != nil {
		return err
	}
	img.info.ClusterSize = img.blockSize
	if ft.DiskType == TypeDifferencing {
		img.info.ParentUUID = guidString(dyn.ParentUniqueID)
		n := max(1, bitmapCacheBytes/int(img.bitmapSize))
		img.bitmaps = runs.NewCache[int64, []byte](n)
		if err := img.openParent(dyn, opts); err != nil {
			return err
		}
	}
	img.layer = runs.Layer{Name: img.name, Size: img.size, Mapper: runs.MapperFunc(img.mapDynamic), Backing: img.backing}
	return nil
}

// usesCHS reports whether the creator sizes its disks by CHS geometry (Virtual
// PC, old qemu) rather than by Current Size (Hyper-V "win ", qemu force_size
// "qem2", disk2vhd "d2v ", XenConverter "CTXS", XenServer "tap\0"). qemu
// decides the same way, and so a read matches qemu-img's.
func usesCHS(creator [4]byte) bool {
	switch string(creator[:]) {
	case "win ", "qem2", "d2v ", "CTXS", "tap\x00":
		return false
	}
	return true
}

// readFooter takes the footer at the end of the file, or its copy at offset
// 0 when the end is damaged (a dynamic disk interrupted while growing).
func (img *Image) readFooter(fileSize int64) error {
	var end, start [FooterSize]byte
	if _, err := img.f.ReadAt(end[:], fileSize-FooterSize); err != nil {
		return fmt.Errorf("%s: reading footer: %w", img.name, err)
	}
	endOK := bytes.HasPrefix(end[:], []byte(FooterCookie))
	if endOK {
		ft := DecodeFooter(end[:])
		if ft.Checksum == Checksum(end[:], 64) {
			img.footer = ft
			return nil
		}
	}
	if _, err := img.f.ReadAt(start[:], 0); err != nil {
		return fmt.Errorf("%s: reading footer copy: %w", img.name, err)
	}
	startOK := bytes.HasPrefix(start[:], []byte(FooterCookie))
	if startOK {
		ft := DecodeFooter(start[:])
		if ft.Checksum == Checksum(start[:], 64) && ft.DiskType != TypeFixed {
			img.footer = ft
			img.info.Warnings = append(img.info.Warnings, "the footer at the end of the file is damaged; using its copy at offset 0")
			return nil
		}
	}
	switch {
	case endOK:
		img.footer = DecodeFooter(end[:])
	case startOK:
		img.footer = DecodeFooter(start[:])
	default:
		return img.errAt(fileSize-FooterSize, nil, "no VHD footer (\"conectix\") at the end or the start of the file")
	}
	// qemu only warns on a bad checksum; so do we, so that a disk with a
	// flipped bit in an unused footer field stays readable.
	img.info.Warnings = append(img.info.Warnings, "VHD footer checksum mismatch")
	return nil
}

func (img *Image) readDynamic(fileSize int64) (*DynHeader, error) {
	off := img.footer.DataOffset
	if off == NoOffset || off < FooterSize || off > uint64(fileSize-DynHeaderSize) {
		return nil, img.errAt(fileSize-FooterSize+16, off, "dynamic header offset outside the file")
	}
	var b [DynHeaderSize]byte
	if _, err := img.f.ReadAt(b[:], int64(off)); err != nil {
		return nil, fmt.Errorf("%s: reading dynamic header at %d: %w", img.name, off, err)
	}
	if !bytes.HasPrefix(b[:], []byte(DynHeaderCookie)) {
		return nil, img.errAt(int64(off), nil, "no dynamic disk header (\"cxsparse\")")
	}
	dyn := DecodeDynHeader(b[:])
	if dyn.Checksum != Checksum(b[:], 36) {
		img.info.Warnings = append(img.info.Warnings, "VHD dynamic header checksum mismatch")
	}
	hdr := int64(off)
	bs := dyn.BlockSize
	if bs < SectorSize || bits.OnesCount32(bs) != 1 {
		return nil, img.errAt(hdr+32, bs, "block size is not a power of two of at least 512")
	}
	img.blockSize = int64(bs)
	img.bitmapSize = BitmapSize(bs)
	need := (img.size + img.blockSize - 1) / img.blockSize
	if int64(dyn.MaxTableEntries) < need {
		return nil, img.errAt(hdr+28, dyn.MaxTableEntries, "block allocation table has fewer entries than the disk has blocks (%d)", need)
	}
	if need > maxBATEntries {
		return nil, &vdisk.FormatError{Image: img.name, Off: hdr + 28, Msg: fmt.Sprintf("%d blocks of %d bytes are more than vmmount holds in memory", need, bs), Err: vdisk.ErrUnsupported}
	}
	t := dyn.TableOffset
	if t < FooterSize || t > uint64(fileSize) || uint64(fileSize)-t < uint64(need)*4 {
		return nil, img.errAt(hdr+16, t, "block allocation table (%d entries) outside the file", need)
	}
	img.batOffset = int64(t)
	raw := make([]byte, need*4)
	if _, err := img.f.ReadAt(raw, img.batOffset); err != nil {
		return nil, fmt.Errorf("%s: reading block allocation table at %d: %w", img.name, t, err)
	}
	img.bat = make([]uint32, need)
	for i := range img.bat {
		e := uint32(raw[4*i])<<24 | uint32(raw[4*i+1])<<16 | uint32(raw[4*i+2])<<8 | uint32(raw[4*i+3])
		img.bat[i] = e
		if e != BATUnused && int64(e)*SectorSize+img.bitmapSize >= fileSize {
			img.badBlocks++
		}
	}
	if img.badBlocks > 0 {
		img.info.Warnings = append(img.info.Warnings, fmt.Sprintf("%d blocks point past the end of the file (truncated image?); reading them fails", img.badBlocks))
	}
	return &dyn, nil
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
	err := img.f.Close()
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

func guidString(u [16]byte) string {
	if u == ([16]byte{}) {
		return ""
	}
	return fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])
}
