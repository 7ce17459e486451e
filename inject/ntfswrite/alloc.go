package ntfswrite

// Cluster allocation in $Bitmap, and growth of the non-resident
// attributes the writer extends ($MFT's $DATA and $BITMAP, a directory's
// $INDEX_ALLOCATION and $BITMAP).

// zone says where an allocation prefers its clusters.
type zone int

const (
	dataZone zone = iota // outside the MFT zone first
	mftZone              // inside the MFT zone first
)

// span is a range of clusters [lo, hi).
type span struct{ lo, hi int64 }

// searchOrder lists where to look for clusters, goal first: data avoids
// the MFT zone, which is kept for the MFT to grow into, until the rest of
// the volume is full (ntfs-3g lcnalloc.c ntfs_cluster_alloc); MFT
// clusters come from the zone first.
func (f *FS) searchOrder(goal int64, z zone) []span {
	inZone := goal >= f.zoneStart && goal < f.zoneEnd
	var out []span
	add := func(lo, hi int64) {
		lo, hi = max(lo, 0), min(hi, f.clusters)
		if lo < hi {
			out = append(out, span{lo, hi})
		}
	}
	data := func() {
		g := goal
		if inZone {
			g = f.zoneEnd
		}
		if g >= f.zoneEnd {
			add(g, f.clusters)
			add(f.zoneEnd, g)
			add(0, f.zoneStart)
		} else {
			add(g, f.zoneStart)
			add(f.zoneEnd, f.clusters)
			add(0, g)
		}
	}
	zoneSpans := func() {
		if inZone {
			add(goal, f.zoneEnd)
			add(f.zoneStart, goal)
		} else {
			add(f.zoneStart, f.zoneEnd)
		}
	}
	if z == mftZone {
		zoneSpans()
		data()
	} else {
		data()
		zoneSpans()
	}
	return out
}

// allocClusters allocates want clusters: one run when a free run is long
// enough, else the first free runs found. They are marked used in
// $Bitmap at once; clusters freed by the transaction are not reused (they
// stay marked until Finish).
func (f *FS) allocClusters(want, goal int64, z zone) ([]run, error) {
	if want <= 0 {
		return nil, nil
	}
	bm, err := f.sysData(recBitmap)
	if err != nil {
		return nil, err
	}
	order := f.searchOrder(goal, z)
	var got []run
	for _, s := range order {
		start, n, err := f.freeRun(bm, s.lo, s.hi, want, true)
		if err != nil {
			return nil, err
		}
		if start >= 0 {
			got = []run{{LCN: start, N: n}}
			break
		}
	}
	if got == nil {
		left := want
		for _, s := range order {
			for lo := s.lo; left > 0 && lo < s.hi; {
				start, n, err := f.freeRun(bm, lo, s.hi, left, false)
				if err != nil {
					return nil, err
				}
				if start < 0 {
					break
				}
				got = append(got, run{LCN: start, N: n})
				left -= n
				lo = start + n
				if len(got) > 4096 {
					return nil, f.noSpace("free space is too fragmented for %d clusters", want)
				}
			}
		}
		if left > 0 {
			return nil, f.noSpace("%d clusters wanted, %d free", want, want-left)
		}
	}
	for _, r := range got {
		if err := f.setBits(bm, r.LCN, r.N, true); err != nil {
			return nil, err
		}
	}
	if z == dataZone && len(got) > 0 {
		l := got[len(got)-1]
		f.cursor = l.LCN + l.N
	}
	return got, nil
}

// growAttr extends non-resident attribute a of record r to hold size
// bytes: clusters allocated after its last one when free, the new bytes
// zeroed, data and initialized sizes set to size.
func (f *FS) growAttr(a *rattr, size int64, z zone) error {
	if a.resident {
		if int64(len(a.value)) < size {
			a.value = append(a.value, make([]byte, size-int64(len(a.value)))...)
			a.changed()
		}
		return nil
	}
	if size <= a.size {
		return nil
	}
	cs := f.clusterSize
	if size > a.alloc {
		n := (size - a.alloc + cs - 1) / cs
		goal := f.cursor
		if k := len(a.runs); k > 0 && a.runs[k-1].LCN >= 0 {
			goal = a.runs[k-1].LCN + a.runs[k-1].N
		}
		got, err := f.allocClusters(n, goal, z)
		if err != nil {
			return err
		}
		for _, g := range got {
			a.runs = appendRun(a.runs, g.LCN, g.N)
			if err := f.st.zero(g.LCN*cs, g.N*cs); err != nil {
				return err
			}
		}
		a.alloc += n * cs
		a.highVCN = a.alloc/cs - 1
	}
	// Bytes past the old initialized size are garbage on disk.
	if a.init < size {
		oldInit := a.init
		a.init = size
		if err := f.nrWrite(a.runs, oldInit, make([]byte, min(size, a.alloc)-oldInit)); err != nil {
			return err
		}
	}
	a.size = size
	a.changed()
	return nil
}

// freeClusters releases runs at Finish.
func (f *FS) freeClusters(runs []run) {
	for _, r := range runs {
		if r.LCN >= 0 {
			f.freed = append(f.freed, r)
		}
	}
}

// checkOwned checks, before a file's clusters are freed, that $Bitmap
// has them in use and that no system file ($MFT, $LogFile, $Bitmap,
// $Boot, ... records 0 to 15) maps them: freeing clusters a damaged run
// list shares with metadata would let the next allocation overwrite it.
func (f *FS) checkOwned(num uint64, runs []run) error {
	bm, err := f.sysData(recBitmap)
	if err != nil {
		return err
	}
	var sys []run
	for n := uint64(0); n < firstUser; n++ {
		r, err := f.record(n)
		if err != nil {
			continue // records 12 to 15 may be unused
		}
		for _, a := range r.view() {
			if !a.resident {
				sys = append(sys, a.runs...)
			}
		}
	}
	for _, x := range runs {
		if x.LCN < 0 {
			continue
		}
		for _, s := range sys {
			if s.LCN >= 0 && x.LCN < s.LCN+s.N && s.LCN < x.LCN+x.N {
				return f.corrupt("file %d maps clusters %d+%d that system file clusters %d+%d overlap (run chkdsk)", num, x.LCN, x.N, s.LCN, s.N)
			}
		}
		if free, ok, err := f.findClear(bm, x.LCN, x.LCN+x.N); err != nil {
			return err
		} else if ok {
			return f.corrupt("file %d maps cluster %d, which $Bitmap has free (run chkdsk)", num, free)
		}
	}
	return nil
}
