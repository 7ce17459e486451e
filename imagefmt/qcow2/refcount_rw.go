package qcow2

import (
	"encoding/binary"
	"fmt"

	"github.com/vmmount/vmmount/imagefmt/vdisk"
)

// Refcounts of an image open for in-place writes (spec "Host cluster
// management"): a refcount table of block offsets, each block a cluster of
// 2^refcount_order-bit counts. Every update is written through at once, in
// an order that leaves leaked clusters, never a referenced cluster with a
// count of zero, when the process stops half way: counts go up before the
// reference is written and down after it is removed.
//
// Clusters are only ever allocated at the end of the file; freed clusters
// are not reused, so a cluster whose last reference was just dropped can
// never be handed out again before that drop is on disk.

type rwRefcounts struct {
	width    int64 // bytes per count: refcount orders 3 to 6
	perBlock int64 // counts per block
	table    []uint64
	tableOff int64
	blocks   map[int64][]byte // loaded blocks by index, as on disk
	growing  bool
}

func newRWRefcounts(rw *RW) (*rwRefcounts, error) {
	h := rw.hdr
	if h.RefcountOrder < 3 {
		return nil, unsupErr(rw.name, 96, h.RefcountOrder, "in-place writes support refcounts of 8 to 64 bits, not %d", 1<<h.RefcountOrder)
	}
	r := &rwRefcounts{width: 1 << (h.RefcountOrder - 3), blocks: map[int64][]byte{}}
	r.perBlock = rw.cs / r.width
	// ParseHeader checked the table is inside the file and at most 8 MiB.
	n := int64(h.RefcountTableClusters) * rw.cs
	buf := make([]byte, n)
	if err := readFull(rw.f, buf, int64(h.RefcountTableOffset)); err != nil {
		return nil, rw.ioErr("refcount table", int64(h.RefcountTableOffset), err)
	}
	r.tableOff = int64(h.RefcountTableOffset)
	r.table = make([]uint64, n/8)
	for i := range r.table {
		r.table[i] = binary.BigEndian.Uint64(buf[i*8:])
	}
	return r, nil
}

func (r *rwRefcounts) get(blk []byte, i int64) uint64 {
	b := blk[i*r.width:]
	switch r.width {
	case 1:
		return uint64(b[0])
	case 2:
		return uint64(binary.BigEndian.Uint16(b))
	case 4:
		return uint64(binary.BigEndian.Uint32(b))
	}
	return binary.BigEndian.Uint64(b)
}

func (r *rwRefcounts) put(blk []byte, i int64, v uint64) {
	b := blk[i*r.width:]
	switch r.width {
	case 1:
		b[0] = byte(v)
	case 2:
		binary.BigEndian.PutUint16(b, uint16(v))
	case 4:
		binary.BigEndian.PutUint32(b, uint32(v))
	default:
		binary.BigEndian.PutUint64(b, v)
	}
}

func (r *rwRefcounts) max() uint64 {
	if r.width == 8 {
		return 1<<63 - 1
	}
	return 1<<(8*r.width) - 1
}

// loadBlock returns block b, nil when the table has no block for it.
func (rw *RW) loadBlock(b int64) ([]byte, error) {
	r := rw.rc
	if blk, ok := r.blocks[b]; ok {
		return blk, nil
	}
	if b >= int64(len(r.table)) {
		return nil, nil
	}
	e := r.table[b]
	off := int64(e & RefcountTableOffsetMask)
	if off == 0 {
		return nil, nil
	}
	entryOff := r.tableOff + b*8
	if e&^RefcountTableOffsetMask != 0 || off%rw.cs != 0 {
		return nil, fmtErr(rw.name, entryOff, e, "refcount table entry %d: reserved bits set or block not cluster aligned", b)
	}
	if off < rw.cs || off+rw.cs > rw.end {
		return nil, fmtErr(rw.name, entryOff, off, "refcount table entry %d points outside the file", b)
	}
	blk := make([]byte, rw.cs)
	if err := readFull(rw.f, blk, off); err != nil {
		return nil, rw.ioErr("refcount block", off, err)
	}
	if len(r.blocks) >= maxCachedBlocks {
		clear(r.blocks)
	}
	r.blocks[b] = blk
	rw.meta[off/rw.cs] = "refcount block"
	return blk, nil
}

// maxCachedBlocks bounds the refcount blocks kept in memory (they are
// written through, so dropping them only costs a reread).
const maxCachedBlocks = 256

// refcount returns the count of host cluster h.
func (rw *RW) refcount(h int64) (uint64, error) {
	r := rw.rc
	blk, err := rw.loadBlock(h / r.perBlock)
	if err != nil || blk == nil {
		return 0, err
	}
	return r.get(blk, h%r.perBlock), nil
}

// setRefcount writes the count of host cluster h, creating its refcount
// block (and growing the table) when there is none.
func (rw *RW) setRefcount(h int64, v uint64) error {
	r := rw.rc
	b := h / r.perBlock
	blk, err := rw.loadBlock(b)
	if err != nil {
		return err
	}
	if blk == nil {
		if blk, err = rw.newBlock(b); err != nil {
			return err
		}
	}
	r.put(blk, h%r.perBlock, v)
	off := int64(r.table[b]&RefcountTableOffsetMask) + (h%r.perBlock)*r.width
	if _, err := rw.f.WriteAt(blk[(h%r.perBlock)*r.width:][:r.width], off); err != nil {
		return writeError(rw.name, "refcount", off, err)
	}
	return nil
}

// addRef adds delta (+1 or -1) to the count of host cluster h.
func (rw *RW) addRef(h int64, delta int) error {
	v, err := rw.refcount(h)
	if err != nil {
		return err
	}
	switch {
	case delta < 0 && v == 0:
		return fmtErr(rw.name, h*rw.cs, nil, "refcount of the cluster would drop below zero (image metadata is inconsistent; run qemu-img check)")
	case delta > 0 && v >= rw.rc.max():
		return fmtErr(rw.name, h*rw.cs, v, "refcount of the cluster would overflow")
	}
	return rw.setRefcount(h, uint64(int64(v)+int64(delta)))
}

// newBlock creates refcount block b in a new cluster at the end of the
// file. The block's own count is set before the table points to it.
func (rw *RW) newBlock(b int64) ([]byte, error) {
	r := rw.rc
	if b >= int64(len(r.table)) {
		if err := rw.growTable(b + 1); err != nil {
			return nil, err
		}
		// Counting the new table may have created block b already.
		if blk, err := rw.loadBlock(b); err != nil || blk != nil {
			return blk, err
		}
	}
	h := rw.end / rw.cs
	rw.end += rw.cs
	blk := make([]byte, rw.cs)
	self := h/r.perBlock == b
	if self {
		r.put(blk, h%r.perBlock, 1)
	}
	if _, err := rw.f.WriteAt(blk, h*rw.cs); err != nil {
		return nil, writeError(rw.name, "refcount block", h*rw.cs, err)
	}
	rw.meta[h] = "refcount block"
	if !self {
		if err := rw.setRefcount(h, 1); err != nil {
			return nil, err
		}
	}
	r.table[b] = uint64(h * rw.cs)
	var e [8]byte
	binary.BigEndian.PutUint64(e[:], r.table[b])
	if _, err := rw.f.WriteAt(e[:], r.tableOff+b*8); err != nil {
		return nil, writeError(rw.name, "refcount table entry", r.tableOff+b*8, err)
	}
	if len(r.blocks) >= maxCachedBlocks {
		clear(r.blocks)
	}
	r.blocks[b] = blk
	return blk, nil
}

// growTable moves the refcount table to a bigger one at the end of the
// file, with room for at least need blocks and for the blocks that count
// the new table itself. The header switches to the new table only once it
// is complete on disk; the old table's clusters are freed after.
func (rw *RW) growTable(need int64) error {
	r := rw.rc
	if r.growing {
		return fmt.Errorf("%s: refcount table growth recursed", rw.name)
	}
	r.growing = true
	defer func() { r.growing = false }()

	perCluster := rw.cs / 8
	entries := max(need, 2*int64(len(r.table)))
	// Room for the blocks counting everything up to the new table's end.
	for {
		clusters := (entries + perCluster - 1) / perCluster
		endCl := rw.end/rw.cs + clusters + clusters/r.perBlock + 2
		if blocks := endCl/r.perBlock + 1; blocks > entries {
			entries = blocks
			continue
		}
		entries = clusters * perCluster
		break
	}
	if entries*8 > MaxRefcountSize*8 {
		return &vdisk.FormatError{Image: rw.name, Off: -1, Msg: "refcount table would exceed qemu's 8 MiB limit", Err: vdisk.ErrUnsupported}
	}
	clusters := entries / perCluster
	oldOff, oldClusters := r.tableOff, int64(len(r.table))*8/rw.cs
	newOff := rw.end
	rw.end += clusters * rw.cs
	table := make([]uint64, entries)
	copy(table, r.table)
	r.table, r.tableOff = table, newOff
	for c := range clusters {
		rw.meta[newOff/rw.cs+c] = "refcount table"
		if err := rw.setRefcount(newOff/rw.cs+c, 1); err != nil {
			return err
		}
	}
	buf := make([]byte, clusters*rw.cs)
	for i, e := range r.table {
		binary.BigEndian.PutUint64(buf[i*8:], e)
	}
	if _, err := rw.f.WriteAt(buf, newOff); err != nil {
		return writeError(rw.name, "refcount table", newOff, err)
	}
	if err := rw.f.Sync(); err != nil {
		return err
	}
	// refcount_table_offset and refcount_table_clusters are adjacent
	// (header bytes 48-59): one write switches tables.
	var hb [12]byte
	binary.BigEndian.PutUint64(hb[0:], uint64(newOff))
	binary.BigEndian.PutUint32(hb[8:], uint32(clusters))
	if _, err := rw.f.WriteAt(hb[:], 48); err != nil {
		return writeError(rw.name, "header", 48, err)
	}
	if err := rw.f.Sync(); err != nil {
		return err
	}
	for c := range oldClusters {
		delete(rw.meta, oldOff/rw.cs+c)
		if err := rw.addRef(oldOff/rw.cs+c, -1); err != nil {
			return err
		}
	}
	return nil
}

// allocClusters takes n contiguous clusters at the end of the file with a
// count of one each, and returns the first.
func (rw *RW) allocClusters(n int64) (int64, error) {
	start := rw.end / rw.cs
	// A refcount block may count clusters past the end of the file (qemu
	// preallocates); never hand out one that is in use.
	for i := int64(0); i < n; i++ {
		v, err := rw.refcount(start + i)
		if err != nil {
			return 0, err
		}
		if v != 0 {
			start, i = start+i+1, -1
		}
	}
	rw.end = (start + n) * rw.cs
	for i := range n {
		if err := rw.setRefcount(start+i, 1); err != nil {
			return 0, err
		}
	}
	return start, nil
}
