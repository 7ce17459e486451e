package ntfswrite

import (
	"fmt"
	"math/bits"
	"sort"

	"github.com/vmmount/vmmount/fsread/ntfs"
)

// openDir returns the index of directory num.
func (f *FS) openDir(num uint64) (*index, error) {
	if x, ok := f.dirs[num]; ok {
		return x, nil
	}
	r, err := f.record(num)
	if err != nil {
		return nil, err
	}
	if r.flags&recordDirectory == 0 {
		return nil, fmt.Errorf("%s: MFT record %d is not a directory: %w", f.label, num, ErrRefused)
	}
	for _, a := range []*rattr{r.find(atIndexRoot, nameI30), r.find(atBitmap, nameI30)} {
		if a != nil && r.extents(a.typ, a.name) > 1 {
			return nil, f.refuse("directory %d: its %#x $I30 attribute is split over several MFT records, which the writer does not handle", num, a.typ)
		}
	}
	x := &index{f: f, dir: r, blocks: map[int64]*node{}}
	if err := x.gatherAlloc(); err != nil {
		return nil, err
	}
	x.root = r.find(atIndexRoot, nameI30)
	if x.root == nil || !x.root.resident || len(x.root.value) < irHeaderSize+ihSize {
		return nil, f.corrupt("directory %d has no $INDEX_ROOT $I30", num)
	}
	var ir ntfs.IndexRoot
	decodeStruct(x.root.value, &ir)
	if ir.Type != atFileName || ir.CollationRule != collationFName {
		return nil, f.corrupt("directory %d: $I30 indexes type %#x with collation %d", num, ir.Type, ir.CollationRule)
	}
	x.bsize = int64(ir.IndexBlockSize)
	if x.bsize < 512 || x.bsize > 64<<10 || bits.OnesCount64(uint64(x.bsize)) != 1 {
		return nil, f.corrupt("directory %d: index block size %d", num, x.bsize)
	}
	// VCNs of index blocks count clusters, or 512-byte units when blocks
	// are smaller than a cluster (ntfs-3g index.c).
	x.vcnUnit = f.clusterSize
	if x.bsize < f.clusterSize {
		x.vcnUnit = ntfsBlock
	}
	x.rootHdr = append([]byte(nil), x.root.value[:irHeaderSize]...)
	x.top, err = parseNode(x.root.value[irHeaderSize:], -1)
	if err != nil {
		return nil, f.corrupt("directory %d: $INDEX_ROOT: %v", num, err)
	}
	alloc, bm := x.allocAttr(), x.bitmapAttr()
	switch {
	case x.top.large && (alloc == nil || bm == nil):
		return nil, f.corrupt("directory %d has a large index without $INDEX_ALLOCATION and $BITMAP", num)
	case alloc != nil && (alloc.resident || alloc.lowVCN != 0 || alloc.flags&(attrCompressionMask|attrEncrypted|attrSparse) != 0 ||
		alloc.init != alloc.size || alloc.size%x.bsize != 0 || alloc.size > alloc.alloc):
		return nil, f.corrupt("directory %d: $INDEX_ALLOCATION is not plain (data %d, initialized %d, allocated %d)", num, alloc.size, alloc.init, alloc.alloc)
	case bm != nil && bm.flags&(attrCompressionMask|attrEncrypted|attrSparse) != 0:
		return nil, f.corrupt("directory %d: $BITMAP $I30 is compressed or sparse", num)
	case alloc != nil && bm != nil && bm.valueSize()*8 < alloc.size/x.bsize:
		return nil, f.corrupt("directory %d: $BITMAP $I30 of %d bytes for %d index blocks", num, bm.valueSize(), alloc.size/x.bsize)
	}
	if len(f.dirs) >= 1<<16 {
		return nil, f.refuse("the transaction opens more than %d directories", 1<<16)
	}
	f.dirs[num] = x
	return x, nil
}

// allocAttr is $INDEX_ALLOCATION $I30 (its first extent, which holds the
// sizes, when it is split over records).
func (x *index) allocAttr() *rattr {
	for _, a := range x.dir.findAll(atIndexAllocation) {
		if a.isNamed(nameI30) && !a.resident && a.lowVCN == 0 {
			return a
		}
	}
	return x.dir.find(atIndexAllocation, nameI30)
}

func (x *index) bitmapAttr() *rattr { return x.dir.find(atBitmap, nameI30) }

// gatherAlloc checks the extents of $INDEX_ALLOCATION $I30. One split
// over several records (big directories on aged volumes) is read and its
// blocks rewritten through the runs of all its extents, but it is not
// grown: that would change the attribute list.
func (x *index) gatherAlloc() error {
	var ext []*rattr
	for _, a := range x.dir.findAll(atIndexAllocation) {
		if a.isNamed(nameI30) {
			ext = append(ext, a)
		}
	}
	if len(ext) <= 1 {
		return nil
	}
	sort.Slice(ext, func(i, j int) bool { return ext[i].lowVCN < ext[j].lowVCN })
	next := int64(0)
	var runs []run
	for _, a := range ext {
		if a.resident || a.lowVCN != next {
			return x.f.corrupt("directory %d: $INDEX_ALLOCATION extent at VCN %d, want %d", x.dir.num, a.lowVCN, next)
		}
		runs = append(runs, a.runs...)
		next = a.highVCN + 1
	}
	if next*x.f.clusterSize < ext[0].alloc {
		return x.f.corrupt("directory %d: $INDEX_ALLOCATION extents end at VCN %d, it allocates %d bytes", x.dir.num, next, ext[0].alloc)
	}
	x.splitRuns = runs
	return nil
}

// allocRuns maps all of $INDEX_ALLOCATION.
func (x *index) allocRuns() []run {
	if x.splitRuns != nil {
		return x.splitRuns
	}
	return x.allocAttr().runs
}
