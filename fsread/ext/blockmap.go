package ext

// blockMapper follows ext2/3 block maps (ifork.rst, "Direct/Indirect
// Block Addressing"): twelve direct pointers, then single, double and
// triple indirect blocks of bs/4 pointers each. A zero pointer is a hole
// covering everything below it.
type blockMapper struct {
	f *FS
	n *inode
}

const nDirect = 12

func (m *blockMapper) mapBlock(lblk uint64) (run, error) {
	f := m.f
	p := uint64(f.bs / 4)
	if lblk < nDirect {
		return m.scan(m.n.iblock()[:nDirect*4], int(lblk), nDirect-lblk)
	}
	l := lblk - nDirect
	span := p // blocks under the pointer at this level
	for level := 1; level <= 3; level++ {
		if l >= span {
			l -= span
			span *= p
			continue
		}
		// span blocks hang under ptr; l is the offset among them.
		ptr := uint64(m.n.d.Block[nDirect+level-1])
		for {
			if ptr == 0 {
				return run{kind: runHole, n: span - l}, nil
			}
			if ptr < f.firstData || ptr >= f.blocks {
				return run{}, f.corrupt(m.n.ino, -1, "indirect block %d is outside the volume", ptr)
			}
			cb, err := f.block(ptr)
			if err != nil {
				return run{}, f.corrupt(m.n.ino, f.blockOff(ptr), "reading indirect block: %v", err)
			}
			span /= p // blocks under each entry of this block
			idx := l / span
			if span == 1 {
				return m.scan(cb.data, int(idx), p-idx)
			}
			ptr = uint64(le.Uint32(cb.data[idx*4:]))
			l %= span
		}
	}
	// Past what a block map can address.
	return run{kind: runHole, n: 1 << 62}, nil
}

// scan makes a run from consecutive pointers in ptrs starting at entry i,
// at most max entries: a hole over zeros, or data over physically
// consecutive blocks.
func (m *blockMapper) scan(ptrs []byte, i int, max uint64) (run, error) {
	first := uint64(le.Uint32(ptrs[i*4:]))
	n := uint64(1)
	for n < max {
		next := uint64(le.Uint32(ptrs[(i+int(n))*4:]))
		if first == 0 && next != 0 || first != 0 && next != first+n {
			break
		}
		n++
	}
	if first == 0 {
		return run{kind: runHole, n: n}, nil
	}
	if first < m.f.firstData || first >= m.f.blocks || m.f.blocks-first < n {
		return run{}, m.f.corrupt(m.n.ino, -1, "block pointer %d is outside the volume", first)
	}
	return run{kind: runData, phys: first, n: n}, nil
}
