package qcow2

import "testing"

func TestHeaderRoundTrip(t *testing.T) {
	h := Header{Magic: Magic, Version: 3, ClusterBits: 16, Size: 1 << 30, L1Size: 2,
		L1TableOffset: 0x30000, RefcountTableOffset: 0x10000, RefcountTableClusters: 1,
		RefcountOrder: 4, HeaderLength: HeaderV3CompressionSize, CompressionType: CompressionZstd,
		IncompatibleFeatures: IncompatCompression}
	b := make([]byte, HeaderV3CompressionSize)
	if n := h.Encode(b); n != HeaderV3CompressionSize {
		t.Fatalf("Encode wrote %d bytes", n)
	}
	got, ok := DecodeHeader(b)
	if !ok || got != h {
		t.Fatalf("round trip: got %+v, want %+v", got, h)
	}
}

func TestCompressedDescriptor(t *testing.T) {
	for _, bits := range []uint32{9, 16, 21} {
		length := min(3000, 1<<bits)
		e := EncodeCompressed(0x123400+17, length, bits)
		off, n := CompressedDescriptor(e, bits)
		if off != 0x123400+17 {
			t.Errorf("bits %d: offset %#x", bits, off)
		}
		if want := uint64((17+length-1)/512 + 1); n != want {
			t.Errorf("bits %d: sectors %d, want %d", bits, n, want)
		}
	}
}
