package ext

import (
	"errors"
	"fmt"
	"io"
	"sort"
)

// device reads the volume: the image bytes with, after a journal replay,
// the overlay of blocks the journal holds newer copies of. Nothing is ever
// written to the image.
type device struct {
	r    io.ReaderAt
	size int64
	bs   int64
	ov   *overlay // nil when no journal was replayed
}

// overlay maps volume blocks to the physical block that holds their
// replayed content (a block inside the journal), with jbd2's escape flag:
// an escaped block had its first four bytes (the jbd2 magic) zeroed in the
// log and gets them back on read.
type overlay struct {
	src  map[uint64]ovBlock
	keys []uint64 // sorted, for range checks on large reads
}

type ovBlock struct {
	phys    uint64
	escaped bool
}

var jbd2Magic = [4]byte{0xC0, 0x3B, 0x39, 0x98}

func newOverlay(src map[uint64]ovBlock) *overlay {
	o := &overlay{src: src, keys: make([]uint64, 0, len(src))}
	for k := range src {
		o.keys = append(o.keys, k)
	}
	sort.Slice(o.keys, func(i, j int) bool { return o.keys[i] < o.keys[j] })
	return o
}

// errOutside is wrapped by reads past the end of the volume.
var errOutside = errors.New("beyond the end of the volume")

// readAt fills p from volume byte offset off, exactly or with an error.
func (d *device) readAt(p []byte, off int64) error {
	if off < 0 || off > d.size || int64(len(p)) > d.size-off {
		return fmt.Errorf("read of %d bytes at %d: %w", len(p), off, errOutside)
	}
	if d.ov == nil || len(p) == 0 {
		return d.rawRead(p, off)
	}
	first, last := uint64(off/d.bs), uint64((off+int64(len(p))-1)/d.bs)
	i := sort.Search(len(d.ov.keys), func(i int) bool { return d.ov.keys[i] >= first })
	for len(p) > 0 {
		if i >= len(d.ov.keys) || d.ov.keys[i] > last {
			return d.rawRead(p, off)
		}
		blk := d.ov.keys[i]
		i++
		if start := int64(blk) * d.bs; start > off {
			n := start - off
			if err := d.rawRead(p[:n], off); err != nil {
				return err
			}
			p, off = p[n:], start
		}
		// off is inside blk now: serve it from the journal's copy.
		in := off - int64(blk)*d.bs
		n := min(int64(len(p)), d.bs-in)
		src := d.ov.src[blk]
		if err := d.rawRead(p[:n], int64(src.phys)*d.bs+in); err != nil {
			return err
		}
		if src.escaped && in < 4 {
			copy(p[:n], jbd2Magic[in:])
		}
		p, off = p[n:], off+n
	}
	return nil
}

func (d *device) rawRead(p []byte, off int64) error {
	n, err := d.r.ReadAt(p, off)
	if n == len(p) {
		return nil
	}
	if err == nil || err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return err
}
