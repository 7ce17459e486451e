package qcow2

import (
	"bytes"
	"encoding/binary"

	"github.com/klauspost/compress/flate"
	"github.com/klauspost/compress/zstd"
)

// synth builds small qcow2 images byte by byte, for bad-input tests and
// fuzz seeds, where an image qemu would never write is the point. Layout,
// in clusters: 0 header and extensions (backing name at the end), 1
// refcount table, 2 refcount block, 3 L1 table, 4 the L2 table of L1 entry
// 0, 5 on the data clusters, then tail bytes (compressed streams).
type synth struct {
	version     uint32 // 2 or 3 (0: 3)
	bits        uint32 // cluster bits (0: 9)
	size        uint64 // virtual size (0: what L2 table 0 maps)
	incompat    uint64
	autoclear   uint64
	compression uint8
	crypt       uint32
	exts        []RawExtension
	backing     string
	l2          []uint64 // L2 table 0; two words per entry with extended L2
	data        [][]byte // clusters 5, 6, ...
	tail        []byte
}

const (
	synthRT   = 1
	synthRB   = 2
	synthL1   = 3
	synthL2   = 4
	synthData = 5
)

func (s *synth) defaults() {
	if s.version == 0 {
		s.version = 3
	}
	if s.bits == 0 {
		s.bits = 9
	}
	if s.size == 0 {
		es := uint64(8)
		if s.incompat&IncompatExtendedL2 != 0 {
			es = 16
		}
		s.size = (uint64(1) << s.bits / es) << s.bits
	}
}

// cs is the cluster size.
func (s *synth) cs() int64 { s.defaults(); return 1 << s.bits }

// dataOff is the file offset of data cluster i.
func (s *synth) dataOff(i int) uint64 { s.defaults(); return uint64(synthData+i) << s.bits }

// tailOff is the file offset of the tail bytes.
func (s *synth) tailOff() uint64 { return s.dataOff(len(s.data)) }

// entryOff is the file offset of L2 entry i of table 0.
func (s *synth) entryOff(i int) int64 {
	s.defaults()
	es := int64(8)
	if s.incompat&IncompatExtendedL2 != 0 {
		es = 16
	}
	return synthL2<<s.bits + int64(i)*es
}

func (s *synth) header() Header {
	s.defaults()
	cs := uint64(1) << s.bits
	es := uint64(8)
	if s.incompat&IncompatExtendedL2 != 0 {
		es = 16
	}
	span := cs / es * cs
	h := Header{
		Magic: Magic, Version: s.version, ClusterBits: s.bits, Size: s.size, CryptMethod: s.crypt,
		L1Size: uint32((s.size + span - 1) / span), L1TableOffset: synthL1 * cs,
		RefcountTableOffset: synthRT * cs, RefcountTableClusters: 1,
		IncompatibleFeatures: s.incompat, AutoclearFeatures: s.autoclear,
		RefcountOrder: 4, HeaderLength: HeaderV3CompressionSize, CompressionType: s.compression,
	}
	if s.version == 2 {
		h.HeaderLength = HeaderV2Size
	}
	return h
}

func (s *synth) bytes() []byte {
	h := s.header()
	cs := int(s.cs())
	out := make([]byte, int(s.tailOff())+len(s.tail))
	be := binary.BigEndian

	// Header cluster: header, extensions, end marker, backing name.
	n := h.Encode(out)
	for _, e := range s.exts {
		be.PutUint32(out[n:], e.Type)
		be.PutUint32(out[n+4:], uint32(len(e.Data)))
		copy(out[n+8:], e.Data)
		n += 8 + (len(e.Data)+7)&^7
	}
	n += 8 // end marker (zeros)
	if s.backing != "" {
		be.PutUint64(out[8:], uint64(n))
		be.PutUint32(out[16:], uint32(len(s.backing)))
		copy(out[n:], s.backing)
	}

	// Refcounts: every cluster of the file is used once.
	be.PutUint64(out[synthRT*cs:], uint64(synthRB*cs))
	for c := 0; c < (len(out)+cs-1)/cs && c < cs/2; c++ {
		be.PutUint16(out[synthRB*cs+2*c:], 1)
	}
	// L1 entry 0 points to the L2 table.
	be.PutUint64(out[synthL1*cs:], uint64(synthL2*cs)|EntryCopied)
	for i, e := range s.l2 {
		be.PutUint64(out[synthL2*cs+8*i:], e)
	}
	for i, d := range s.data {
		copy(out[s.dataOff(i):], d)
	}
	copy(out[s.tailOff():], s.tail)
	return out
}

// fill returns one cluster of byte b.
func (s *synth) fill(b byte) []byte { return bytes.Repeat([]byte{b}, int(s.cs())) }

// deflateRaw compresses b as qemu's zlib type clusters are.
func deflateRaw(b []byte) []byte {
	var buf bytes.Buffer
	w, _ := flate.NewWriterWindow(&buf, 1<<12)
	w.Write(b)
	w.Close()
	return buf.Bytes()
}

// zstdFrame compresses b into one zstd frame.
func zstdFrame(b []byte) []byte {
	e, _ := zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1))
	defer e.Close()
	return e.EncodeAll(b, nil)
}

// featureTable encodes a feature name table extension.
func featureTable(entries ...FeatureNameEntry) RawExtension {
	var d []byte
	for _, e := range entries {
		d = append(d, e.Type, e.Bit)
		d = append(d, e.Name[:]...)
	}
	return RawExtension{Type: ExtFeatureTable, Data: d}
}

func featureName(typ, bit uint8, name string) FeatureNameEntry {
	e := FeatureNameEntry{Type: typ, Bit: bit}
	copy(e.Name[:], name)
	return e
}
