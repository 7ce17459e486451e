package ntfswrite

import (
	"fmt"
	"sort"

	"github.com/vmmount/vmmount/fsread/ntfs"
)

// index is a directory's $I30 index (a B+ tree of $FILE_NAME keys in
// collation order, ntfs-3g layout.h INDEX_ROOT/INDEX_BLOCK) open for
// change. The root node lives in the directory's record ($INDEX_ROOT),
// the others in blocks of $INDEX_ALLOCATION, which $BITMAP marks in use.
type index struct {
	f       *FS
	dir     *mrec
	root    *rattr // $INDEX_ROOT $I30
	rootHdr []byte // INDEX_ROOT before its INDEX_HEADER
	top     *node
	bsize   int64 // index block size
	vcnUnit int64 // bytes per VCN of index blocks
	blocks  map[int64]*node
	// split maps an $INDEX_ALLOCATION stored in several extents.
	splitRuns []run
}

// node is one node of the tree: the root or an index block.
type node struct {
	vcn   int64 // -1 for the root
	large bool  // has sub-nodes (LARGE_INDEX in the root, INDEX_NODE in a block)
	ents  []entry
	end   int64 // the END entry's sub-node (large nodes)

	// Index blocks: header fields kept from the block as read.
	lsn      uint64
	usn      uint16
	usaCount int
	entOff   int // INDEX_HEADER entries_offset
	dirty    bool
}

// entry is an index entry without its sub-node VCN: the INDEX_ENTRY
// header and the $FILE_NAME key, padded to 8 bytes.
type entry struct {
	body  []byte
	child int64    // sub-node VCN, -1 if none
	nm    []uint16 // the name, decoded once
}

func (e *entry) ref() uint64 { return le.Uint64(e.body[0:]) }
func (e *entry) keyLen() int { return int(le.Uint16(e.body[10:])) }
func (e *entry) key() []byte { return e.body[ieHeaderSize : ieHeaderSize+e.keyLen()] }
func (e *entry) ns() uint8   { return e.key()[fnNameType] }
func (e *entry) name() []uint16 {
	if e.nm == nil {
		k := e.key()
		e.nm = unitsOf(k[fnName : fnName+2*int(k[fnNameLen])])
	}
	return e.nm
}

// size is the entry's bytes in a node.
func (e *entry) size(large bool) int {
	if large {
		return len(e.body) + 8
	}
	return len(e.body)
}

// newEntry builds the index entry of a $FILE_NAME key for record ref.
func newEntry(ref uint64, key []byte) entry {
	body := make([]byte, align8(ieHeaderSize+len(key)))
	le.PutUint64(body[0:], ref)
	le.PutUint16(body[8:], uint16(len(body)))
	le.PutUint16(body[10:], uint16(len(key)))
	copy(body[ieHeaderSize:], key)
	return entry{body: body, child: -1}
}

// endSize is the END entry's size.
func endSize(large bool) int {
	if large {
		return ieHeaderSize + 8
	}
	return ieHeaderSize
}

// entriesSize is the bytes of a node's entries, END included.
func (n *node) entriesSize() int {
	s := endSize(n.large)
	for i := range n.ents {
		s += n.ents[i].size(n.large)
	}
	return s
}

// child returns the sub-node of entry i (i == len(ents): END).
func (n *node) child(i int) int64 {
	if i == len(n.ents) {
		return n.end
	}
	return n.ents[i].child
}

func (n *node) setChild(i int, vcn int64) {
	if i == len(n.ents) {
		n.end = vcn
	} else {
		n.ents[i].child = vcn
	}
}

// Bounds of the tree walk.
const (
	maxIndexDepth  = 32
	maxNodeEntries = 1 << 14
)

// parseNode decodes the entries of a node from its INDEX_HEADER at b.
func parseNode(b []byte, vcn int64) (*node, error) {
	if len(b) < ihSize {
		return nil, fmt.Errorf("index header past its node")
	}
	entOff, indexLen := int64(le.Uint32(b[ihEntriesOff:])), int64(le.Uint32(b[ihIndexLength:]))
	n := &node{vcn: vcn, large: b[ihFlags]&ihFlagLarge != 0, entOff: int(entOff), end: -1}
	if entOff < ihSize || entOff%8 != 0 || indexLen > int64(len(b)) || entOff > indexLen {
		return nil, fmt.Errorf("index node entries %d..%d outside its %d bytes", entOff, indexLen, len(b))
	}
	for p := entOff; ; {
		if p+ieHeaderSize > indexLen {
			return nil, fmt.Errorf("index node has no end entry")
		}
		var h ntfs.IndexEntryHeader
		decodeStruct(b[p:], &h)
		l := int64(h.Length)
		if l < ieHeaderSize || p+l > indexLen || l%8 != 0 {
			return nil, fmt.Errorf("index entry at %d has length %d", p, h.Length)
		}
		if (h.Flags&ieFlagNode != 0) != n.large {
			return nil, fmt.Errorf("index entry at %d: sub-node flag %v in a node with large=%v", p, h.Flags&ieFlagNode != 0, n.large)
		}
		e := entry{child: -1}
		body := b[p : p+l]
		if n.large {
			if l < ieHeaderSize+8 {
				return nil, fmt.Errorf("index entry at %d too short for a sub-node", p)
			}
			e.child = int64(le.Uint64(body[l-8:]))
			if e.child < 0 {
				return nil, fmt.Errorf("index entry at %d: sub-node VCN %d", p, e.child)
			}
			body = body[:l-8]
		}
		if h.Flags&ieFlagEnd != 0 {
			n.end = e.child
			return n, nil
		}
		kl := int(h.KeyLength)
		if kl < fnName || ieHeaderSize+kl > len(body) {
			return nil, fmt.Errorf("index entry at %d has key length %d", p, kl)
		}
		if fnName+2*int(body[ieHeaderSize+fnNameLen]) > kl || body[ieHeaderSize+fnNameLen] == 0 {
			return nil, fmt.Errorf("index entry at %d: name past its key", p)
		}
		if len(n.ents) >= maxNodeEntries {
			return nil, fmt.Errorf("index node has more than %d entries", maxNodeEntries)
		}
		e.body = append([]byte(nil), body...)
		n.ents = append(n.ents, e)
		p += l
	}
}

// encodeEntries appends a node's entries and its END entry to b.
func (n *node) encodeEntries(b []byte) []byte {
	var flags uint16
	if n.large {
		flags = ieFlagNode
	}
	put := func(body []byte, child int64, fl uint16) {
		start := len(b)
		b = append(b, body...)
		if n.large {
			b = le.AppendUint64(b, uint64(child))
		}
		le.PutUint16(b[start+8:], uint16(len(b)-start))
		le.PutUint16(b[start+12:], fl)
	}
	for i := range n.ents {
		put(n.ents[i].body, n.ents[i].child, flags)
	}
	put(make([]byte, ieHeaderSize), n.end, flags|ieFlagEnd)
	return b
}

// block returns index block vcn.
func (x *index) block(vcn int64) (*node, error) {
	if n, ok := x.blocks[vcn]; ok {
		return n, nil
	}
	f := x.f
	alloc := x.allocAttr()
	if alloc == nil || vcn < 0 || vcn > alloc.size/x.vcnUnit {
		return nil, f.corrupt("directory %d: index block VCN %d outside $INDEX_ALLOCATION", x.dir.num, vcn)
	}
	pos := vcn * x.vcnUnit
	if pos%x.bsize != 0 || pos+x.bsize > alloc.size {
		return nil, f.corrupt("directory %d: index block VCN %d outside $INDEX_ALLOCATION", x.dir.num, vcn)
	}
	if used, err := x.bitUsed(pos / x.bsize); err != nil {
		return nil, err
	} else if !used {
		return nil, f.corrupt("directory %d: index block VCN %d is used but free in $BITMAP", x.dir.num, vcn)
	}
	b := make([]byte, x.bsize)
	if err := f.nrRead(x.allocRuns(), pos, b); err != nil {
		return nil, err
	}
	var h ntfs.IndexBlockHeader
	decodeStruct(b, &h)
	if string(h.Magic[:]) != "INDX" {
		return nil, f.corrupt("directory %d: index block %d has magic %q", x.dir.num, vcn, h.Magic[:])
	}
	usn := le.Uint16(b[min(int(h.USAOfs), len(b)-2):])
	if err := ntfs.ApplyFixups(b, h.USAOfs, h.USACount); err != nil {
		return nil, f.corrupt("directory %d: index block %d: %v", x.dir.num, vcn, err)
	}
	if h.IndexBlockVCN != vcn {
		return nil, f.corrupt("directory %d: index block at VCN %d says it is VCN %d", x.dir.num, vcn, h.IndexBlockVCN)
	}
	if h.USAOfs != indxUSAOfs || int64(h.AllocatedSize) != x.bsize-ntfs.IndexHeaderOffset {
		return nil, f.corrupt("directory %d: index block %d has its update sequence array at %d and %d bytes for entries", x.dir.num, vcn, h.USAOfs, h.AllocatedSize)
	}
	n, err := parseNode(b[ntfs.IndexHeaderOffset:], vcn)
	if err != nil {
		return nil, f.corrupt("directory %d: index block %d: %v", x.dir.num, vcn, err)
	}
	if n.entOff < ihSize+2*int(h.USACount) {
		return nil, f.corrupt("directory %d: index block %d: entries at %d overlap its update sequence array", x.dir.num, vcn, n.entOff)
	}
	n.lsn, n.usn, n.usaCount = h.LSN, usn, int(h.USACount)
	if len(x.blocks) >= 1<<20 {
		return nil, f.refuse("directory %d: the transaction reads more than %d index blocks", x.dir.num, 1<<20)
	}
	x.blocks[vcn] = n
	return n, nil
}

// fits says whether an index block holds a node.
func (x *index) fits(n *node) bool {
	return int64(n.entOff+n.entriesSize()) <= x.bsize-ntfs.IndexHeaderOffset
}

// encodeBlock builds index block n with fixups applied for a write.
func (x *index) encodeBlock(n *node) ([]byte, error) {
	b := make([]byte, x.bsize)
	copy(b, "INDX")
	le.PutUint16(b[4:], indxUSAOfs)
	le.PutUint16(b[6:], uint16(n.usaCount))
	le.PutUint64(b[8:], n.lsn)
	le.PutUint64(b[indxVCN:], uint64(n.vcn))
	ih := b[ntfs.IndexHeaderOffset:]
	e := n.encodeEntries(nil)
	if n.entOff+len(e) > len(ih) {
		return nil, fmt.Errorf("index block %d overflows", n.vcn)
	}
	copy(ih[n.entOff:], e)
	le.PutUint32(ih[ihEntriesOff:], uint32(n.entOff))
	le.PutUint32(ih[ihIndexLength:], uint32(n.entOff+len(e)))
	le.PutUint32(ih[ihAllocSize:], uint32(x.bsize-ntfs.IndexHeaderOffset))
	if n.large {
		ih[ihFlags] = ihFlagLarge
	}
	n.usn = nextUSN(n.usn)
	if err := protect(b, indxUSAOfs, n.usaCount, n.usn); err != nil {
		return nil, err
	}
	return b, nil
}

// encodeRoot sets $INDEX_ROOT's value from the root node.
func (x *index) encodeRoot() {
	n := x.top
	v := append([]byte(nil), x.rootHdr...)
	h := len(v)
	v = append(v, make([]byte, ihSize)...)
	v = n.encodeEntries(v)
	l := uint32(len(v) - h)
	le.PutUint32(v[h+ihEntriesOff:], ihSize)
	le.PutUint32(v[h+ihIndexLength:], l)
	le.PutUint32(v[h+ihAllocSize:], l)
	if n.large {
		v[h+ihFlags] = ihFlagLarge
	}
	x.root.value = v
	x.root.changed()
}

// writeBlocks stages the changed index blocks of every open directory.
func (f *FS) writeBlocks() error {
	nums := make([]uint64, 0, len(f.dirs))
	for num := range f.dirs {
		nums = append(nums, num)
	}
	sort.Slice(nums, func(i, j int) bool { return nums[i] < nums[j] })
	for _, num := range nums {
		x := f.dirs[num]
		for vcn, n := range x.blocks {
			if !n.dirty {
				continue
			}
			b, err := x.encodeBlock(n)
			if err != nil {
				return f.corrupt("directory %d: %v", num, err)
			}
			if err := f.nrWrite(x.allocRuns(), vcn*x.vcnUnit, b); err != nil {
				return err
			}
			n.dirty = false
		}
	}
	return nil
}
