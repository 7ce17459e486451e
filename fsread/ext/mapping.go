package ext

import (
	"github.com/vmmount/vmmount/fsread/ext/disklayout"
)

// A run is a stretch of logical blocks of a file starting at the block
// asked for: n blocks that are either a hole, unwritten (both read as
// zeros) or data at consecutive physical blocks from phys.
type run struct {
	kind int
	phys uint64
	n    uint64
}

const (
	runHole = iota
	runData
	runUnwritten
)

// maxLogical bounds logical block numbers (2^32: extents store 32 bits,
// and no block map reaches further).
const maxLogical = uint64(1) << 32

// mapper finds the run starting at a logical block. Implementations are
// immutable and safe for concurrent use.
type mapper interface {
	mapBlock(lblk uint64) (run, error)
}

// mapperFor picks extent tree or block map.
func (f *FS) mapperFor(n *inode) (mapper, error) {
	if n.flag(disklayout.FlagExtents) {
		root := n.iblock()
		h, _ := disklayout.DecodeExtentHeader(root)
		if err := f.checkExtentNode(n, root, h, -1, 0); err != nil {
			return nil, err
		}
		return &extentMapper{f: f, n: n, root: root, depth: int(h.Depth)}, nil
	}
	if f.sb.HasRoCompat(disklayout.RoCompatBigalloc) {
		return nil, f.corrupt(n.ino, -1, "block-mapped file on a bigalloc volume")
	}
	return &blockMapper{f: f, n: n}, nil
}
