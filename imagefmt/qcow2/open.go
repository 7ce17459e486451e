package qcow2

import (
	"errors"
	"fmt"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/vmmount/vmmount/imagefmt/vdisk"
)

// Image is an open qcow2 image, read-only, safe for concurrent use.
type Image struct {
	name     string
	f        vdisk.File // the image file
	data     vdisk.File // where guest clusters live: f or the external data file
	hdr      *ParsedHeader
	fileSize int64
	dataSize int64
	backing  vdisk.Image // nil without one (or with NoBacking)
	info     vdisk.Info
	meta     []metaRange // header, L1, refcount and snapshot tables, bitmap directory

	l1    *tableCache // chunks of l1ChunkEntries entries, keyed by chunk index
	l2    *tableCache // L2 tables keyed by host offset
	zc    *tableCache // decompressed clusters keyed by compressed offset
	cbufs sync.Pool   // *[]byte of two clusters, for compressed streams

	closeOnce sync.Once
	closeErr  error
}

var _ vdisk.Image = (*Image)(nil)

// Cache budgets. The L2 budget maps 64 GiB of guest disk with 64 KiB
// clusters; beyond that random reads miss, sequential reads do not care.
// They are per image: a chain of n layers holds at most n times this.
const (
	l2CacheBudget = 8 << 20
	l1CacheBudget = 1 << 20
	minL2Tables   = 4
	minZClusters  = 4
)

// Open reads the qcow2 image in f. The returned image owns f (and closes
// it); on error the caller keeps it. Backing and data files are opened
// through opts.
func Open(f vdisk.File, opts vdisk.OpenOptions) (*Image, error) {
	name := opts.Name
	if name == "" {
		name = f.Name()
	}
	size := f.Size()
	hdr, err := ParseHeader(f, size, name)
	if err != nil {
		return nil, err
	}
	cs := hdr.ClusterSize
	img := &Image{
		name:     name,
		f:        f,
		data:     f,
		hdr:      hdr,
		fileSize: size,
		dataSize: size,
		l1:       newTableCache(l1CacheBudget),
		l2:       newTableCache(max(l2CacheBudget, minL2Tables*cs)),
		zc:       newTableCache(minZClusters * cs),
	}
	img.cbufs.New = func() any { b := make([]byte, 2*cs); return &b }

	snaps, snapBytes, err := readSnapshots(f, size, hdr, name)
	if err != nil {
		return nil, err
	}
	bitmaps, bitmapBytes, err := readBitmapNames(f, size, hdr, name)
	if err != nil {
		return nil, err
	}
	roundUp := func(n int64) int64 { return (n + cs - 1) &^ (cs - 1) }
	img.meta = []metaRange{
		{0, cs, "header cluster"},
		{int64(hdr.L1TableOffset), int64(hdr.L1TableOffset) + roundUp(int64(hdr.L1Size)*8), "active L1 table"},
		{int64(hdr.RefcountTableOffset), int64(hdr.RefcountTableOffset) + int64(hdr.RefcountTableClusters)*cs, "refcount table"},
	}
	if snapBytes > 0 {
		img.meta = append(img.meta, metaRange{int64(hdr.SnapshotsOffset), int64(hdr.SnapshotsOffset) + roundUp(snapBytes), "snapshot table"})
	}
	if bitmapBytes > 0 {
		o := int64(hdr.Bitmaps.BitmapDirectoryOffset)
		img.meta = append(img.meta, metaRange{o, o + roundUp(bitmapBytes), "bitmap directory"})
	}

	// Close what we open here if a later step fails; f stays the caller's.
	ok := false
	defer func() {
		if !ok {
			img.closeOwned()
		}
	}()
	if hdr.HasDataFile {
		if opts.OpenFile == nil {
			return nil, unsupErr(name, -1, hdr.DataFile, "image stores its data in an external data file, which cannot be opened here")
		}
		dn := vdisk.ResolveRelative(name, hdr.DataFile)
		df, err := opts.OpenFile(dn)
		if err != nil {
			return nil, fmt.Errorf("%s: opening external data file %s: %w", name, dn, err)
		}
		img.data, img.dataSize = df, df.Size()
	}
	if hdr.BackingFile != "" && !opts.NoBacking {
		if opts.OpenBacking == nil {
			return nil, unsupErr(name, int64(hdr.BackingFileOffset), hdr.BackingFile, "image has a backing file, which cannot be opened here")
		}
		bn := vdisk.ResolveRelative(name, hdr.BackingFile)
		b, err := opts.OpenBacking(bn, hdr.BackingFormat)
		if err != nil {
			return nil, fmt.Errorf("%s: backing file %s: %w", name, bn, err)
		}
		img.backing = b
	}
	img.info = img.makeInfo(snaps, bitmaps)
	ok = true
	return img, nil
}

func (img *Image) makeInfo(snaps []vdisk.Snapshot, bitmaps []string) vdisk.Info {
	h := img.hdr
	in := vdisk.Info{
		Filename:        img.name,
		Format:          "qcow2",
		Version:         int(h.Version),
		VirtualSize:     h.VirtualSize,
		ClusterSize:     h.ClusterSize,
		Compression:     h.Compression,
		AllocatedBytes:  allocatedBytes(img.f),
		FileSize:        img.fileSize,
		BackingFilename: h.BackingFile,
		BackingFormat:   h.BackingFormat,
		DataFile:        h.DataFile,
		DataFileRaw:     h.DataFileRaw,
		Snapshots:       snaps,
		Dirty:           h.IncompatibleFeatures&IncompatDirty != 0,
		Corrupt:         h.IncompatibleFeatures&IncompatCorrupt != 0,
		BitmapNames:     bitmaps,
		Warnings:        append([]string(nil), h.Warnings...),
	}
	if h.ExtendedL2 {
		in.SubclusterSize = h.SubclusterSize
	}
	if img.data != img.f {
		in.AllocatedBytes += allocatedBytes(img.data)
	}
	if in.Dirty {
		in.Warnings = append(in.Warnings, "dirty bit set: refcounts may be stale (qemu-img check -r leaks repairs them); guest data reads normally")
	}
	if in.Corrupt {
		in.Warnings = append(in.Warnings, "corrupt bit set: qemu found inconsistent metadata in this image; run qemu-img check")
	}
	if img.backing != nil {
		in.Backing = img.backing.Info()
	}
	return in
}

// allocatedBytes is the space a file takes on the host.
func allocatedBytes(f vdisk.File) int64 {
	if of, ok := f.(*vdisk.OSFile); ok {
		var st unix.Stat_t
		if unix.Fstat(int(of.Fd()), &st) == nil {
			return st.Blocks * 512
		}
	}
	return f.Size()
}

// Size is the virtual size in bytes.
func (img *Image) Size() int64 { return img.hdr.VirtualSize }

// Info describes the image and its backing chain.
func (img *Image) Info() *vdisk.Info { return &img.info }

// Close closes the image file, the data file and the backing chain.
func (img *Image) Close() error {
	img.closeOnce.Do(func() {
		err := img.closeOwned()
		if e := img.f.Close(); err == nil {
			err = e
		}
		img.closeErr = err
	})
	return img.closeErr
}

// closeOwned closes what Open opened: the data file and the backing chain.
func (img *Image) closeOwned() error {
	var errs []error
	if img.data != nil && img.data != img.f {
		errs = append(errs, img.data.Close())
	}
	if img.backing != nil {
		errs = append(errs, img.backing.Close())
	}
	return errors.Join(errs...)
}

// Accessors for the writer (rw.go) and for tools that inspect layers.

// Header returns the validated header. Callers must not modify it.
func (img *Image) Header() *ParsedHeader { return img.hdr }

// File returns the image file.
func (img *Image) File() vdisk.File { return img.f }

// DataFile returns the file guest clusters live in: the external data file,
// or the image file.
func (img *Image) DataFile() vdisk.File { return img.data }

// Backing returns the opened backing image, nil without one.
func (img *Image) Backing() vdisk.Image { return img.backing }

// Name returns the image name used in errors.
func (img *Image) Name() string { return img.name }
