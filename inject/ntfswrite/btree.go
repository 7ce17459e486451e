package ntfswrite

import (
	"fmt"
)

// step is a node on the way down the tree and the entry position taken
// in it (len(ents): the END entry).
type step struct {
	n   *node
	pos int
}

// descend walks from the root to where name belongs under cmp: the path,
// and whether the last step's position holds an entry comparing equal.
// Each node's entries are checked to be in order and inside the bounds
// its parent gives it.
func (x *index) descend(name []uint16, cmp func(a, b []uint16) int) ([]step, bool, error) {
	f := x.f
	n := x.top
	var lo, hi []uint16 // bounds of n's keys from its ancestors
	seen := map[int64]bool{}
	var path []step
	for depth := 0; ; depth++ {
		if err := x.checkOrder(n, lo, hi); err != nil {
			return nil, false, err
		}
		i := 0
		for ; i < len(n.ents); i++ {
			c := cmp(name, n.ents[i].name())
			if c == 0 {
				return append(path, step{n, i}), true, nil
			}
			if c < 0 {
				break
			}
		}
		path = append(path, step{n, i})
		if !n.large {
			return path, false, nil
		}
		if depth >= maxIndexDepth {
			return nil, false, f.corrupt("directory %d: index deeper than %d levels", x.dir.num, maxIndexDepth)
		}
		vcn := n.child(i)
		if seen[vcn] {
			return nil, false, f.corrupt("directory %d: index block %d is reached twice (loop)", x.dir.num, vcn)
		}
		seen[vcn] = true
		if i > 0 {
			lo = n.ents[i-1].name()
		}
		if i < len(n.ents) {
			hi = n.ents[i].name()
		}
		c, err := x.block(vcn)
		if err != nil {
			return nil, false, err
		}
		n = c
	}
}

// checkOrder checks that a node's entries are in collation order and
// between lo and hi (nil: unbounded).
func (x *index) checkOrder(n *node, lo, hi []uint16) error {
	prev := lo
	for i := range n.ents {
		name := n.ents[i].name()
		if prev != nil && x.f.upcase.collateNames(prev, name) >= 0 {
			return x.f.corrupt("directory %d: index node %d is not in collation order at %q", x.dir.num, n.vcn, utf16String(name))
		}
		prev = name
	}
	if prev != nil && hi != nil && x.f.upcase.collateNames(prev, hi) >= 0 {
		return x.f.corrupt("directory %d: index node %d holds %q, past its parent's bound", x.dir.num, n.vcn, utf16String(prev))
	}
	return nil
}

// lookup finds the entry of name (compared exactly, as the index orders
// names); nil when there is none.
func (x *index) lookup(name []uint16) (*entry, *node, error) {
	path, found, err := x.descend(name, x.f.upcase.collateNames)
	if err != nil || !found {
		return nil, nil, err
	}
	s := path[len(path)-1]
	return &s.n.ents[s.pos], s.n, nil
}

// lookupIgnoreCase finds an entry of a name Windows sees as the same as
// name (equal ignoring case); nil when there is none.
func (x *index) lookupIgnoreCase(name []uint16) (*entry, error) {
	path, found, err := x.descend(name, x.f.upcase.collateIgnoreCase)
	if err != nil || !found {
		return nil, err
	}
	s := path[len(path)-1]
	return &s.n.ents[s.pos], nil
}

// touched marks a node changed.
func (x *index) touched(n *node) {
	if n.vcn < 0 {
		x.encodeRoot()
		return
	}
	n.dirty = true
}

// insert adds an entry in collation order: into the leaf where it
// belongs, splitting full blocks (the median goes up), moving the root's
// entries into a new block when the directory's record has no room for
// them (the tree grows a level), as ntfs-3g's index.c ntfs_ie_add does.
func (x *index) insert(e entry) error {
	path, found, err := x.descend(e.name(), x.f.upcase.collateNames)
	if err != nil {
		return err
	}
	if found {
		return fmt.Errorf("%s: %q in directory %d: %w", x.f.label, utf16String(e.name()), x.dir.num, ErrExist)
	}
	s := path[len(path)-1]
	e.child = -1
	s.n.ents = insertEntry(s.n.ents, s.pos, e)
	return x.rebalance(path, len(path)-1)
}

func insertEntry(ents []entry, i int, e entry) []entry {
	ents = append(ents, entry{})
	copy(ents[i+1:], ents[i:])
	ents[i] = e
	return ents
}

// rootReserve is room a large index leaves in the directory's record for
// its $BITMAP and $INDEX_ALLOCATION run list to grow.
const rootReserve = 32

// rebalance restores the size limits from path[lvl] up after that node
// grew.
func (x *index) rebalance(path []step, lvl int) error {
	n := path[lvl].n
	x.touched(n)
	if n.vcn >= 0 {
		if x.fits(n) {
			return nil
		}
		return x.split(path, lvl)
	}
	ok, err := x.rootFits(x.top.large)
	if err != nil || ok {
		return err
	}
	return x.pushDown()
}

// rootFits says whether the record of the index root holds it as it is,
// leaving rootReserve bytes free when reserve is set.
func (x *index) rootFits(reserve bool) (bool, error) {
	used, err := x.root.home.used()
	if err != nil {
		return false, err
	}
	limit := int(x.f.recSize)
	if reserve {
		limit -= rootReserve
	}
	return used <= limit, nil
}

// pushDown moves every entry of the root into a new index block that
// becomes the root's only child (ntfs-3g index.c ntfs_ir_reparent), and
// splits that block if it is too full.
func (x *index) pushDown() error {
	if len(x.top.ents) == 0 {
		return x.f.noSpace("directory %d: its record has no room for an index root", x.dir.num)
	}
	b, err := x.newBlock(x.top.large)
	if err != nil {
		return err
	}
	b.ents, b.end = x.top.ents, x.top.end
	x.top.ents, x.top.large, x.top.end = nil, true, b.vcn
	x.encodeRoot()
	x.f.event(Event{Op: OpIndexGrow, Rec: x.dir.num, Note: fmt.Sprintf("index root moved into block %d", b.vcn)})
	if x.fits(b) {
		return nil
	}
	return x.split([]step{{x.top, 0}, {b, 0}}, 1)
}

// split moves the entries of full block path[lvl] after its median into
// a new block, and the median up into the parent, in front of the entry
// that pointed to the block, pointing to the block (which keeps the
// entries before the median); the parent's entry points to the new block
// (ntfs-3g index.c ntfs_ib_split).
func (x *index) split(path []step, lvl int) error {
	n := path[lvl].n
	if lvl == 0 || len(n.ents) < 3 {
		return x.f.refuse("directory %d: index block %d cannot be split (%d entries of up to %d bytes in %d-byte blocks)", x.dir.num, n.vcn, len(n.ents), n.entriesSize(), x.bsize)
	}
	m := median(n)
	med := n.ents[m]
	right, err := x.newBlock(n.large)
	if err != nil {
		return err
	}
	right.ents = append([]entry(nil), n.ents[m+1:]...)
	right.end = n.end
	n.end = med.child
	n.ents = append([]entry(nil), n.ents[:m]...)
	if !x.fits(n) || !x.fits(right) {
		return x.f.refuse("directory %d: index block %d does not split into two blocks", x.dir.num, n.vcn)
	}
	n.dirty = true
	x.f.event(Event{Op: OpIndexSplit, Rec: x.dir.num, Note: fmt.Sprintf("block %d split, new block %d", n.vcn, right.vcn)})
	p := path[lvl-1]
	med.child = n.vcn
	p.n.setChild(p.pos, right.vcn)
	p.n.ents = insertEntry(p.n.ents, p.pos, med)
	return x.rebalance(path, lvl-1)
}

// median is the entry at half of a node's bytes, with at least one entry
// on each side.
func median(n *node) int {
	total := n.entriesSize()
	acc := 0
	for i := range n.ents {
		acc += n.ents[i].size(n.large)
		if 2*acc >= total {
			return max(1, min(i, len(n.ents)-2))
		}
	}
	return len(n.ents) / 2
}

// newBlock allocates an index block for a new node.
func (x *index) newBlock(large bool) (*node, error) {
	vcn, err := x.allocBlock()
	if err != nil {
		return nil, err
	}
	usaCount := int(x.bsize/ntfsBlock) + 1
	n := &node{vcn: vcn, large: large, end: -1, usaCount: usaCount,
		entOff: align8(ihSize + 2*usaCount), dirty: true}
	x.blocks[vcn] = n
	return n, nil
}

// updateEntry finds the entry of name pointing to record num and lets fn
// change its key in place (same length).
func (x *index) updateEntry(name []uint16, num uint64, fn func(key []byte)) error {
	e, n, err := x.lookup(name)
	if err != nil {
		return err
	}
	if e == nil {
		return x.f.corrupt("directory %d has no entry %q for record %d", x.dir.num, utf16String(name), num)
	}
	if r, _ := splitRef(e.ref()); r != num {
		return x.f.corrupt("directory %d has no entry %q for record %d", x.dir.num, utf16String(name), num)
	}
	fn(e.key())
	x.touched(n)
	return nil
}
