package qcow2

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync"

	"github.com/klauspost/compress/flate"
	"github.com/klauspost/compress/zstd"
)

// Compressed clusters (spec "Compressed Clusters Descriptor"): the L2
// descriptor gives a host byte offset and a count of 512-byte sectors; the
// compressed stream starts at the offset and ends somewhere in the last
// sector, which may also hold the start of the next cluster's stream.
// Decompression stops when it has produced one cluster, as qemu's does
// (block/qcow2-threads.c): zlib type clusters are a raw deflate stream,
// zstd type clusters one or more zstd frames.

// compressedCluster fills dst (one cluster) with the guest cluster at guest
// whose L2 entry at entryOff is the compressed descriptor entry.
func (img *Image) compressedCluster(dst []byte, entry uint64, entryOff, guest int64) error {
	coff64, nsec := CompressedDescriptor(entry, img.hdr.ClusterBits)
	if coff64 >= HostOffsetLimit {
		return fmtErr(img.name, entryOff, coff64, "compressed cluster for guest offset %d: host offset beyond 2^56", guest)
	}
	coff := int64(coff64)
	// The sector count fits in cluster_bits-8 bits, so csize is at most
	// two clusters.
	csize := int64(nsec)*SectorSize - coff%SectorSize
	if coff >= img.fileSize {
		return fmtErr(img.name, entryOff, coff, "compressed cluster for guest offset %d starts past the end of the file (%d bytes)", guest, img.fileSize)
	}
	if what := img.metadataAt(coff, min(csize, img.fileSize-coff)); what != "" {
		return fmtErr(img.name, entryOff, coff, "compressed cluster for guest offset %d lies in the %s", guest, what)
	}
	// qemu may end the file inside the last sector of the last compressed
	// cluster; reads past the end are zeros to it, and the stream ends
	// before them anyway.
	csize = min(csize, img.fileSize-coff)

	bp := img.cbufs.Get().(*[]byte)
	defer img.cbufs.Put(bp)
	src := (*bp)[:csize]
	if err := readFull(img.f, src, coff); err != nil {
		return img.ioErr("reading a compressed cluster", coff, err)
	}
	if err := decompress(img.hdr.CompressionType, dst, src); err != nil {
		return fmtErr(img.name, coff, nil, "compressed cluster for guest offset %d (L2 entry at %d, %s): %v",
			guest, entryOff, img.hdr.Compression, err)
	}
	return nil
}

// cachedCluster returns the decompressed cluster for a partial read,
// through the small cache of decompressed clusters, so that reading a
// compressed cluster in FUSE-sized pieces inflates it once.
func (img *Image) cachedCluster(s segment, guest int64) ([]byte, error) {
	coff, _ := CompressedDescriptor(s.entry, img.hdr.ClusterBits)
	return img.zc.get(int64(coff&(HostOffsetLimit-1)), func() ([]byte, error) {
		b := make([]byte, img.hdr.ClusterSize)
		if err := img.compressedCluster(b, s.entry, s.entryOff, guest); err != nil {
			return nil, err
		}
		return b, nil
	})
}

// errWrongSize is what decompress reports for streams that do not inflate
// to exactly one cluster.
var errWrongSize = errors.New("inflates to the wrong size")

// decompress inflates src into exactly len(dst) bytes.
func decompress(typ uint8, dst, src []byte) error {
	switch typ {
	case CompressionZlib:
		return inflate(dst, src)
	case CompressionZstd:
		return unzstd(dst, src)
	}
	return fmt.Errorf("unknown compression type %d", typ)
}

var flatePool sync.Pool // of io.ReadCloser implementing flate.Resetter

func inflate(dst, src []byte) error {
	r := bytes.NewReader(src)
	var fr io.ReadCloser
	if v := flatePool.Get(); v != nil {
		fr = v.(io.ReadCloser)
		if err := fr.(flate.Resetter).Reset(r, nil); err != nil {
			return err
		}
	} else {
		fr = flate.NewReader(r)
	}
	defer flatePool.Put(fr)
	n, err := io.ReadFull(fr, dst)
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return fmt.Errorf("%w: stream ends after %d bytes, want %d", errWrongSize, n, len(dst))
	}
	if err != nil {
		return fmt.Errorf("deflate stream: %v", err)
	}
	// The stream must end here. Bytes after its end (the rest of the
	// last sector) are not read by the decompressor.
	var one [1]byte
	if m, _ := fr.Read(one[:]); m > 0 {
		return fmt.Errorf("%w: stream holds more than %d bytes", errWrongSize, len(dst))
	}
	return nil
}

// zstdDecoder decodes clusters for every image: DecodeAll is safe for
// concurrent use and runs up to GOMAXPROCS decodes at once. The cap limit
// keeps a hostile frame from making it allocate beyond one cluster, and the
// window limit bounds its history buffers (qemu's frames for 2 MiB
// clusters have a 2 MiB window).
var zstdDecoder = sync.OnceValues(func() (*zstd.Decoder, error) {
	return zstd.NewReader(nil,
		zstd.WithDecoderConcurrency(runtime.GOMAXPROCS(0)),
		zstd.WithDecodeAllCapLimit(true),
		zstd.WithDecoderMaxWindow(4<<20),
		zstd.WithDecoderMaxMemory(1<<MaxClusterBits),
		zstd.IgnoreChecksum(false))
})

func unzstd(dst, src []byte) error {
	d, err := zstdDecoder()
	if err != nil {
		return err
	}
	// A first frame that states its content size must state one cluster.
	var fh zstd.Header
	if err := fh.Decode(src); err == nil && fh.HasFCS && fh.FrameContentSize != uint64(len(dst)) {
		return fmt.Errorf("%w: zstd frame of %d bytes, want %d", errWrongSize, fh.FrameContentSize, len(dst))
	}
	// The full slice expression matters: dst is often a window of the
	// caller's buffer, and the decoder writes up to cap(dst).
	out, err := d.DecodeAll(src, dst[:0:len(dst)])
	if len(out) > 0 && &out[0] != &dst[0] {
		copy(dst, out) // cannot happen with the cap limit; be safe
	}
	if len(out) == len(dst) {
		// Decoding stops once the cluster is full, as in qemu: an error
		// about what follows (padding of the last sector) does not count.
		return nil
	}
	if err != nil {
		return fmt.Errorf("%w: zstd stream (%v) after %d bytes, want %d", errWrongSize, err, len(out), len(dst))
	}
	return fmt.Errorf("%w: zstd stream ends after %d bytes, want %d", errWrongSize, len(out), len(dst))
}
