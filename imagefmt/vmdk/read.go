package vmdk

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/vmmount/vmmount/imagefmt/internal/runs"
	"github.com/vmmount/vmmount/imagefmt/vdisk"
)

type extentKind uint8

const (
	extentFlat extentKind = iota
	extentSparse
	extentZero
)

// extent is one extent of the virtual disk: [start, start+size).
type extent struct {
	start, size int64
	kind        extentKind
	file        vdisk.File
	off         int64 // flat: byte offset of the extent in file
	sparse      *sparseExtent
}

// finish sets up the read path, the caches and the parent.
func (img *Image) finish(opts vdisk.OpenOptions) error {
	grain := int64(0)
	compressed := false
	for _, e := range img.extents {
		if e.kind == extentSparse {
			if grain == 0 {
				grain = e.sparse.grainSize
			}
			compressed = compressed || e.sparse.compressed
		}
	}
	img.info.ClusterSize = grain
	if compressed {
		img.info.Compression = "zlib"
		img.grainCache = runs.NewCache[grainKey, []byte](max(4, int(grainCacheBytes/grain)))
	}
	img.info.VirtualSize = img.size
	if d := img.desc; d != nil {
		img.info.UUID = fmt.Sprintf("%08x", d.CID)
		if d.ParentCID != NoParent {
			img.info.ParentUUID = fmt.Sprintf("%08x", d.ParentCID)
		}
		if d.ParentFileNameHint != "" {
			if err := img.openParent(d, opts); err != nil {
				return err
			}
		}
	}
	img.layer = runs.Layer{Name: img.name, Size: img.size, Mapper: runs.MapperFunc(img.mapAt), Backing: img.backing}
	return nil
}

// openParent opens the parent of a delta disk (spec "Delta Links"). A hint
// written on Windows is tried as given and then by its base name beside the
// child.
func (img *Image) openParent(d *Descriptor, opts vdisk.OpenOptions) error {
	hint := d.ParentFileNameHint
	img.info.BackingFilename = hint
	img.info.BackingFormat = "vmdk"
	if opts.NoBacking {
		return nil
	}
	if opts.OpenBacking == nil {
		return &vdisk.FormatError{Image: img.name, Off: -1, Msg: "delta disk needs its parent " + hint, Err: vdisk.ErrBackingMissing}
	}
	names := []string{hint}
	if s := strings.ReplaceAll(hint, `\`, "/"); s != hint || strings.Contains(s, "/") {
		if base := s[strings.LastIndex(s, "/")+1:]; base != "" && base != hint {
			names = append(names, base)
		}
	}
	var lastErr error
	for _, n := range names {
		p, err := opts.OpenBacking(vdisk.ResolveRelative(img.name, n), "vmdk")
		if errors.Is(err, vdisk.ErrBackingMissing) {
			lastErr = err
			continue
		}
		if err != nil {
			return fmt.Errorf("%s: parent %s: %w", img.name, n, err)
		}
		img.backing = p
		if pi, ok := p.(*Image); ok && pi.desc != nil && pi.desc.CID != d.ParentCID {
			img.info.Warnings = append(img.info.Warnings, fmt.Sprintf(
				"parent %s has CID %08x, the delta expects %08x: the parent changed after the delta was made", n, pi.desc.CID, d.ParentCID))
		}
		if p.Size() < img.size {
			img.info.Warnings = append(img.info.Warnings, fmt.Sprintf("parent %s is smaller than the delta", n))
		}
		return nil
	}
	return fmt.Errorf("%s: parent %s: %w", img.name, hint, lastErr)
}

func (img *Image) mapAt(off int64) (runs.Run, error) {
	i := sort.Search(len(img.extents), func(i int) bool { return img.extents[i].start+img.extents[i].size > off })
	if i == len(img.extents) {
		return runs.Run{}, fmt.Errorf("%s: offset %d past the last extent", img.name, off)
	}
	e := img.extents[i]
	rel := off - e.start
	left := e.size - rel
	switch e.kind {
	case extentZero:
		return runs.Run{Kind: runs.Zero, Len: left}, nil
	case extentFlat:
		return runs.Run{Kind: runs.Data, Len: left, File: e.file, Off: e.off + rel}, nil
	}
	r, err := e.sparse.mapAt(rel)
	if err != nil {
		return runs.Run{}, err
	}
	r.Len = min(r.Len, left)
	return r, nil
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

// Close closes the image, its extent files and its parent.
func (img *Image) Close() error {
	return errors.Join(img.closeExtras(), img.f.Close())
}

// ReadAt reads the virtual disk.
func (img *Image) ReadAt(p []byte, off int64) (int, error) { return img.layer.ReadAt(p, off) }

// Extents reports the allocation map.
func (img *Image) Extents(off, length int64) ([]vdisk.Extent, error) {
	return img.layer.Extents(off, length)
}
