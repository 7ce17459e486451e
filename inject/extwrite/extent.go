package extwrite

import (
	"sort"

	"github.com/vmmount/vmmount/fsread/ext/disklayout"
)

// Extent trees (Documentation/filesystems/ext4/ifork.rst, "Extent Tree").
// The root is in i_block (4 entries); other nodes are whole blocks with
// (bs-12)/12 entries and, with metadata_csum, a checksum after them.

const rootMax = (disklayout.IBlockSize - disklayout.ExtentHeaderSize) / disklayout.ExtentEntrySize

// maxExtentLen is the longest initialized extent.
const maxExtentLen = disklayout.ExtentInitMaxLen

func (f *FS) nodeMax() int {
	return (f.bs - disklayout.ExtentHeaderSize) / disklayout.ExtentEntrySize
}

// initExtents gives an inode an empty extent tree.
func (f *FS) initExtents(n *inode) {
	root := make([]byte, disklayout.IBlockSize)
	putExtentHeader(root, 0, rootMax, 0)
	n.setIblock(root)
	n.d.Flags |= disklayout.FlagExtents
}

// checkNode checks a node's header: magic, entries within max, max within
// what the node holds, the depth expected, and (blocks only) the checksum.
func (f *FS) checkNode(n *inode, b []byte, blk uint64, depth int) (disklayout.ExtentHeader, error) {
	h, err := disklayout.DecodeExtentHeader(b)
	if err != nil {
		return h, f.corrupt("inode %d: extent node: %v", n.ino, err)
	}
	capacity := (len(b) - disklayout.ExtentHeaderSize) / disklayout.ExtentEntrySize
	switch {
	case h.Magic != disklayout.ExtentMagic:
		return h, f.corrupt("inode %d: extent node at block %d has a bad magic", n.ino, blk)
	case int(h.Max) > capacity || h.Max == 0 || h.Entries > h.Max:
		return h, f.corrupt("inode %d: extent node at block %d has %d/%d entries", n.ino, blk, h.Entries, h.Max)
	case depth >= 0 && int(h.Depth) != depth:
		return h, f.corrupt("inode %d: extent node at block %d has depth %d, want %d", n.ino, blk, h.Depth, depth)
	case h.Depth > disklayout.ExtentMaxDepth:
		return h, f.corrupt("inode %d: extent tree depth %d", n.ino, h.Depth)
	}
	if blk != 0 && f.csum {
		stored, c, ok := disklayout.ExtentBlockChecksum(f.inodeSeed(n), b, int(h.Max))
		if !ok || stored != c {
			return h, f.corrupt("inode %d: extent block %d checksum mismatch", n.ino, blk)
		}
	}
	return h, nil
}

// sealNode sets a tree block's checksum.
func (f *FS) sealNode(n *inode, b []byte) {
	if !f.csum {
		return
	}
	max := int(le.Uint16(b[4:]))
	off := disklayout.ExtentHeaderSize + max*disklayout.ExtentEntrySize
	le.PutUint32(b[off:], disklayout.Crc32c(f.inodeSeed(n), b[:off]))
}

// childBlock reads and checks a child node.
func (f *FS) childBlock(n *inode, blk uint64, depth int) ([]byte, disklayout.ExtentHeader, error) {
	if blk < f.firstData || blk >= f.blocks {
		return nil, disklayout.ExtentHeader{}, f.corrupt("inode %d: extent node block %d is outside the volume", n.ino, blk)
	}
	b, err := f.st.read(blk)
	if err != nil {
		return nil, disklayout.ExtentHeader{}, err
	}
	h, err := f.checkNode(n, b, blk, depth)
	return b, h, err
}

// extentMap maps one logical block.
func (f *FS) extentMap(n *inode, lblk uint64) (uint64, error) {
	node := n.iblock()
	h, err := f.checkNode(n, node, 0, -1)
	if err != nil {
		return 0, err
	}
	for depth := int(h.Depth); ; depth-- {
		cnt := int(h.Entries)
		if depth == 0 {
			for i := range cnt {
				e := disklayout.DecodeExtent(node, i)
				if lblk >= uint64(e.Block) && lblk < uint64(e.Block)+uint64(e.Length()) {
					if e.Unwritten() {
						return 0, nil
					}
					return e.Start() + lblk - uint64(e.Block), nil
				}
			}
			return 0, nil
		}
		i := sort.Search(cnt, func(i int) bool { return uint64(disklayout.DecodeExtentIdx(node, i).Block) > lblk }) - 1
		if i < 0 {
			return 0, nil
		}
		if node, h, err = f.childBlock(n, disklayout.DecodeExtentIdx(node, i).Leaf(), depth-1); err != nil {
			return 0, err
		}
	}
}

// extentWalk calls data for every extent (unwritten ones too) and meta for
// every tree block (before its children), depth first.
func (f *FS) extentWalk(n *inode, data func(lblk uint32, start uint64, length uint32) error, meta func(blk uint64) error) error {
	root := n.iblock()
	h, err := f.checkNode(n, root, 0, -1)
	if err != nil {
		return err
	}
	var walk func(node []byte, h disklayout.ExtentHeader) error
	walk = func(node []byte, h disklayout.ExtentHeader) error {
		for i := range int(h.Entries) {
			if h.Depth == 0 {
				e := disklayout.DecodeExtent(node, i)
				if err := data(e.Block, e.Start(), e.Length()); err != nil {
					return err
				}
				continue
			}
			blk := disklayout.DecodeExtentIdx(node, i).Leaf()
			if err := meta(blk); err != nil {
				return err
			}
			child, ch, err := f.childBlock(n, blk, int(h.Depth)-1)
			if err != nil {
				return err
			}
			if err := walk(child, ch); err != nil {
				return err
			}
		}
		return nil
	}
	return walk(root, h)
}

// pathNode is one node on the path to the rightmost leaf; blk 0 is the
// root in i_block.
type pathNode struct {
	blk uint64
	b   []byte
	h   disklayout.ExtentHeader
}

// rightPath follows the last entries from the root to the last leaf.
func (f *FS) rightPath(n *inode) ([]pathNode, error) {
	root := n.iblock()
	h, err := f.checkNode(n, root, 0, -1)
	if err != nil {
		return nil, err
	}
	path := []pathNode{{0, root, h}}
	for h.Depth > 0 {
		if h.Entries == 0 {
			return nil, f.corrupt("inode %d: empty extent index node", n.ino)
		}
		blk := disklayout.DecodeExtentIdx(path[len(path)-1].b, int(h.Entries)-1).Leaf()
		b, ch, err := f.childBlock(n, blk, int(h.Depth)-1)
		if err != nil {
			return nil, err
		}
		path = append(path, pathNode{blk, b, ch})
		h = ch
	}
	return path, nil
}

// storeNode writes a changed node back: i_block for the root, else the
// staged block with its checksum.
func (f *FS) storeNode(n *inode, p pathNode, fill func(b []byte)) error {
	if p.blk == 0 {
		b := n.iblock()
		fill(b)
		n.setIblock(b)
		return nil
	}
	b, err := f.st.modify(p.blk)
	if err != nil {
		return err
	}
	fill(b)
	f.sealNode(n, b)
	return nil
}

// extentAppend maps count blocks from phys at logical block lblk, past
// every block mapped so far: it extends the last extent when contiguous,
// else adds one, growing the tree as ext4_ext_create_new_leaf does (a new
// leaf under the lowest index node with room, or a new level under the
// root). Tree blocks it allocates count in i_blocks.
func (f *FS) extentAppend(n *inode, lblk uint32, phys uint64, count uint32) error {
	if count == 0 || count > maxExtentLen {
		return f.corrupt("extent of %d blocks", count)
	}
	for range disklayout.ExtentMaxDepth + 2 {
		path, err := f.rightPath(n)
		if err != nil {
			return err
		}
		leaf := path[len(path)-1]
		if cnt := int(leaf.h.Entries); cnt > 0 {
			last := disklayout.DecodeExtent(leaf.b, cnt-1)
			end := uint64(last.Block) + uint64(last.Length())
			if end > uint64(lblk) {
				return f.corrupt("inode %d: appending block %d before the end %d of its extents", n.ino, lblk, end)
			}
			if !last.Unwritten() && end == uint64(lblk) && last.Start()+uint64(last.Length()) == phys &&
				last.Length()+count <= maxExtentLen {
				return f.storeNode(n, leaf, func(b []byte) {
					putExtent(b, cnt-1, last.Block, uint16(last.Length()+count), last.Start())
				})
			}
		}
		if leaf.h.Entries < leaf.h.Max {
			return f.storeNode(n, leaf, func(b []byte) {
				putExtent(b, int(leaf.h.Entries), lblk, uint16(count), phys)
				le.PutUint16(b[2:], leaf.h.Entries+1)
			})
		}
		k := len(path) - 2
		for k >= 0 && path[k].h.Entries == path[k].h.Max {
			k--
		}
		if k < 0 {
			if err := f.extentGrow(n, path[0], phys); err != nil {
				return err
			}
			continue
		}
		return f.extentChain(n, path, k, lblk, phys, count)
	}
	return f.corrupt("inode %d: extent tree does not take a new extent", n.ino)
}

// extentGrow moves the root's entries into a new block and makes the root
// an index of that one block, one level deeper (ext4_ext_grow_indepth).
func (f *FS) extentGrow(n *inode, root pathNode, goal uint64) error {
	if int(root.h.Depth)+1 > disklayout.ExtentMaxDepth {
		return f.refuse("inode %d: extent tree would be deeper than %d", n.ino, disklayout.ExtentMaxDepth)
	}
	blk, _, err := f.allocRun(goal, 1)
	if err != nil {
		return err
	}
	if err := f.addBlocks(n, 1); err != nil {
		return err
	}
	b, err := f.st.fresh(blk)
	if err != nil {
		return err
	}
	cnt := int(root.h.Entries)
	putExtentHeader(b, cnt, f.nodeMax(), int(root.h.Depth))
	copy(b[disklayout.ExtentHeaderSize:], root.b[disklayout.ExtentHeaderSize:disklayout.ExtentHeaderSize+cnt*disklayout.ExtentEntrySize])
	f.sealNode(n, b)
	first := le.Uint32(root.b[disklayout.ExtentHeaderSize:])
	r := make([]byte, disklayout.IBlockSize)
	putExtentHeader(r, 1, rootMax, int(root.h.Depth)+1)
	putExtentIdx(r, 0, first, blk)
	n.setIblock(r)
	return nil
}

// extentChain adds the extent in a new chain of nodes hanging from
// path[k], which has room: one new block per level below k, the leaf
// holding the extent.
func (f *FS) extentChain(n *inode, path []pathNode, k int, lblk uint32, phys uint64, count uint32) error {
	levels := len(path) - 1 - k
	blk, got, err := f.allocRun(phys, uint64(levels))
	if err != nil {
		return err
	}
	blks := []uint64{}
	for i := range got {
		blks = append(blks, blk+i)
	}
	for uint64(len(blks)) < uint64(levels) {
		b, m, err := f.allocRun(phys, uint64(levels-len(blks)))
		if err != nil {
			return err
		}
		for i := range m {
			blks = append(blks, b+i)
		}
	}
	if err := f.addBlocks(n, int64(levels)); err != nil {
		return err
	}
	// blks[0] hangs from path[k]; blks[levels-1] is the leaf.
	for i, nb := range blks {
		b, err := f.st.fresh(nb)
		if err != nil {
			return err
		}
		depth := levels - 1 - i
		putExtentHeader(b, 1, f.nodeMax(), depth)
		if depth == 0 {
			putExtent(b, 0, lblk, uint16(count), phys)
		} else {
			putExtentIdx(b, 0, lblk, blks[i+1])
		}
		f.sealNode(n, b)
	}
	p := path[k]
	return f.storeNode(n, p, func(b []byte) {
		putExtentIdx(b, int(p.h.Entries), lblk, blks[0])
		le.PutUint16(b[2:], p.h.Entries+1)
	})
}
