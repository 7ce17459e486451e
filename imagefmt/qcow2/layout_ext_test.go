package qcow2

import (
	"bytes"
	"encoding/binary"
	"os"
	"testing"

	"github.com/vmmount/vmmount/imagefmt/vdisk"
	"github.com/vmmount/vmmount/testimages"
)

// TestExtStructSizes: the structs of layout_ext.go mirror the disk layout
// byte for byte.
func TestExtStructSizes(t *testing.T) {
	for _, tc := range []struct {
		v    any
		want int
	}{
		{ExtensionHeader{}, ExtensionHeaderSize},
		{FeatureNameEntry{}, FeatureNameEntrySize},
		{BitmapsExtension{}, BitmapsExtensionSize},
		{CryptoHeaderExtension{}, CryptoHeaderExtensionSize},
		{BitmapDirEntry{}, BitmapDirEntrySize},
		{SnapshotHeader{}, SnapshotHeaderSize},
	} {
		if got := binary.Size(tc.v); got != tc.want {
			t.Errorf("%T is %d bytes, want %d", tc.v, got, tc.want)
		}
	}
}

// TestExtDecoders decodes what encoding/binary encodes from the same
// struct: field order and offsets agree.
func TestExtDecoders(t *testing.T) {
	enc := func(v any) []byte {
		var b bytes.Buffer
		binary.Write(&b, binary.BigEndian, v)
		return b.Bytes()
	}
	fe := featureName(FeatureAutoclear, 1, "raw external data")
	if got := DecodeFeatureNameEntry(enc(fe)); got != fe || got.NameString() != "raw external data" {
		t.Errorf("feature entry: %+v", got)
	}
	be := BitmapsExtension{NbBitmaps: 3, BitmapDirectorySize: 77, BitmapDirectoryOffset: 1 << 20}
	if got := DecodeBitmapsExtension(enc(be)); got != be {
		t.Errorf("bitmaps extension: %+v", got)
	}
	de := BitmapDirEntry{BitmapTableOffset: 1 << 30, BitmapTableSize: 9, Flags: 2, Type: 1, GranularityBits: 16, NameSize: 5, ExtraDataSize: 8}
	if got := DecodeBitmapDirEntry(enc(de)); got != de {
		t.Errorf("bitmap directory entry: %+v", got)
	}
	sh := SnapshotHeader{L1TableOffset: 1 << 40, L1Size: 8, IDStrSize: 1, NameSize: 4, DateSec: 5, DateNsec: 6, VMClockNsec: 7, VMStateSize: 8, ExtraDataSize: 16}
	if got := DecodeSnapshotHeader(enc(sh)); got != sh {
		t.Errorf("snapshot header: %+v", got)
	}
}

// TestDirtyAndCorruptBits: images qemu marked dirty (lazy refcounts) or
// corrupt still read; Info says so.
func TestDirtyAndCorruptBits(t *testing.T) {
	var fx testimages.Qcow2Fixture
	for _, f := range testimages.Qcow2Fixtures(t) {
		if f.Name == "v3" {
			fx = f
		}
	}
	b, err := os.ReadFile(fx.Path)
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile(fx.Raw)
	if err != nil {
		t.Fatal(err)
	}
	incompat := binary.BigEndian.Uint64(b[72:])
	b = patch(b, 72, incompat|IncompatDirty|IncompatCorrupt)
	img, err := Open(vdisk.BytesFile("dirty.qcow2", b), vdisk.OpenOptions{Name: "dirty.qcow2"})
	if err != nil {
		t.Fatal(err)
	}
	in := img.Info()
	if !in.Dirty || !in.Corrupt || len(in.Warnings) != 2 {
		t.Errorf("Info: dirty %v corrupt %v warnings %q", in.Dirty, in.Corrupt, in.Warnings)
	}
	got := make([]byte, img.Size())
	if _, err := img.ReadAt(got, 0); err != nil || !bytes.Equal(got, want) {
		t.Errorf("read of a dirty image: %v", err)
	}
}
