package qcow2

import (
	"encoding/binary"
	"fmt"
)

// maxRefcount is the largest count a 16-bit refcount (refcount_order 4)
// holds.
const maxRefcount = 1<<16 - 1

// rcAccum counts references to the host clusters a streaming Writer
// allocates. The writer allocates host clusters strictly in increasing
// order, so a refcount block (spec "Host cluster management") is final once
// the allocation cursor has passed the clusters it covers: it is then
// written right away and only its offset is kept. Memory stays bounded by a
// few blocks however big the image.
type rcAccum struct {
	perBlock int64              // refcount entries per block
	open     map[int64][]uint16 // blocks not yet written, by index
	table    []uint64           // host offsets of written blocks, by index
}

func newRCAccum(clusterSize int64) *rcAccum {
	return &rcAccum{perBlock: clusterSize / 2, open: map[int64][]uint16{}}
}

func (r *rcAccum) block(b int64) []uint16 {
	blk, ok := r.open[b]
	if !ok {
		if b < int64(len(r.table)) {
			// A block is only written once the cursor passed it.
			panic(fmt.Sprintf("qcow2 writer: refcount of cluster in written block %d", b))
		}
		blk = make([]uint16, r.perBlock)
		r.open[b] = blk
	}
	return blk
}

// get returns the count of host cluster h.
func (r *rcAccum) get(h int64) uint16 {
	blk, ok := r.open[h/r.perBlock]
	if !ok {
		return 0
	}
	return blk[h%r.perBlock]
}

// inc adds one reference to host cluster h. Callers make sure the count
// stays below maxRefcount (see Writer.placeCompressed).
func (r *rcAccum) inc(h int64) {
	r.block(h / r.perBlock)[h%r.perBlock]++
}

// encodeBlock writes block b's counts, big-endian 16-bit (refcount_order 4).
func (r *rcAccum) encodeBlock(b int64, buf []byte) {
	blk := r.open[b]
	for i, v := range blk {
		binary.BigEndian.PutUint16(buf[2*i:], v)
	}
}
