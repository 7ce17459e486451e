package qcow2

import (
	"encoding/binary"
	"fmt"
	"io"
)

// Cluster mapping (spec "Cluster mapping" and "Extended L2 Entries"): a
// guest offset goes through one L1 entry to an L2 table, whose entry says
// whether the guest cluster (or subcluster) is unallocated, zero, stored at
// a host offset, or compressed. This file turns entries into segments, the
// unit the read path and the allocation map work with.

// l1ChunkEntries is how many L1 entries are read and cached together
// (64 KiB). The L1 table is never read whole: qemu allows 32 MiB of it.
const l1ChunkEntries = 8192

// segKind is what a segment of the guest disk is in this layer.
type segKind uint8

const (
	segUnallocated segKind = iota // not in this layer: backing file or zeros
	segZero                       // reads as zeros
	segData                       // stored at a host offset in the data file
	segCompressed                 // one compressed cluster
)

// segment is a range of guest bytes starting at some position with one
// state in this layer, never crossing a cluster boundary except for an
// unallocated L2 table, which spans all the clusters it would map.
type segment struct {
	kind     segKind
	n        int64  // length in bytes, > 0
	host     int64  // segData: host offset of the segment's first byte
	entry    uint64 // segCompressed: the L2 descriptor
	entryOff int64  // file offset of the L2 entry (or L1 entry), for errors
}

// cursor remembers the L2 table of the last lookup, so a walk over
// consecutive clusters fetches each table from the cache once. Each call
// of ReadAt or Extents has its own, which is what makes concurrent readers
// safe without a lock on the walk.
type cursor struct {
	l1Index  int64 // -1: nothing loaded
	tableOff int64
	table    []byte // nil: the L1 entry is empty
}

func newCursor() cursor { return cursor{l1Index: -1} }

// L1Entry returns entry i of the active L1 table as stored (host order).
// For the writer: i must be below Header().L1Size.
func (img *Image) L1Entry(i int64) (uint64, error) {
	if i < 0 || i >= int64(img.hdr.L1Size) {
		return 0, fmt.Errorf("%s: L1 index %d out of range", img.name, i)
	}
	chunk := i / l1ChunkEntries
	b, err := img.l1.get(chunk, func() ([]byte, error) {
		start := chunk * l1ChunkEntries
		n := min(l1ChunkEntries, int64(img.hdr.L1Size)-start)
		buf := make([]byte, n*8)
		off := int64(img.hdr.L1TableOffset) + start*8
		if err := readFull(img.f, buf, off); err != nil {
			return nil, img.ioErr("reading the L1 table", off, err)
		}
		return buf, nil
	})
	if err != nil {
		return 0, err
	}
	return binary.BigEndian.Uint64(b[(i%l1ChunkEntries)*8:]), nil
}

// l2Table returns the L2 table that L1 entry i points to, nil when the
// entry is empty, after checking its offset.
func (img *Image) l2Table(i int64) (int64, []byte, error) {
	e, err := img.L1Entry(i)
	if err != nil {
		return 0, nil, err
	}
	off := int64(e & L1OffsetMask)
	if off == 0 {
		return 0, nil, nil
	}
	cs := img.hdr.ClusterSize
	entryOff := int64(img.hdr.L1TableOffset) + i*8
	if off%cs != 0 {
		return 0, nil, fmtErr(img.name, entryOff, off, "L1 entry %d: L2 table offset not aligned to the cluster size", i)
	}
	if off > img.fileSize-cs {
		return 0, nil, fmtErr(img.name, entryOff, off, "L1 entry %d: L2 table past the end of the file (%d bytes)", i, img.fileSize)
	}
	if what := img.metadataAt(off, cs); what != "" {
		return 0, nil, fmtErr(img.name, entryOff, off, "L1 entry %d: L2 table inside the %s", i, what)
	}
	t, err := img.l2.get(off, func() ([]byte, error) {
		buf := make([]byte, cs)
		if err := readFull(img.f, buf, off); err != nil {
			return nil, img.ioErr("reading an L2 table", off, err)
		}
		return buf, nil
	})
	return off, t, err
}

// segmentAt describes the guest bytes from pos on (0 <= pos < VirtualSize).
func (img *Image) segmentAt(c *cursor, pos int64) (segment, error) {
	h := img.hdr
	cbits := h.ClusterBits
	gc := pos >> cbits
	l1i := gc / h.L2Entries
	if c.l1Index != l1i {
		off, t, err := img.l2Table(l1i)
		if err != nil {
			return segment{}, err
		}
		c.l1Index, c.tableOff, c.table = l1i, off, t
	}
	if c.table == nil {
		spanEnd := (l1i + 1) * h.L2Entries << cbits
		return segment{kind: segUnallocated, n: spanEnd - pos}, nil
	}
	eo := (gc % h.L2Entries) * h.L2EntrySize
	entry := binary.BigEndian.Uint64(c.table[eo:])
	var bitmap uint64
	if h.ExtendedL2 {
		bitmap = binary.BigEndian.Uint64(c.table[eo+8:])
	}
	return img.classify(entry, bitmap, pos, c.tableOff+eo)
}

// classify turns one L2 entry into the segment starting at guest offset
// pos inside its cluster. The rules follow qemu's reading of the spec
// (block/qcow2.h, qcow2_get_subcluster_type): the zero flag counts in
// version 2 images too; with an external data file, offset 0 with the
// COPIED bit is an allocated cluster.
func (img *Image) classify(entry, bitmap uint64, pos, entryOff int64) (segment, error) {
	h := img.hdr
	cs := h.ClusterSize
	in := pos & (cs - 1)
	rest := cs - in
	if entry&L2Compressed != 0 {
		if h.HasDataFile {
			return segment{}, fmtErr(img.name, entryOff, entry, "compressed cluster in an image with an external data file")
		}
		return segment{kind: segCompressed, n: rest, entry: entry, entryOff: entryOff}, nil
	}
	host := int64(entry & L2OffsetMask)
	allocated := host != 0 || (h.HasDataFile && entry&EntryCopied != 0)
	if !h.ExtendedL2 {
		switch {
		case entry&L2Zero != 0:
			return segment{kind: segZero, n: rest}, nil
		case !allocated:
			return segment{kind: segUnallocated, n: rest}, nil
		}
		if err := img.checkHost(host, pos, rest, entryOff); err != nil {
			return segment{}, err
		}
		return segment{kind: segData, n: rest, host: host + in, entryOff: entryOff}, nil
	}

	alloc, zero := uint32(bitmap), uint32(bitmap>>32)
	if alloc&zero != 0 {
		return segment{}, fmtErr(img.name, entryOff+8, bitmap, "subclusters marked both allocated and zero")
	}
	if !allocated && alloc != 0 {
		return segment{}, fmtErr(img.name, entryOff+8, bitmap, "subclusters allocated in a cluster without a host offset")
	}
	state := func(sc int64) segKind {
		switch {
		case zero&(1<<sc) != 0:
			return segZero
		case alloc&(1<<sc) != 0:
			return segData
		}
		return segUnallocated
	}
	scs := h.SubclusterSize
	sc := in / scs
	k := state(sc)
	j := sc + 1
	for j < SubclustersPerCluster && state(j) == k {
		j++
	}
	s := segment{kind: k, n: j*scs - in}
	if k == segData {
		if err := img.checkHost(host, pos, s.n, entryOff); err != nil {
			return segment{}, err
		}
		s.host, s.entryOff = host+in, entryOff
	}
	return s, nil
}

// checkHost validates the host cluster at host holding the n guest bytes
// at pos: aligned, the bytes inside their file (only those the guest disk
// reaches: qemu writes just the allocated subclusters of a cluster, and the
// last cluster of a disk whose size is not a multiple of the cluster size
// may be short), and not on top of metadata.
func (img *Image) checkHost(host, pos, n, entryOff int64) error {
	cs := img.hdr.ClusterSize
	if host%cs != 0 {
		return fmtErr(img.name, entryOff, host, "L2 entry for guest offset %d: host offset not aligned to the cluster size", pos&^(cs-1))
	}
	end := host + pos&(cs-1) + min(n, img.hdr.VirtualSize-pos)
	if end > img.dataSize {
		what := "image file"
		if img.data != img.f {
			what = "external data file " + img.data.Name()
		}
		return fmtErr(img.name, entryOff, host, "L2 entry for guest offset %d points past the end of the %s (%d bytes)", pos&^(cs-1), what, img.dataSize)
	}
	if img.data == img.f {
		if what := img.metadataAt(host, cs); what != "" {
			return fmtErr(img.name, entryOff, host, "L2 entry for guest offset %d points into the %s", pos&^(cs-1), what)
		}
	}
	return nil
}

// metaRange is image metadata that no data cluster or L2 table may
// overlap.
type metaRange struct {
	off, end int64
	what     string
}

// metadataAt names the metadata that [off, off+n) overlaps, "" if none.
func (img *Image) metadataAt(off, n int64) string {
	for _, m := range img.meta {
		if off < m.end && m.off < off+n {
			return m.what
		}
	}
	return ""
}

// L2Ref locates the L2 entry of one guest cluster. For the writer.
type L2Ref struct {
	L1Index       int64
	L2TableOffset int64  // 0 when the L1 entry is empty (no L2 table)
	EntryOffset   int64  // file offset of the L2 entry, 0 without a table
	Entry         uint64 // the descriptor, first 64 bits of the entry
	Bitmap        uint64 // subcluster bitmap with extended L2 entries
}

// LookupL2 returns the L2 entry mapping the guest cluster that holds
// guestOff, after validating the L1 entry and the L2 table location (not
// the L2 entry itself). For the writer, which must call InvalidateTables
// after changing tables on disk.
func (img *Image) LookupL2(guestOff int64) (L2Ref, error) {
	if guestOff < 0 || guestOff >= img.hdr.VirtualSize {
		return L2Ref{}, fmt.Errorf("%s: guest offset %d outside the disk", img.name, guestOff)
	}
	gc := guestOff >> img.hdr.ClusterBits
	r := L2Ref{L1Index: gc / img.hdr.L2Entries}
	off, t, err := img.l2Table(r.L1Index)
	if err != nil || t == nil {
		return r, err
	}
	eo := (gc % img.hdr.L2Entries) * img.hdr.L2EntrySize
	r.L2TableOffset, r.EntryOffset = off, off+eo
	r.Entry = binary.BigEndian.Uint64(t[eo:])
	if img.hdr.ExtendedL2 {
		r.Bitmap = binary.BigEndian.Uint64(t[eo+8:])
	}
	return r, nil
}

// InvalidateTables drops every cached L1 chunk, L2 table and decompressed
// cluster. Writers that change the tables of an image also read through an
// Image call it after each metadata update.
func (img *Image) InvalidateTables() {
	img.l1.reset()
	img.l2.reset()
	img.zc.reset()
}

// readFull reads exactly len(b) bytes at off.
func readFull(r io.ReaderAt, b []byte, off int64) error {
	n, err := r.ReadAt(b, off)
	if n == len(b) {
		return nil
	}
	if err == nil || err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return err
}

// ioErr reports a failed read of the image file.
func (img *Image) ioErr(what string, off int64, err error) error {
	if err == io.ErrUnexpectedEOF {
		return fmtErr(img.name, off, nil, "%s: file ends early (truncated image?)", what)
	}
	return fmt.Errorf("%s: %s at offset %d: %w", img.name, what, off, err)
}
