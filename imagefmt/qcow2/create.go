package qcow2

import (
	"context"
	"fmt"
	"os"
	"strings"
)

// DefaultClusterSize is qemu-img's default.
const DefaultClusterSize = 64 << 10

// CreateOptions describe a new qcow2 image.
type CreateOptions struct {
	// ClusterSize is a power of two from 512 B to 2 MiB; 0 means 64 KiB.
	ClusterSize int64
	// BackingFile is recorded as written (a relative name is resolved by
	// readers against the new image's directory); empty for none.
	BackingFile string
	// BackingFormat is recorded in the backing format header extension
	// ("qcow2", "raw", ...). qemu and libvirt refuse to probe the format of
	// a backing file, so set it whenever BackingFile is set.
	BackingFormat string
	// Compression is the type recorded for compressed clusters: "" (or
	// "none") and "zlib" record the format's default, zlib; "zstd" records
	// zstd. It only decides the header field: whether clusters are
	// compressed is up to the caller of Writer.
	Compression string
	// Scratch skips the fsyncs of Writer.Close: for temporary images that
	// are of no use after a crash (a backup job's scratch file).
	Scratch bool
}

// Compression type names as qemu spells them.
const (
	CompressionNameZlib = "zlib"
	CompressionNameZstd = "zstd"
)

// geometry is what a writer derives from CreateOptions and the size.
type geometry struct {
	clusterBits uint32
	clusterSize int64
	size        int64 // virtual size, a multiple of 512
	l2Entries   int64 // entries per L2 table
	l1Size      int64 // entries of the L1 table
	compression uint8
}

func newGeometry(size int64, opts *CreateOptions) (geometry, error) {
	var g geometry
	cs := opts.ClusterSize
	if cs == 0 {
		cs = DefaultClusterSize
	}
	if cs < 1<<MinClusterBits || cs > 1<<MaxClusterBits || cs&(cs-1) != 0 {
		return g, fmt.Errorf("qcow2: cluster size %d is not a power of two from 512 B to 2 MiB", cs)
	}
	if size < 0 {
		return g, fmt.Errorf("qcow2: negative virtual size %d", size)
	}
	// qemu counts the virtual size in 512-byte sectors and drops a partial
	// last sector, so round up as qemu-img create does.
	size = (size + SectorSize - 1) &^ (SectorSize - 1)
	g.clusterSize = cs
	for 1<<g.clusterBits < cs {
		g.clusterBits++
	}
	g.size = size
	g.l2Entries = cs / 8
	span := cs * g.l2Entries // bytes mapped by one L2 table
	g.l1Size = (size + span - 1) / span
	if g.l1Size > MaxL1Size {
		return g, fmt.Errorf("qcow2: virtual size %d needs an L1 table of %d entries, more than qemu's %d; use a larger cluster size", size, g.l1Size, MaxL1Size)
	}
	switch strings.ToLower(opts.Compression) {
	case "", "none", CompressionNameZlib:
		g.compression = CompressionZlib
	case CompressionNameZstd:
		g.compression = CompressionZstd
	default:
		return g, fmt.Errorf("qcow2: unknown compression type %q (want zlib or zstd)", opts.Compression)
	}
	if opts.BackingFormat != "" && opts.BackingFile == "" {
		return g, fmt.Errorf("qcow2: backing format %q given without a backing file", opts.BackingFormat)
	}
	return g, nil
}

// Create writes an empty qcow2 version 3 image of size bytes at path, which
// must not exist. Every cluster is unallocated: it reads as zeros, or from
// the backing file when one is set.
func Create(path string, size int64, opts CreateOptions) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	w, err := NewWriter(f, size, opts)
	if err == nil {
		err = w.Close(context.Background())
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
	}
	return err
}

// encodeHeaderCluster lays out cluster 0: the version 3 header, the header
// extensions and the backing file name (spec "Header" and "Header
// extensions"). qemu reads all of this from the first cluster only.
func encodeHeaderCluster(g *geometry, opts *CreateOptions, h *Header) ([]byte, error) {
	buf := make([]byte, g.clusterSize)
	h.Magic = Magic
	h.Version = 3
	h.ClusterBits = g.clusterBits
	h.Size = uint64(g.size)
	h.L1Size = uint32(g.l1Size)
	h.RefcountOrder = 4
	h.HeaderLength = HeaderV3CompressionSize
	h.CompressionType = g.compression
	if g.compression != CompressionZlib {
		// Readers that do not know the compression type field must not
		// open the image (spec, incompatible feature bit 3).
		h.IncompatibleFeatures |= IncompatCompression
	}
	off := h.Encode(buf)
	putExt := func(typ uint32, data []byte) error {
		need := off + 8 + (len(data)+7)&^7 + 8 // plus the end marker
		if need > len(buf) {
			return fmt.Errorf("qcow2: header extensions do not fit in one %d-byte cluster", len(buf))
		}
		beUint32(buf[off:], typ)
		beUint32(buf[off+4:], uint32(len(data)))
		copy(buf[off+8:], data)
		off += 8 + (len(data)+7)&^7
		return nil
	}
	if opts.BackingFormat != "" {
		if err := putExt(ExtBackingFormat, []byte(opts.BackingFormat)); err != nil {
			return nil, err
		}
	}
	off += 8 // end of extensions: type 0, length 0, already zero
	if opts.BackingFile != "" {
		name := []byte(opts.BackingFile)
		if len(name) > MaxBackingName {
			return nil, fmt.Errorf("qcow2: backing file name is %d bytes, more than %d", len(name), MaxBackingName)
		}
		if off+len(name) > len(buf) {
			return nil, fmt.Errorf("qcow2: backing file name does not fit in the first %d-byte cluster; use a larger cluster size or a shorter name", len(buf))
		}
		copy(buf[off:], name)
		h.BackingFileOffset = uint64(off)
		h.BackingFileSize = uint32(len(name))
		h.Encode(buf) // again, with the backing file fields
	}
	return buf, nil
}

func beUint32(b []byte, v uint32) {
	b[0], b[1], b[2], b[3] = byte(v>>24), byte(v>>16), byte(v>>8), byte(v)
}

// writeError names the image and what was being written.
func writeError(name, what string, off int64, err error) error {
	return fmt.Errorf("%s: writing %s at offset %d: %w", name, what, off, err)
}
