package ext

import (
	"github.com/vmmount/vmmount/fsread/ext/disklayout"
)

// Whole-tree walks for File.Extents. Unlike mapBlock they visit every
// node, so each node may be visited once only: a tree block reached twice
// (a loop, or a DAG that would make the walk exponential) is corruption.

// walk calls add for every initialized extent below logical block end, in
// order.
func (m *extentMapper) walk(end uint64, add func(lblk, n uint64)) error {
	seen := make(map[uint64]bool)
	prevEnd := uint64(0)
	var visit func(node []byte, depth int) error
	visit = func(node []byte, depth int) error {
		h, _ := disklayout.DecodeExtentHeader(node)
		for i := 0; i < int(h.Entries); i++ {
			if depth > 0 {
				blk := disklayout.DecodeExtentIdx(node, i).Leaf()
				if seen[blk] {
					return m.f.corrupt(m.n.ino, m.f.blockOff(blk), "extent tree node referenced twice (loop)")
				}
				seen[blk] = true
				child, err := m.node(blk, depth-1)
				if err != nil {
					return err
				}
				if err := visit(child, depth-1); err != nil {
					return err
				}
				continue
			}
			e := disklayout.DecodeExtent(node, i)
			start, n := uint64(e.Block), uint64(e.Length())
			if start < prevEnd {
				return m.f.corrupt(m.n.ino, -1, "extents out of order or overlapping at logical block %d", start)
			}
			prevEnd = start + n
			if start >= end {
				return nil
			}
			if e.Unwritten() || n == 0 {
				continue
			}
			phys := e.Start()
			if phys < m.f.firstData || phys >= m.f.blocks || m.f.blocks-phys < n {
				return m.f.corrupt(m.n.ino, -1, "extent at logical block %d maps outside the volume", start)
			}
			add(start, min(n, end-start))
		}
		return nil
	}
	return visit(m.root, m.depth)
}

// walk calls add for every mapped run of a block map below logical block
// end, in order.
func (m *blockMapper) walk(end uint64, add func(lblk, n uint64)) error {
	f := m.f
	p := uint64(f.bs / 4)
	seen := make(map[uint64]bool)
	emit := func(lblk, ptr uint64) error {
		if ptr < f.firstData || ptr >= f.blocks {
			return f.corrupt(m.n.ino, -1, "block pointer %d is outside the volume", ptr)
		}
		add(lblk, 1)
		return nil
	}
	// visit walks the subtree under ptr (level 0: a data block), whose
	// first logical block is base.
	var visit func(ptr uint64, level int, base, span uint64) error
	visit = func(ptr uint64, level int, base, span uint64) error {
		if ptr == 0 || base >= end {
			return nil
		}
		if level == 0 {
			return emit(base, ptr)
		}
		if ptr < f.firstData || ptr >= f.blocks {
			return f.corrupt(m.n.ino, -1, "indirect block %d is outside the volume", ptr)
		}
		if seen[ptr] {
			return f.corrupt(m.n.ino, f.blockOff(ptr), "indirect block referenced twice (loop)")
		}
		seen[ptr] = true
		cb, err := f.block(ptr)
		if err != nil {
			return f.corrupt(m.n.ino, f.blockOff(ptr), "reading indirect block: %v", err)
		}
		sub := span / p
		for i := uint64(0); i < p; i++ {
			if err := visit(uint64(le.Uint32(cb.data[i*4:])), level-1, base+i*sub, sub); err != nil {
				return err
			}
		}
		return nil
	}
	for i := uint64(0); i < nDirect; i++ {
		if err := visit(uint64(m.n.d.Block[i]), 0, i, 1); err != nil {
			return err
		}
	}
	base, span := uint64(nDirect), p
	for level := 1; level <= 3; level++ {
		if err := visit(uint64(m.n.d.Block[nDirect+level-1]), level, base, span); err != nil {
			return err
		}
		base += span
		span *= p
	}
	return nil
}
