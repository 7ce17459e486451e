package qcow2

import (
	"fmt"

	"github.com/vmmount/vmmount/imagefmt/vdisk"
)

// Allocation maps. LayerExtents is what this image alone holds; Extents
// adds what its backing chain holds under the unallocated ranges, the way
// `qemu-img map` reports a chain: a range belongs to the first layer that
// has it as data or zero; ranges no layer has (including those past the end
// of a smaller backing file) are Unallocated.

// clampRange checks and clamps [off, off+length) to the disk.
func (img *Image) clampRange(off, length int64) (int64, int64, error) {
	if off < 0 || length < 0 {
		return 0, 0, fmt.Errorf("%s: invalid range %d+%d", img.name, off, length)
	}
	size := img.hdr.VirtualSize
	if off >= size {
		return off, off, nil
	}
	end := size
	if length < size-off {
		end = off + length
	}
	return off, end, nil
}

// LayerExtents reports the allocation of [off, off+length) in this image
// only, ignoring its backing file: Data and Zero extents have layer 0,
// ranges the image does not hold are Unallocated (layer -1). Compressed
// clusters are Data. The backup code compares layers with it.
func (img *Image) LayerExtents(off, length int64) ([]vdisk.Extent, error) {
	off, end, err := img.clampRange(off, length)
	if err != nil {
		return nil, err
	}
	var out []vdisk.Extent
	c := newCursor()
	for pos := off; pos < end; {
		r, err := img.nextRun(&c, pos, end, false)
		if err != nil {
			return nil, err
		}
		e := vdisk.Extent{Off: pos, Len: r.n, Kind: vdisk.Data}
		switch r.kind {
		case segZero:
			e.Kind = vdisk.Zero
		case segUnallocated:
			e.Kind, e.Layer = vdisk.Unallocated, -1
		}
		out = appendExtent(out, e)
		pos += r.n
	}
	return out, nil
}

// Extents reports the allocation of [off, off+length) through the whole
// chain (vdisk.Image).
func (img *Image) Extents(off, length int64) ([]vdisk.Extent, error) {
	own, err := img.LayerExtents(off, length)
	if err != nil || img.backing == nil {
		return own, err
	}
	bsize := img.backing.Size()
	var out []vdisk.Extent
	for _, e := range own {
		if e.Kind != vdisk.Unallocated {
			out = appendExtent(out, e)
			continue
		}
		end := e.Off + e.Len
		if e.Off < bsize {
			sub, err := img.backing.Extents(e.Off, min(end, bsize)-e.Off)
			if err != nil {
				return nil, err
			}
			for _, s := range sub {
				if s.Layer >= 0 {
					s.Layer++
				}
				out = appendExtent(out, s)
			}
		}
		if end > bsize {
			start := max(e.Off, bsize)
			out = appendExtent(out, vdisk.Extent{Off: start, Len: end - start, Kind: vdisk.Unallocated, Layer: -1})
		}
	}
	return out, nil
}

// appendExtent appends e, merging it into the last extent when they touch
// and agree on kind and layer.
func appendExtent(out []vdisk.Extent, e vdisk.Extent) []vdisk.Extent {
	if e.Len <= 0 {
		return out
	}
	if n := len(out); n > 0 {
		l := &out[n-1]
		if l.Kind == e.Kind && l.Layer == e.Layer && l.Off+l.Len == e.Off {
			l.Len += e.Len
			return out
		}
	}
	return append(out, e)
}
