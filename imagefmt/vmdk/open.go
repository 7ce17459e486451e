package vmdk

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"github.com/vmmount/vmmount/imagefmt/internal/runs"
	"github.com/vmmount/vmmount/imagefmt/vdisk"
)

// Cache bounds per image.
const (
	gtCacheTables    = 512     // 512 tables of 512 entries: 1 MiB
	grainCacheBytes  = 8 << 20 // decompressed stream-optimized grains
	maxVirtualSize   = 1 << 62 // bytes; capacities are checked against it
	embeddedDescSize = MaxDescriptorSize
)

// Image is an open VMDK image.
type Image struct {
	f          vdisk.File
	name       string
	desc       *Descriptor
	extents    []*extent
	size       int64
	files      []vdisk.File // extent files we opened (not f)
	backing    vdisk.Image
	gtCache    *runs.Cache[gtKey, []byte]
	grainCache *runs.Cache[grainKey, []byte]
	layer      runs.Layer
	info       vdisk.Info
}

var _ vdisk.Image = (*Image)(nil)

func (img *Image) errf(off int64, err error, format string, args ...any) error {
	return &vdisk.FormatError{Image: img.name, Off: off, Msg: fmt.Sprintf(format, args...), Err: err}
}

// Open reads the image in f: a sparse extent with its embedded descriptor,
// or a text descriptor naming extent files. The returned image owns f (and
// closes it); on error the caller still owns f.
func Open(f vdisk.File, opts vdisk.OpenOptions) (vdisk.Image, error) {
	name := opts.Name
	if name == "" {
		name = f.Name()
	}
	img := &Image{f: f, name: name}
	img.gtCache = runs.NewCache[gtKey, []byte](gtCacheTables)
	if err := img.open(opts); err != nil {
		img.closeExtras()
		return nil, err
	}
	return img, nil
}

func (img *Image) closeExtras() error {
	var errs []error
	for _, x := range img.files {
		errs = append(errs, x.Close())
	}
	img.files = nil
	if img.backing != nil {
		errs = append(errs, img.backing.Close())
		img.backing = nil
	}
	return errors.Join(errs...)
}

func (img *Image) open(opts vdisk.OpenOptions) error {
	var magic [4]byte
	if n, err := img.f.ReadAt(magic[:], 0); n < 4 {
		return img.errf(0, vdisk.ErrFormat, "file too small for a VMDK (%v)", err)
	}
	img.info = vdisk.Info{Filename: img.name, Format: "vmdk", FileSize: img.f.Size(), AllocatedBytes: runs.Allocated(img.f)}
	switch string(magic[:]) {
	case MagicKDMV:
		s, err := openKDMV(img.f, img.name)
		if err != nil {
			return err
		}
		h := s.header
		var descText string
		if h.DescriptorOffset > 0 && h.DescriptorSize > 0 {
			descText, err = img.readText(int64(h.DescriptorOffset)*SectorSize, int64(h.DescriptorSize)*SectorSize)
			if err != nil {
				return err
			}
		}
		if h.Capacity == 0 {
			// A sparse header that only carries a descriptor naming other
			// extents (qemu accepts it too).
			if descText == "" {
				return img.errf(12, vdisk.ErrFormat, "sparse extent of capacity 0 without a descriptor")
			}
			return img.openDescriptor(descText, opts)
		}
		if descText != "" {
			d, err := ParseDescriptor(descText)
			if err != nil {
				return img.errf(int64(h.DescriptorOffset)*SectorSize, vdisk.ErrFormat, "embedded descriptor: %v", err)
			}
			img.desc = d
		}
		sub := "monolithicSparse"
		if s.compressed {
			sub = "streamOptimized"
		}
		if img.desc != nil && img.desc.CreateType != "" {
			sub = img.desc.CreateType
		}
		img.info.Subformat = sub
		img.addSparse(s)
	case MagicCOWD:
		s, err := openCOWD(img.f, img.name)
		if err != nil {
			return err
		}
		img.info.Subformat = "vmfsSparse"
		img.addSparse(s)
	default:
		size := img.f.Size()
		if size > MaxDescriptorSize {
			return img.errf(0, vdisk.ErrFormat, "not a sparse extent, and too large (%d bytes) for a descriptor", size)
		}
		text, err := img.readText(0, size)
		if err != nil {
			return err
		}
		if err := img.openDescriptor(text, opts); err != nil {
			return err
		}
	}
	return img.finish(opts)
}

// readText reads a descriptor of n bytes at off, bounded.
func (img *Image) readText(off, n int64) (string, error) {
	if n > embeddedDescSize {
		n = embeddedDescSize
	}
	if off >= img.f.Size() {
		return "", img.errf(off, vdisk.ErrFormat, "descriptor outside the file")
	}
	n = min(n, img.f.Size()-off)
	b := make([]byte, n)
	if _, err := img.f.ReadAt(b, off); err != nil && err != io.EOF {
		return "", fmt.Errorf("%s: reading descriptor: %w", img.name, err)
	}
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(b), nil
}

func (img *Image) addSparse(s *sparseExtent) {
	s.img = img
	s.index = len(img.extents)
	img.extents = append(img.extents, &extent{start: img.size, size: s.capacity, kind: extentSparse, sparse: s, file: s.f})
	img.size += s.capacity
}

// createTypes names the variants of the descriptor's createType (spec
// "Disk Database" and VMware's list): readable ones map to true, known ones
// we refuse give the reason.
var createTypes = map[string]string{
	"monolithicSparse": "", "monolithicFlat": "", "twoGbMaxExtentSparse": "", "twoGbMaxExtentFlat": "",
	"streamOptimized": "", "vmfs": "", "vmfsSparse": "", "vmfsThin": "", "vmfsPreallocated": "",
	"vmfsEagerZeroedThick": "",
	"vmfsRaw":              "raw device mapping", "vmfsRawDeviceMap": "raw device mapping",
	"vmfsPassthroughRawDeviceMap": "raw device mapping", "fullDevice": "host device", "partitionedDevice": "host device",
	"seSparse": "SE sparse", "vsanSparse": "vSAN sparse",
}

func (img *Image) openDescriptor(text string, opts vdisk.OpenOptions) error {
	d, err := ParseDescriptor(text)
	if err != nil {
		return img.errf(0, vdisk.ErrFormat, "descriptor: %v", err)
	}
	img.desc = d
	why, known := createTypes[d.CreateType]
	if !known {
		return img.errf(-1, vdisk.ErrUnsupported, "unsupported VMDK createType %q", d.CreateType)
	}
	if why != "" {
		return img.errf(-1, vdisk.ErrUnsupported, "VMDK createType %q (%s) is not supported", d.CreateType, why)
	}
	img.info.Subformat = d.CreateType
	if len(d.Extents) == 0 {
		return img.errf(-1, vdisk.ErrFormat, "descriptor lists no extents")
	}
	for _, e := range d.Extents {
		if err := img.openExtent(e, opts); err != nil {
			return err
		}
		if img.size > maxVirtualSize {
			return img.errf(-1, vdisk.ErrFormat, "extents add up to more than 2^62 bytes")
		}
	}
	return nil
}

func (img *Image) openExtent(e ExtentLine, opts vdisk.OpenOptions) error {
	where := fmt.Sprintf("descriptor line %d", e.Line)
	if e.Access == "NOACCESS" {
		return img.errf(-1, vdisk.ErrUnsupported, "%s: NOACCESS extents are not supported", where)
	}
	if e.Sectors > maxVirtualSize/SectorSize {
		return img.errf(-1, vdisk.ErrFormat, "%s: extent of %d sectors", where, e.Sectors)
	}
	size := e.Sectors * SectorSize
	switch e.Type {
	case "ZERO":
		img.extents = append(img.extents, &extent{start: img.size, size: size, kind: extentZero})
		img.size += size
		return nil
	case "FLAT", "VMFS", "SPARSE", "VMFSSPARSE":
	case "SESPARSE":
		return img.errf(-1, vdisk.ErrUnsupported, "%s: SE sparse extents are not supported", where)
	case "VMFSRDM", "VMFSRAW":
		return img.errf(-1, vdisk.ErrUnsupported, "%s: raw device mapping extents are not supported", where)
	default:
		return img.errf(-1, vdisk.ErrUnsupported, "%s: unknown extent type %q", where, e.Type)
	}
	f, path, err := img.openExtentFile(e.FileName, where, opts)
	if err != nil {
		return err
	}
	img.info.ExtraFiles = append(img.info.ExtraFiles, path)
	if e.Type == "FLAT" || e.Type == "VMFS" {
		if e.Offset > maxVirtualSize/SectorSize {
			return img.errf(-1, vdisk.ErrFormat, "%s: flat extent offset %d", where, e.Offset)
		}
		off := e.Offset * SectorSize
		if off+size > f.Size() {
			img.info.Warnings = append(img.info.Warnings, fmt.Sprintf("flat extent %s is %d bytes, shorter than the %d the descriptor gives it; the rest reads as zeros", e.FileName, f.Size(), off+size))
		}
		img.extents = append(img.extents, &extent{start: img.size, size: size, kind: extentFlat, file: f, off: off})
		img.size += size
		return nil
	}
	var magic [4]byte
	f.ReadAt(magic[:], 0)
	var s *sparseExtent
	switch string(magic[:]) {
	case MagicKDMV:
		s, err = openKDMV(f, path)
	case MagicCOWD:
		s, err = openCOWD(f, path)
	default:
		return img.errf(-1, vdisk.ErrFormat, "%s: extent %s is not a sparse extent (no KDMV or COWD magic)", where, e.FileName)
	}
	if err != nil {
		return err
	}
	if s.capacity == 0 {
		return img.errf(-1, vdisk.ErrFormat, "%s: sparse extent %s has no capacity", where, e.FileName)
	}
	// The descriptor's size rules (qemu uses the header's; they agree in
	// every image tools write). Grains past the header's capacity are
	// unallocated.
	s.capacity = size
	img.addSparse(s)
	return nil
}

// openExtentFile opens an extent named by the descriptor. Names must stay
// inside the descriptor's directory: a descriptor is data from the guest's
// side, and "/etc/shadow" or "../../dev/sda" as an extent would let it read
// the host.
func (img *Image) openExtentFile(name, where string, opts vdisk.OpenOptions) (vdisk.File, string, error) {
	if name == "" {
		return nil, "", img.errf(-1, vdisk.ErrFormat, "%s: extent without a file name", where)
	}
	if !filepath.IsLocal(name) || strings.ContainsRune(name, 0) {
		return nil, "", img.errf(-1, vdisk.ErrUnsupported, "%s: extent file %q is outside the descriptor's directory", where, name)
	}
	path := vdisk.ResolveRelative(img.name, name)
	if filepath.Clean(path) == filepath.Clean(img.name) {
		return nil, "", img.errf(-1, vdisk.ErrFormat, "%s: extent file %q is the descriptor itself", where, name)
	}
	if opts.OpenFile == nil {
		return nil, "", img.errf(-1, vdisk.ErrUnsupported, "%s: cannot open extent file %q here", where, name)
	}
	f, err := opts.OpenFile(path)
	if err != nil {
		return nil, "", fmt.Errorf("%s: %s: extent file: %w", img.name, where, err)
	}
	img.files = append(img.files, f)
	if of, ok := f.(*vdisk.OSFile); ok {
		if st, err := of.Stat(); err == nil && !st.Mode().IsRegular() {
			return nil, "", img.errf(-1, vdisk.ErrUnsupported, "%s: extent file %q is not a regular file", where, name)
		}
	}
	img.info.AllocatedBytes += runs.Allocated(f)
	return f, path, nil
}
