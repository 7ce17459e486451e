package restore

import (
	"context"
	"io"

	"github.com/vmmount/vmmount/fsread/fsys"
)

// sparseMin is the smallest file stored sparse in a tar stream: below it
// the map and the second read cost more than the zeros.
const sparseMin = 64 << 10

// file writes a regular file: its header, then its content, densely or as
// the fragments of a sparse entry.
func (t *tarRestorer) file(ctx context.Context, h *tarHeader, guest string, f fsys.FileSystem, ino uint64, st *fsys.Stat) bool {
	gf, err := f.Open(ino)
	if err != nil {
		t.fail(guest, err)
		return false
	}
	size := gf.Size()
	ranges, err := gf.Extents()
	if err != nil {
		t.fail(guest, err)
		return false
	}
	ranges = clampRanges(ranges, size)
	h.Type, h.Size = tarReg, size
	if size >= sparseMin && (st.Blocks*512 < size || rangesLen(ranges) < size) {
		frags, err := t.scanData(ctx, gf, ranges)
		if err != nil {
			t.fail(guest, err)
			return false
		}
		if frags != nil {
			if n := len(frags); n == 0 || frags[n-1].Off+frags[n-1].Len < size {
				frags = append(frags, fsys.Range{Off: size}) // ends in a hole
			}
			h.Sparse = frags
		}
	}
	if !t.stream(t.tw.begin(h)) {
		return false
	}
	if err := t.content(ctx, gf, h, ranges, size); err != nil {
		if t.fatal != nil {
			return false
		}
		t.fail(guest, err)
		return t.stream(t.tw.fillZeros())
	}
	t.c.files.Add(1)
	return true
}

// content writes the bytes the header announced: the sparse fragments, or
// [0, size) with the holes between ranges as zeros.
func (t *tarRestorer) content(ctx context.Context, gf fsys.File, h *tarHeader, ranges []fsys.Range, size int64) error {
	if h.Sparse != nil {
		for _, fr := range h.Sparse {
			if err := t.copyRange(ctx, gf, fr.Off, fr.Off+fr.Len); err != nil {
				return err
			}
		}
		return nil
	}
	var pos int64
	for _, r := range append(ranges, fsys.Range{Off: size}) {
		if err := t.zeros(r.Off - pos); err != nil {
			return err
		}
		if err := t.copyRange(ctx, gf, r.Off, r.Off+r.Len); err != nil {
			return err
		}
		pos = r.Off + r.Len
	}
	return nil
}

func (t *tarRestorer) zeros(n int64) error {
	clear(t.buf)
	for n > 0 {
		k := min(n, int64(len(t.buf)))
		if _, err := t.tw.Write(t.buf[:k]); !t.stream(err) {
			return t.fatal
		}
		n -= k
	}
	return nil
}

// copyRange copies [off, end) of the guest file into the stream.
func (t *tarRestorer) copyRange(ctx context.Context, gf fsys.File, off, end int64) error {
	for off < end {
		if err := ctx.Err(); err != nil {
			return err
		}
		n := min(int64(len(t.buf)), end-off)
		k, err := gf.ReadAt(t.buf[:n], off)
		if int64(k) < n && (err == nil || err == io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		if err != nil && err != io.EOF {
			return err
		}
		if _, werr := t.tw.Write(t.buf[:k]); !t.stream(werr) {
			return t.fatal
		}
		t.c.bytes.Add(int64(k))
		t.prog.Add(int64(k))
		off += int64(k)
	}
	return nil
}

// scanData reads the data ranges and returns the runs of sparseBlock
// blocks that are not all zero, or nil when there are more than
// maxSparseFragments of them (the file is then stored densely).
func (t *tarRestorer) scanData(ctx context.Context, gf fsys.File, ranges []fsys.Range) ([]fsys.Range, error) {
	frags := []fsys.Range{}
	add := func(off, n int64) {
		if k := len(frags); k > 0 && frags[k-1].Off+frags[k-1].Len == off {
			frags[k-1].Len += n
			return
		}
		frags = append(frags, fsys.Range{Off: off, Len: n})
	}
	for _, r := range ranges {
		for off, end := r.Off, r.Off+r.Len; off < end; {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			n := min(int64(len(t.buf)), end-off)
			k, err := gf.ReadAt(t.buf[:n], off)
			if err != nil && err != io.EOF {
				return nil, err
			}
			if k == 0 {
				break
			}
			for i := int64(0); i < int64(k); {
				// Blocks aligned on file offsets.
				bl := min(sparseBlock-(off+i)%sparseBlock, int64(k)-i)
				if !isZero(t.buf[i : i+bl]) {
					add(off+i, bl)
					if len(frags) > maxSparseFragments {
						return nil, nil
					}
				}
				i += bl
			}
			off += int64(k)
		}
	}
	return frags, nil
}

// clampRanges makes the extent list cover [0, size) at most; nil means all
// of it.
func clampRanges(rs []fsys.Range, size int64) []fsys.Range {
	if rs == nil {
		if size == 0 {
			return []fsys.Range{}
		}
		return []fsys.Range{{Off: 0, Len: size}}
	}
	out := make([]fsys.Range, 0, len(rs))
	var pos int64
	for _, r := range rs {
		lo, hi := max(r.Off, pos), min(r.Off+r.Len, size)
		if lo < hi {
			out = append(out, fsys.Range{Off: lo, Len: hi - lo})
			pos = hi
		}
	}
	return out
}

func rangesLen(rs []fsys.Range) int64 {
	var n int64
	for _, r := range rs {
		n += r.Len
	}
	return n
}
