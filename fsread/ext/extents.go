package ext

import (
	"sort"

	"github.com/vmmount/vmmount/fsread/ext/disklayout"
)

// extentMapper walks an extent tree (ifork.rst, "Extent Tree") from the
// root in i_block down to the leaf covering a logical block: one binary
// search per level, nodes coming from the block cache.
type extentMapper struct {
	f     *FS
	n     *inode
	root  []byte
	depth int
}

// checkExtentNode validates a node: magic, entry counts that fit the node,
// the depth its parent implies (want < 0 for the root: at most
// ExtentMaxDepth) and, for tree blocks, the metadata_csum tail.
func (f *FS) checkExtentNode(n *inode, b []byte, h disklayout.ExtentHeader, want int, blk uint64) error {
	off := int64(-1)
	if blk != 0 {
		off = f.blockOff(blk)
	}
	if h.Magic != disklayout.ExtentMagic {
		return f.corrupt(n.ino, off, "extent node: bad magic %#x", h.Magic)
	}
	fit := (len(b) - disklayout.ExtentHeaderSize) / disklayout.ExtentEntrySize
	if int(h.Max) > fit || h.Entries > h.Max {
		return f.corrupt(n.ino, off, "extent node: %d/%d entries do not fit", h.Entries, h.Max)
	}
	if want < 0 && h.Depth > disklayout.ExtentMaxDepth || want >= 0 && int(h.Depth) != want {
		return f.corrupt(n.ino, off, "extent node: depth %d, expected %d (a loop or a damaged tree)", h.Depth, want)
	}
	return nil
}

// node reads and checks a non-root tree block (checksum once per cached
// block).
func (m *extentMapper) node(blk uint64, depth int) ([]byte, error) {
	f := m.f
	if blk < f.firstData || blk >= f.blocks {
		return nil, f.corrupt(m.n.ino, -1, "extent node at block %d is outside the volume", blk)
	}
	cb, err := f.block(blk)
	if err != nil {
		return nil, f.corrupt(m.n.ino, f.blockOff(blk), "reading extent node: %v", err)
	}
	h, _ := disklayout.DecodeExtentHeader(cb.data)
	if err := f.checkExtentNode(m.n, cb.data, h, depth, blk); err != nil {
		return nil, err
	}
	if f.csum && cb.verified.Load()&verifyExtent == 0 {
		stored, c, ok := disklayout.ExtentBlockChecksum(f.inodeSeed(m.n), cb.data, int(h.Max))
		if !ok || stored != c {
			return nil, f.corrupt(m.n.ino, f.blockOff(blk), "extent node checksum mismatch (stored %#x, computed %#x)", stored, c)
		}
		cb.verified.Or(verifyExtent)
	}
	return cb.data, nil
}

func (m *extentMapper) mapBlock(lblk uint64) (run, error) {
	if lblk >= maxLogical {
		return run{kind: runHole, n: 1 << 62}, nil
	}
	node, depth := m.root, m.depth
	limit := maxLogical // first block past what this subtree covers
	for {
		h, _ := disklayout.DecodeExtentHeader(node)
		cnt := int(h.Entries)
		if depth == 0 {
			return m.leafRun(node, cnt, lblk, limit)
		}
		// Last index whose first block is <= lblk.
		i := sort.Search(cnt, func(i int) bool {
			return uint64(disklayout.DecodeExtentIdx(node, i).Block) > lblk
		}) - 1
		if i < 0 {
			// Before the first index: a hole up to it.
			if cnt == 0 {
				return run{kind: runHole, n: limit - lblk}, nil
			}
			first := uint64(disklayout.DecodeExtentIdx(node, 0).Block)
			return run{kind: runHole, n: min(first, limit) - lblk}, nil
		}
		if i+1 < cnt {
			next := uint64(disklayout.DecodeExtentIdx(node, i+1).Block)
			if next <= lblk {
				return run{}, m.f.corrupt(m.n.ino, -1, "extent index entries out of order")
			}
			limit = min(limit, next)
		}
		child, err := m.node(disklayout.DecodeExtentIdx(node, i).Leaf(), depth-1)
		if err != nil {
			return run{}, err
		}
		node, depth = child, depth-1
	}
}

func (m *extentMapper) leafRun(node []byte, cnt int, lblk, limit uint64) (run, error) {
	i := sort.Search(cnt, func(i int) bool {
		return uint64(disklayout.DecodeExtent(node, i).Block) > lblk
	}) - 1
	next := limit
	if i+1 < cnt {
		next = min(next, uint64(disklayout.DecodeExtent(node, i+1).Block))
	}
	if i >= 0 {
		e := disklayout.DecodeExtent(node, i)
		start, length := uint64(e.Block), uint64(e.Length())
		if end := start + length; lblk < end {
			if next < end {
				return run{}, m.f.corrupt(m.n.ino, -1, "overlapping extents at logical block %d", next)
			}
			n := min(end, limit) - lblk
			if e.Unwritten() {
				return run{kind: runUnwritten, n: n}, nil
			}
			phys := e.Start() + (lblk - start)
			if e.Start() < m.f.firstData || phys >= m.f.blocks || m.f.blocks-phys < n {
				return run{}, m.f.corrupt(m.n.ino, -1, "extent at logical block %d maps outside the volume (block %d)", start, e.Start())
			}
			return run{kind: runData, phys: phys, n: n}, nil
		}
	}
	if next <= lblk {
		return run{}, m.f.corrupt(m.n.ino, -1, "extent entries out of order")
	}
	return run{kind: runHole, n: next - lblk}, nil
}
