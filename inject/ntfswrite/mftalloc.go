package ntfswrite

import (
	"errors"
	"fmt"
)

// allocRecord takes a free MFT record for a new file: the first clear
// bit of $MFT's $BITMAP from record 64 on (ntfs-3g mft.c
// ntfs_mft_record_alloc), extending $MFT by 16 records (or a cluster)
// when none is free, formatting records up to it. The record returned is
// empty and in use, with the sequence number it had when it was last
// freed.
func (f *FS) allocRecord() (*mrec, error) {
	d, bm := f.mftData(), f.mftBitmap()
	allocRecs := d.alloc / f.recSize
	nbits := bm.valueSize() * 8
	// From where the last search stopped, then from the start, as
	// ntfs-3g keeps mft_data_pos.
	from := max(f.mftCursor, firstFree)
	num, ok, err := f.findClear(bm, from, min(nbits, allocRecs))
	if err == nil && !ok && from > firstFree {
		num, ok, err = f.findClear(bm, firstFree, min(from, nbits, allocRecs))
	}
	if err != nil {
		return nil, err
	}
	if !ok {
		num = max(firstFree, min(nbits, allocRecs))
	}
	if num >= 1<<32 {
		return nil, f.noSpace("the MFT has no record number left")
	}
	if num >= nbits {
		// ntfs-3g grows the bitmap by 8 bytes at a time.
		if err := f.growAttr(bm, (num/64+1)*8, dataZone); err != nil {
			return nil, fmt.Errorf("extending $MFT's $BITMAP: %w", err)
		}
	}
	for num >= d.alloc/f.recSize {
		if err := f.extendMFT(); err != nil {
			return nil, err
		}
	}
	if err := f.setBits(bm, num, 1, true); err != nil {
		return nil, err
	}
	f.mftCursor = num + 1
	var seq, usn uint16 = 1, 0
	if (num+1)*f.recSize > d.init {
		if err := f.formatRecords(num + 1); err != nil {
			return nil, err
		}
	} else {
		b, err := f.recordBytes(uint64(num))
		if err != nil {
			return nil, err
		}
		old, err := parseRecord(b, uint64(num), f.clusters)
		switch {
		case err == nil:
			return nil, f.corrupt("MFT record %d is in use but free in $MFT's $BITMAP (run chkdsk)", num)
		case !errors.Is(err, errRecordFree):
			return nil, f.corrupt("free MFT record %d: %v", num, err)
		}
		if old.seq != 0 {
			seq = old.seq
		}
		if old.usn != 0xFFFF {
			usn = old.usn
		}
	}
	r := newRecord(uint64(num), int(f.recSize), seq, usn)
	r.flags = recordInUse
	f.recs[uint64(num)] = r
	return r, nil
}

// extendMFT allocates 16 more records' worth of clusters to $MFT (at
// least one record, at least one cluster), in the MFT zone after its
// last cluster (ntfs-3g mft.c ntfs_mft_data_extend_allocation). Its run
// list must still fit in record 0.
func (f *FS) extendMFT() error {
	r0, d := f.recs[recMFT], f.mftData()
	cs := f.clusterSize
	n := max(1, 16*f.recSize/cs)
	got, err := f.allocClusters(n, d.runs[len(d.runs)-1].LCN+d.runs[len(d.runs)-1].N, mftZone)
	if err != nil {
		min := max(1, f.recSize/cs)
		if got, err = f.allocClusters(min, f.zoneStart, mftZone); err != nil {
			return fmt.Errorf("extending $MFT: %w", err)
		}
		n = min
	}
	for _, g := range got {
		d.runs = appendRun(d.runs, g.LCN, g.N)
		if err := f.st.zero(g.LCN*cs, g.N*cs); err != nil {
			return err
		}
	}
	d.alloc += n * cs
	d.highVCN = d.alloc/cs - 1
	d.changed()
	f.event(Event{Op: OpMFTExtend, Rec: recMFT, Clusters: extentsOf(got), Note: fmt.Sprintf("%d records", n*cs/f.recSize)})
	if used, err := r0.used(); err != nil {
		return err
	} else if used > int(f.recSize) {
		return f.refuse("$MFT is too fragmented: its run list no longer fits in its record (it would need an attribute list)")
	}
	return nil
}

// formatRecords formats the records from $MFT's initialized size up to
// (not including) record end as empty records not in use, and extends
// the initialized and data sizes (ntfs-3g mft.c ntfs_mft_record_init).
func (f *FS) formatRecords(end int64) error {
	d := f.mftData()
	if end*f.recSize > d.alloc {
		return f.corrupt("formatting MFT records past $MFT's allocation")
	}
	for n := d.init / f.recSize; n < end; n++ {
		b, err := formatFree(uint64(n), int(f.recSize))
		if err != nil {
			return err
		}
		if err := f.nrWrite(d.runs, n*f.recSize, b); err != nil {
			return err
		}
	}
	d.init = end * f.recSize
	d.size = max(d.size, d.init)
	d.changed()
	f.recs[recMFT].dirty = true
	return nil
}
