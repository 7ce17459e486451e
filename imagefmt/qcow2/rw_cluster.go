package qcow2

import (
	"bytes"
	"encoding/binary"
	"io"
)

// Cluster mapping for RW (spec "Cluster mapping"): the L1 table is kept in
// memory, L2 tables are cached by host offset; both are written through.

// maxCachedL2 bounds the L2 tables RW keeps (they are written through, so
// dropping them only costs a reread).
const maxCachedL2Bytes = 16 << 20

// l2Table returns the L2 table of L1 entry i and its host offset; nil when
// there is none, unless create is set, in which case an empty one is
// allocated and linked.
func (rw *RW) l2Table(i int64, create bool) (int64, []uint64, error) {
	if i >= int64(len(rw.l1)) {
		return 0, nil, fmtErr(rw.name, rw.l1Off, i, "guest cluster beyond the L1 table")
	}
	e := rw.l1[i]
	off := int64(e & L1OffsetMask)
	entryOff := rw.l1Off + i*8
	if off == 0 {
		if !create {
			return 0, nil, nil
		}
		return rw.newL2(i)
	}
	t, ok := rw.l2[off]
	if !ok {
		var err error
		if t, err = rw.loadL2(i, off, entryOff); err != nil {
			return 0, nil, err
		}
	}
	if create && e&EntryCopied == 0 {
		// Copied clear: the table is shared with an internal snapshot
		// (refcount > 1). Writing needs a private copy.
		return rw.cowL2(i, off, t)
	}
	return off, t, nil
}

// loadL2 reads and caches the L2 table at off, named by L1 entry i.
func (rw *RW) loadL2(i, off, entryOff int64) ([]uint64, error) {
	if off%rw.cs != 0 || off < rw.cs || off+rw.cs > rw.end {
		return nil, fmtErr(rw.name, entryOff, off, "L1 entry %d: L2 table misaligned or outside the file", i)
	}
	if w, ok := rw.meta[off/rw.cs]; ok && w != "L2 table" {
		return nil, fmtErr(rw.name, entryOff, off, "L1 entry %d: L2 table inside the %s", i, w)
	}
	buf := make([]byte, rw.cs)
	if err := readFull(rw.f, buf, off); err != nil {
		return nil, rw.ioErr("L2 table", off, err)
	}
	t := make([]uint64, rw.cs/8)
	for j := range t {
		t[j] = binary.BigEndian.Uint64(buf[j*8:])
	}
	rw.cacheL2(off, t)
	return t, nil
}

func (rw *RW) cacheL2(off int64, t []uint64) {
	if int64(len(rw.l2)+1)*rw.cs > maxCachedL2Bytes {
		clear(rw.l2)
	}
	rw.l2[off] = t
}

// cowL2 gives L1 entry i a private copy of the shared L2 table old at
// oldOff. Refcounts of the clusters it maps do not change: qcow2 counts a
// data cluster once per L1 table that reaches it (qemu-img check walks the
// active and every snapshot L1 table), and after the copy the active L1
// reaches each cluster through the copy instead of the shared table. The
// entries are copied as they are: their copied flags are clear (counts of
// two or more), so writes into those clusters copy them in turn.
func (rw *RW) cowL2(i, oldOff int64, old []uint64) (int64, []uint64, error) {
	h, err := rw.allocClusters(1)
	if err != nil {
		return 0, nil, err
	}
	off := h * rw.cs
	t := make([]uint64, len(old))
	buf := make([]byte, rw.cs)
	for j, e := range old {
		t[j] = e
		binary.BigEndian.PutUint64(buf[j*8:], e)
	}
	if _, err := rw.f.WriteAt(buf, off); err != nil {
		return 0, nil, writeError(rw.name, "L2 table", off, err)
	}
	rw.meta[h] = "L2 table"
	rw.l1[i] = uint64(off) | EntryCopied
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], rw.l1[i])
	if _, err := rw.f.WriteAt(b[:], rw.l1Off+i*8); err != nil {
		return 0, nil, writeError(rw.name, "L1 entry", rw.l1Off+i*8, err)
	}
	rw.cacheL2(off, t)
	if err := rw.addRef(oldOff/rw.cs, -1); err != nil {
		return 0, nil, err
	}
	return off, t, nil
}

// newL2 allocates an empty L2 table for L1 entry i: counted, zeroed on
// disk, then linked from the L1 table.
func (rw *RW) newL2(i int64) (int64, []uint64, error) {
	h, err := rw.allocClusters(1)
	if err != nil {
		return 0, nil, err
	}
	off := h * rw.cs
	if _, err := rw.f.WriteAt(make([]byte, rw.cs), off); err != nil {
		return 0, nil, writeError(rw.name, "L2 table", off, err)
	}
	rw.meta[h] = "L2 table"
	rw.l1[i] = uint64(off) | EntryCopied
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], rw.l1[i])
	if _, err := rw.f.WriteAt(b[:], rw.l1Off+i*8); err != nil {
		return 0, nil, writeError(rw.name, "L1 entry", rw.l1Off+i*8, err)
	}
	t := make([]uint64, rw.cs/8)
	rw.l2[off] = t
	return off, t, nil
}

// entry returns the L2 entry of guest cluster gc (0 when unmapped) and the
// file offset of the entry (0 without a table).
func (rw *RW) entry(gc int64, create bool) (uint64, int64, error) {
	l2n := rw.cs / 8
	off, t, err := rw.l2Table(gc/l2n, create)
	if err != nil || t == nil {
		return 0, 0, err
	}
	return t[gc%l2n], off + (gc%l2n)*8, nil
}

func (rw *RW) setEntry(gc int64, e uint64) error {
	l2n := rw.cs / 8
	off, t, err := rw.l2Table(gc/l2n, true)
	if err != nil {
		return err
	}
	t[gc%l2n] = e
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], e)
	eo := off + (gc%l2n)*8
	if _, err := rw.f.WriteAt(b[:], eo); err != nil {
		return writeError(rw.name, "L2 entry", eo, err)
	}
	return nil
}

// l2 entry reserved bits of a standard cluster (spec: bits 1-8, 56-61).
const l2StdReserved = 0x3f000000000001fe

// hostCluster validates the host offset of a standard entry and returns
// it; 0 when the entry has none.
func (rw *RW) hostCluster(e uint64, gc int64) (int64, error) {
	host := int64(e & L2OffsetMask)
	if host == 0 {
		return 0, nil
	}
	if e&l2StdReserved != 0 || host%rw.cs != 0 || host < rw.cs || host >= rw.end {
		return 0, fmtErr(rw.name, -1, e, "L2 entry of guest offset %d: bad host offset", gc*rw.cs)
	}
	if w, ok := rw.meta[host/rw.cs]; ok {
		return 0, fmtErr(rw.name, -1, host, "L2 entry of guest offset %d points into the %s", gc*rw.cs, w)
	}
	return host, nil
}

// readCluster fills p with the guest bytes at pos (within one cluster)
// given the cluster's L2 entry e.
func (rw *RW) readCluster(p []byte, pos int64, e uint64) error {
	gc := pos / rw.cs
	switch {
	case e&L2Compressed != 0:
		// Compressed clusters are never rewritten in place, so the read
		// view opened with the file still decodes them.
		_, err := rw.img.ReadAt(p, pos)
		if err == io.EOF {
			err = nil
		}
		return err
	case e&L2Zero != 0 && rw.hdr.Version >= 3:
		clear(p)
		return nil
	}
	host, err := rw.hostCluster(e, gc)
	if err != nil {
		return err
	}
	if host == 0 {
		if b := rw.img.Backing(); b != nil {
			n, err := b.ReadAt(p, pos)
			if err == io.EOF {
				clear(p[n:])
				err = nil
			}
			return err
		}
		clear(p)
		return nil
	}
	n, err := rw.f.ReadAt(p, host+pos%rw.cs)
	if err == io.EOF {
		clear(p[n:]) // a last cluster may end short of the file
		err = nil
	}
	if err != nil {
		return rw.ioErr("data cluster", host, err)
	}
	return nil
}

// writeCluster writes p at offset in of guest cluster gc.
func (rw *RW) writeCluster(gc, in int64, p []byte) error {
	e, _, err := rw.entry(gc, false)
	if err != nil {
		return err
	}
	compressed := e&L2Compressed != 0
	zero := !compressed && e&L2Zero != 0 && rw.hdr.Version >= 3
	var host, cFirst, cLast int64
	if compressed {
		if cFirst, cLast, err = rw.compressedClusters(e, gc); err != nil {
			return err
		}
	} else if host, err = rw.hostCluster(e, gc); err != nil {
		return err
	}
	owned := host != 0 && e&EntryCopied != 0
	if owned {
		// The copied flag says the count is one; check, since writing
		// into a shared cluster would change a snapshot or another table.
		if v, err := rw.refcount(host / rw.cs); err != nil {
			return err
		} else if v != 1 {
			owned = false
		}
	}
	if owned && !zero {
		if _, err := rw.f.WriteAt(p, host+in); err != nil {
			return writeError(rw.name, "data cluster", host+in, err)
		}
		return nil
	}
	if !owned && rw.hdr.Version >= 3 && int64(len(p)) == rw.cs && allZero(p) {
		// A whole cluster of zeros where the image owns none: record a
		// zero cluster (spec v3, L2 bit 0) instead of allocating one.
		if zero && host == 0 {
			return nil // already one
		}
		if err := rw.setEntry(gc, L2Zero); err != nil {
			return err
		}
		return rw.dropRefs(compressed, cFirst, cLast, host)
	}

	// The cluster gets new contents in full: what the guest sees there now
	// around the new bytes.
	if int64(cap(rw.scratch)) < rw.cs {
		rw.scratch = make([]byte, rw.cs)
	}
	buf := rw.scratch[:rw.cs]
	if int64(len(p)) != rw.cs {
		if zero {
			clear(buf)
		} else if err := rw.readCluster(buf, gc*rw.cs, e); err != nil {
			return err
		}
	}
	copy(buf[in:], p)
	if owned && zero {
		// An allocated zero cluster: fill it, then clear the flag.
		if _, err := rw.f.WriteAt(buf, host); err != nil {
			return writeError(rw.name, "data cluster", host, err)
		}
		return rw.setEntry(gc, e&^L2Zero)
	}
	// Make sure the L2 table exists before taking the data cluster, so
	// the cluster is never counted without a place to be referenced.
	if _, _, err := rw.l2Table(gc/(rw.cs/8), true); err != nil {
		return err
	}
	h, err := rw.allocClusters(1)
	if err != nil {
		return err
	}
	if _, err := rw.f.WriteAt(buf, h*rw.cs); err != nil {
		return writeError(rw.name, "data cluster", h*rw.cs, err)
	}
	if err := rw.setEntry(gc, uint64(h*rw.cs)|EntryCopied); err != nil {
		return err
	}
	// Drop the old references only now.
	return rw.dropRefs(compressed, cFirst, cLast, host)
}

// dropRefs releases what a replaced L2 entry referenced: the host
// clusters of a compressed cluster, or a standard cluster.
func (rw *RW) dropRefs(compressed bool, cFirst, cLast, host int64) error {
	switch {
	case compressed:
		for c := cFirst; c <= cLast; c++ {
			if err := rw.addRef(c, -1); err != nil {
				return err
			}
		}
	case host != 0:
		return rw.addRef(host/rw.cs, -1)
	}
	return nil
}

func allZero(b []byte) bool {
	for len(b) > 0 {
		n := min(len(b), len(zeroCluster))
		if !bytes.Equal(b[:n], zeroCluster[:n]) {
			return false
		}
		b = b[n:]
	}
	return true
}

var zeroCluster [64 << 10]byte

// compressedClusters validates a compressed entry and returns the host
// clusters its sectors touch (each holds one reference for it, spec
// "Compressed Clusters Descriptor" and qemu-img check).
func (rw *RW) compressedClusters(e uint64, gc int64) (first, last int64, err error) {
	off, nsec := CompressedDescriptor(e, rw.hdr.ClusterBits)
	start := int64(off) &^ (SectorSize - 1)
	end := start + int64(nsec)*SectorSize
	if e&EntryCopied != 0 || start < rw.cs || end > rw.end {
		return 0, 0, fmtErr(rw.name, -1, e, "compressed L2 entry of guest offset %d: copied flag set or data outside the file", gc*rw.cs)
	}
	first, last = start/rw.cs, (end-1)/rw.cs
	for c := first; c <= last; c++ {
		if w, ok := rw.meta[c]; ok {
			return 0, 0, fmtErr(rw.name, -1, e, "compressed L2 entry of guest offset %d points into the %s", gc*rw.cs, w)
		}
	}
	return first, last, nil
}
