package qcow2

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"sort"
)

// ClusterKind says how a Writer stores one virtual cluster.
type ClusterKind uint8

const (
	// ClusterUnallocated leaves the cluster out: it reads from the backing
	// file, or as zeros without one.
	ClusterUnallocated ClusterKind = iota
	// ClusterZero records a zero cluster (L2 bit 0, no host cluster): it
	// reads as zeros whatever the backing file holds.
	ClusterZero
	// ClusterData stores Data, exactly one cluster of bytes.
	ClusterData
	// ClusterCompressed stores Data, the cluster as compressed by a
	// Compressor of the image's compression type.
	ClusterCompressed
)

// Cluster is one virtual cluster handed to Writer.WriteClusters.
type Cluster struct {
	Kind ClusterKind
	Data []byte
}

// Writer streams a new qcow2 version 3 image to a file: clusters are handed
// over in increasing virtual order, data goes to the file contiguously as it
// comes, and each table is written as soon as it is final: an L2 table once
// the clusters it maps have been passed, a refcount block once the
// allocation cursor has passed the clusters it counts; the L1 table, the
// refcount table and the header at Close. Memory stays at a few clusters
// plus the L1 table however big the image. Small runs of data clusters
// bypass the page cache where the filesystem allows (O_DIRECT, see
// writer_direct.go).
//
// Nothing is ever rewritten, so an interrupted Writer leaves a file without
// a valid header (cluster 0 is written last): callers remove it, after
// Abort.
type Writer struct {
	f    *os.File
	name string
	g    geometry
	opts CreateOptions

	l1     []uint64
	l2     map[int64][]uint64 // L2 tables not yet written, by L1 index
	nextVC int64              // first virtual cluster not yet handed over
	nVC    int64              // virtual clusters in the image

	cur int64 // allocation cursor: first free host cluster
	rc  *rcAccum

	// Compressed clusters are packed byte by byte (spec "Compressed
	// Clusters Descriptor"); tailH is the host cluster the next one may
	// start in, tailUsed the bytes of it already used (0: none open).
	tailH, tailUsed int64
	cbuf            []byte // compressed bytes not yet written,
	cbufOff         int64  // starting at this host offset

	wbDone int64      // bytes before this offset had writeback started
	direct *directOut // nil: data goes through the page cache too

	hdr   Header
	hdrCl []byte
	err   error // sticky
}

// NewWriter starts an image of size bytes in f, which it empties first. The
// caller closes f after Writer.Close; Close fsyncs it.
func NewWriter(f *os.File, size int64, opts CreateOptions) (*Writer, error) {
	g, err := newGeometry(size, &opts)
	if err != nil {
		return nil, err
	}
	w := &Writer{f: f, name: f.Name(), g: g, opts: opts, l2: map[int64][]uint64{},
		rc: newRCAccum(g.clusterSize)}
	w.nVC = (g.size + g.clusterSize - 1) / g.clusterSize
	// Build the header cluster now so a bad backing name fails before any
	// data is written.
	if w.hdrCl, err = encodeHeaderCluster(&w.g, &w.opts, &w.hdr); err != nil {
		return nil, err
	}
	if err := f.Truncate(0); err != nil {
		return nil, writeError(w.name, "image", 0, err)
	}
	w.l1 = make([]uint64, g.l1Size)
	w.direct = openDirect(f, g.clusterSize)
	w.cur = 1 // cluster 0: the header
	w.rc.inc(0)
	return w, nil
}

// ClusterSize is the image's cluster size.
func (w *Writer) ClusterSize() int64 { return w.g.clusterSize }

// Size is the image's virtual size (rounded up to 512 bytes).
func (w *Writer) Size() int64 { return w.g.size }

// WriteClusters stores cls as the virtual clusters from index vc on. Calls
// must come in increasing vc order without overlap; clusters never handed
// over stay unallocated. Data is written (not yet synced), or copied into
// the O_DIRECT staging buffer (writer_direct.go), when it returns, so the
// caller may reuse the buffers.
func (w *Writer) WriteClusters(vc int64, cls []Cluster) error {
	if w.err != nil {
		return w.err
	}
	if vc < w.nextVC || vc+int64(len(cls)) > w.nVC {
		return fmt.Errorf("qcow2 writer: clusters %d..%d out of order or past the end (next %d, total %d)", vc, vc+int64(len(cls)), w.nextVC, w.nVC)
	}
	cs := w.g.clusterSize
	// Compressed clusters first, packed together, then whole clusters: one
	// partly used host cluster per call at most.
	for i, c := range cls {
		if c.Kind != ClusterCompressed {
			continue
		}
		if len(c.Data) == 0 || int64(len(c.Data)) >= cs {
			return w.fail(fmt.Errorf("qcow2 writer: compressed cluster of %d bytes for %d-byte clusters", len(c.Data), cs))
		}
		off, err := w.placeCompressed(c.Data)
		if err != nil {
			return w.fail(err)
		}
		w.setL2(vc+int64(i), EncodeCompressed(uint64(off), len(c.Data), w.g.clusterBits))
	}
	if err := w.flushCompressed(); err != nil {
		return w.fail(err)
	}
	var bufs [][]byte
	first := int64(-1)
	for i, c := range cls {
		switch c.Kind {
		case ClusterData:
			if int64(len(c.Data)) != cs {
				return w.fail(fmt.Errorf("qcow2 writer: data cluster of %d bytes, want %d", len(c.Data), cs))
			}
			h := w.alloc(1)
			if first < 0 {
				first = h
			}
			bufs = appendBuf(bufs, c.Data)
			w.setL2(vc+int64(i), uint64(h*cs)|EntryCopied)
		case ClusterZero:
			w.setL2(vc+int64(i), L2Zero)
		case ClusterUnallocated, ClusterCompressed:
		default:
			return w.fail(fmt.Errorf("qcow2 writer: unknown cluster kind %d", c.Kind))
		}
	}
	if first >= 0 {
		if err := w.writeData(bufs, first*cs); err != nil {
			return w.fail(writeError(w.name, "data clusters", first*cs, err))
		}
	}
	w.nextVC = vc + int64(len(cls))
	if err := w.flushL2(false); err != nil {
		return w.fail(err)
	}
	if err := w.flushRefcounts(); err != nil {
		return w.fail(err)
	}
	return nil
}

// writeback starts writing out what this call wrote, in steps of at least
// wbStep so small batches do not each make a system call.
func (w *Writer) writeback(from, to int64) {
	if to-w.wbDone >= wbStep {
		startWriteback(w.f, w.wbDone, to-w.wbDone)
		w.wbDone = to
	}
}

const wbStep = 8 << 20

func (w *Writer) fail(err error) error {
	w.err = err
	w.closeDirect()
	return err
}

// Abort releases what the writer holds without finishing the image (which
// the caller removes). A closed or failed writer holds nothing.
func (w *Writer) Abort() {
	w.closeDirect()
	if w.err == nil {
		w.err = fmt.Errorf("qcow2 writer: %s aborted", w.name)
	}
}

// alloc takes n host clusters at the cursor and counts one reference each.
func (w *Writer) alloc(n int64) int64 {
	h := w.cur
	for i := range n {
		w.rc.inc(h + i)
	}
	w.cur += n
	return h
}

// placeCompressed picks the host offset of a compressed cluster of len(data)
// bytes, counts a reference on every host cluster its sectors touch (as
// qemu-img check does), and queues the bytes.
func (w *Writer) placeCompressed(data []byte) (int64, error) {
	cs := w.g.clusterSize
	n := int64(len(data))
	var off int64
	switch {
	case w.tailUsed > 0 && w.tailUsed+n <= cs && w.rc.get(w.tailH) < maxRefcount:
		off = w.tailH*cs + w.tailUsed // fits in the open cluster
	case w.tailUsed > 0 && w.tailH == w.cur-1 && w.rc.get(w.tailH) < maxRefcount:
		off = w.tailH*cs + w.tailUsed // spills into the next, still free, cluster
	default:
		off = w.cur * cs
	}
	end := off + n
	firstH, lastH := off/cs, (end-1)/cs
	for h := firstH; h <= lastH; h++ {
		if h >= w.cur {
			w.alloc(1)
		} else {
			w.rc.inc(h)
		}
	}
	w.tailH, w.tailUsed = lastH, end-lastH*cs
	if w.tailUsed == cs {
		w.tailUsed = 0
	}
	if len(w.cbuf) > 0 && w.cbufOff+int64(len(w.cbuf)) != off {
		if err := w.flushCompressed(); err != nil {
			return 0, err
		}
	}
	if len(w.cbuf) == 0 {
		w.cbufOff = off
	}
	w.cbuf = append(w.cbuf, data...)
	return off, nil
}

func (w *Writer) flushCompressed() error {
	if len(w.cbuf) == 0 {
		return nil
	}
	if _, err := w.f.WriteAt(w.cbuf, w.cbufOff); err != nil {
		return writeError(w.name, "compressed clusters", w.cbufOff, err)
	}
	w.cbuf = w.cbuf[:0]
	return nil
}

func (w *Writer) setL2(vc int64, entry uint64) {
	i := vc / w.g.l2Entries
	t, ok := w.l2[i]
	if !ok {
		t = make([]uint64, w.g.l2Entries)
		w.l2[i] = t
	}
	t[vc%w.g.l2Entries] = entry
}

// flushL2 writes the L2 tables whose clusters have all been handed over (or
// all of them), side by side.
func (w *Writer) flushL2(all bool) error {
	var idx []int64
	for i := range w.l2 {
		if all || (i+1)*w.g.l2Entries <= w.nextVC {
			idx = append(idx, i)
		}
	}
	if len(idx) == 0 {
		return nil
	}
	sort.Slice(idx, func(a, b int) bool { return idx[a] < idx[b] })
	cs := w.g.clusterSize
	h := w.alloc(int64(len(idx)))
	buf := make([]byte, int64(len(idx))*cs)
	for k, i := range idx {
		t := w.l2[i]
		for j, e := range t {
			binary.BigEndian.PutUint64(buf[int64(k)*cs+int64(j)*8:], e)
		}
		w.l1[i] = uint64((h+int64(k))*cs) | EntryCopied
		delete(w.l2, i)
	}
	if _, err := w.f.WriteAt(buf, h*cs); err != nil {
		return writeError(w.name, "L2 tables", h*cs, err)
	}
	return nil
}

// flushRefcounts writes the refcount blocks whose clusters are all
// allocated and final. A block written now lands at the cursor, so its own
// count goes into a later block.
func (w *Writer) flushRefcounts() error {
	r := w.rc
	var ready []int64
	for b := range r.open {
		if (b+1)*r.perBlock > w.cur {
			continue // the cursor is still in it
		}
		if w.tailUsed > 0 && b == w.tailH/r.perBlock {
			continue // the open compressed cluster may gain references
		}
		ready = append(ready, b)
	}
	sort.Slice(ready, func(a, b int) bool { return ready[a] < ready[b] })
	for _, b := range ready {
		if err := w.writeRefcountBlock(b, w.alloc(1)); err != nil {
			return err
		}
	}
	return nil
}

func (w *Writer) writeRefcountBlock(b, h int64) error {
	r := w.rc
	cs := w.g.clusterSize
	buf := make([]byte, cs)
	r.encodeBlock(b, buf)
	if _, err := w.f.WriteAt(buf, h*cs); err != nil {
		return writeError(w.name, "refcount block", h*cs, err)
	}
	for int64(len(r.table)) <= b {
		r.table = append(r.table, 0)
	}
	r.table[b] = uint64(h * cs)
	delete(r.open, b)
	return nil
}

// Close writes what is left (open L2 tables, the L1 table, the remaining
// refcount blocks, the refcount table) and then the header, and fsyncs
// (unless CreateOptions.Scratch). It does not close the file.
func (w *Writer) Close(ctx context.Context) error {
	if w.err != nil {
		return w.err
	}
	if err := w.close(ctx); err != nil {
		return w.fail(err)
	}
	w.err = fmt.Errorf("qcow2 writer: %s already closed", w.name)
	return nil
}

func (w *Writer) close(ctx context.Context) error {
	cs := w.g.clusterSize
	if d := w.direct; d != nil {
		off := d.stageOff
		err := w.flushData()
		w.closeDirect()
		if err != nil {
			return writeError(w.name, "data clusters", off, err)
		}
	}
	if err := w.flushCompressed(); err != nil {
		return err
	}
	w.tailUsed = 0
	if err := w.flushL2(true); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	// L1 table (spec: contiguous, cluster aligned). qemu counts none for
	// an empty table, so allocate none.
	if n := (w.g.l1Size*8 + cs - 1) / cs; n > 0 {
		h := w.alloc(n)
		buf := make([]byte, n*cs)
		for i, e := range w.l1 {
			binary.BigEndian.PutUint64(buf[i*8:], e)
		}
		if _, err := w.f.WriteAt(buf, h*cs); err != nil {
			return writeError(w.name, "L1 table", h*cs, err)
		}
		w.hdr.L1TableOffset = uint64(h * cs)
	}
	if err := w.writeRefcountTable(); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	w.hdr.L1Size = uint32(w.g.l1Size)
	hdr := w.hdrCl
	w.hdr.Encode(hdr)
	// The file must end after the last cluster (tables are written whole).
	if err := w.f.Truncate(w.cur * cs); err != nil {
		return writeError(w.name, "image", w.cur*cs, err)
	}
	// Data and tables reach the disk before the header that makes them an
	// image.
	if err := w.sync(); err != nil {
		return writeError(w.name, "image", 0, err)
	}
	if _, err := w.f.WriteAt(hdr, 0); err != nil {
		return writeError(w.name, "header", 0, err)
	}
	if err := w.sync(); err != nil {
		return writeError(w.name, "header", 0, err)
	}
	return nil
}

func (w *Writer) sync() error {
	if w.opts.Scratch {
		return nil
	}
	return w.f.Sync()
}

// writeRefcountTable writes every refcount block not yet written and the
// refcount table after them. Both need counts themselves, which can need
// more blocks and a bigger table: iterate to the fixed point.
func (w *Writer) writeRefcountTable() error {
	r := w.rc
	cs := w.g.clusterSize
	written := func(b int64) bool { return b < int64(len(r.table)) && r.table[b] != 0 }
	unwritten := func(nb int64) int64 {
		n := int64(0)
		for b := range nb {
			if !written(b) {
				n++
			}
		}
		return n
	}
	ceil := func(a, b int64) int64 { return (a + b - 1) / b }
	nb := ceil(w.cur, r.perBlock)
	R, T := unwritten(nb), int64(1)
	for {
		end := w.cur + R + T
		nb = ceil(end, r.perBlock)
		R2, T2 := unwritten(nb), ceil(nb*8, cs)
		if R2 == R && T2 == T {
			break
		}
		R, T = max(R, R2), max(T, T2)
	}
	blocksAt := w.alloc(R)
	tableAt := w.alloc(T)
	h := blocksAt
	for b := range nb {
		if written(b) {
			continue
		}
		if err := w.writeRefcountBlock(b, h); err != nil {
			return err
		}
		h++
	}
	if len(r.open) != 0 {
		return fmt.Errorf("qcow2 writer: %d refcount blocks left over", len(r.open))
	}
	buf := make([]byte, T*cs)
	for b, off := range r.table {
		binary.BigEndian.PutUint64(buf[b*8:], off)
	}
	if _, err := w.f.WriteAt(buf, tableAt*cs); err != nil {
		return writeError(w.name, "refcount table", tableAt*cs, err)
	}
	w.hdr.RefcountTableOffset = uint64(tableAt * cs)
	w.hdr.RefcountTableClusters = uint32(T)
	return nil
}
