package ntfswrite

// bitUsed says whether index block i is marked in use in $BITMAP $I30.
func (x *index) bitUsed(i int64) (bool, error) {
	bm := x.bitmapAttr()
	if bm == nil || i < 0 || i >= bm.valueSize()*8 {
		return false, nil
	}
	return x.f.getBit(bm, i)
}

// allocBlock takes an index block for a new node: the first free one in
// $BITMAP $I30, the bitmap growing 8 bytes at a time and $INDEX_ALLOCATION
// by clusters after its last one when it must (ntfs-3g index.c
// ntfs_ibm_get_free). A directory without them gets both (ntfs_ia_add).
// It returns the block's VCN.
func (x *index) allocBlock() (int64, error) {
	f := x.f
	r := x.dir
	if r.list != nil && (x.bitmapAttr() == nil || x.allocAttr() == nil) {
		return 0, f.refuse("directory %d has an attribute list and no index allocation: adding one would change the list", r.num)
	}
	if x.splitRuns != nil {
		return 0, f.refuse("directory %d: its index allocation is split over several MFT records and would have to grow (a new extent changes the attribute list)", r.num)
	}
	if x.bitmapAttr() == nil {
		r.add(&rattr{typ: atBitmap, name: nameI30, resident: true, value: make([]byte, 8)})
	}
	if x.allocAttr() == nil {
		r.add(&rattr{typ: atIndexAllocation, name: nameI30, highVCN: -1})
	}
	bm, alloc := x.bitmapAttr(), x.allocAttr()
	nbits := bm.valueSize() * 8
	i, ok, err := f.findClear(bm, 0, nbits)
	if err != nil {
		return 0, err
	}
	if !ok {
		i = nbits
		if err := f.growAttr(bm, bm.valueSize()+8, dataZone); err != nil {
			return 0, err
		}
	}
	if err := f.setBits(bm, i, 1, true); err != nil {
		return 0, err
	}
	if need := (i + 1) * x.bsize; need > alloc.size {
		if err := f.growAttr(alloc, need, dataZone); err != nil {
			return 0, err
		}
	}
	return i * x.bsize / x.vcnUnit, nil
}
