package qcow2

import (
	"bytes"
	"fmt"
	"strings"

	"github.com/klauspost/compress/flate"
	"github.com/klauspost/compress/zstd"
)

// Compressor compresses clusters the way qemu's qcow2 driver reads them
// back (block/qcow2-threads.c): zlib type clusters are a raw deflate stream
// whose back-references reach at most 4 KiB (qemu inflates with
// windowBits -12), zstd type clusters are one zstd frame. A Compressor is
// not safe for concurrent use: give each worker its own.
type Compressor struct {
	typ uint8
	cs  int
	buf bytes.Buffer
	fw  *flate.Writer
	zw  *zstd.Encoder
}

// zlibWindow is the deflate window qemu inflates with (2^12).
const zlibWindow = 1 << 12

// NewCompressor returns a compressor for clusters of clusterSize bytes with
// compression "zlib" or "zstd".
func NewCompressor(compression string, clusterSize int64) (*Compressor, error) {
	c := &Compressor{cs: int(clusterSize)}
	var err error
	switch strings.ToLower(compression) {
	case CompressionNameZlib, "":
		c.typ = CompressionZlib
		c.fw, err = flate.NewWriterWindow(&c.buf, zlibWindow)
	case CompressionNameZstd:
		c.typ = CompressionZstd
		// One single-segment frame per cluster (EncodeAll), no checksum
		// (qemu writes none). The fastest level: on disk images it is
		// about three times faster than the default level for 4% more
		// bytes, and still smaller than qemu's zlib output.
		c.zw, err = zstd.NewWriter(nil,
			zstd.WithEncoderConcurrency(1),
			zstd.WithEncoderCRC(false),
			zstd.WithEncoderLevel(zstd.SpeedFastest))
	default:
		return nil, fmt.Errorf("qcow2: unknown compression type %q (want zlib or zstd)", compression)
	}
	if err != nil {
		return nil, err
	}
	return c, nil
}

// Compress returns the compressed form of one cluster src, reusing dst's
// storage. ok is false when compression does not make the cluster smaller
// than the cluster size; qemu then stores the cluster uncompressed, and so
// must the caller (the compressed descriptor has no room for more).
func (c *Compressor) Compress(dst, src []byte) (out []byte, ok bool) {
	switch c.typ {
	case CompressionZstd:
		out = c.zw.EncodeAll(src, dst[:0])
	default:
		c.buf.Reset()
		c.fw.Reset(&c.buf)
		if _, err := c.fw.Write(src); err != nil {
			return nil, false
		}
		if err := c.fw.Close(); err != nil {
			return nil, false
		}
		out = append(dst[:0], c.buf.Bytes()...)
	}
	if len(out) >= c.cs {
		return nil, false
	}
	return out, true
}
