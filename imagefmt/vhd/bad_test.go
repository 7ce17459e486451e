package vhd

import (
	"bytes"
	"encoding/binary"
	"errors"
	"strings"
	"testing"

	"github.com/vmmount/vmmount/imagefmt/vdisk"
)

// smallDynamic is a 1 MiB dynamic disk with 64 KiB blocks and a few sectors
// written; the bad-input cases damage copies of it.
func smallDynamic() (*testDisk, []byte) {
	d := &testDisk{size: 1 << 20, blockSize: 64 << 10, diskType: TypeDynamic, uniqueID: [16]byte{9},
		sectors: map[int64][]byte{}}
	for _, s := range []int64{0, 1, 130, 1000, 2047} {
		d.sectors[s] = bytes.Repeat([]byte{byte(s + 1)}, SectorSize)
	}
	return d, d.build()
}

func openBytes(b []byte) (vdisk.Image, error) {
	return Open(vdisk.BytesFile("bad.vhd", b), vdisk.OpenOptions{Name: "bad.vhd"})
}

func refooter(b []byte, edit func(*Footer)) {
	ft := DecodeFooter(b[len(b)-FooterSize:])
	edit(&ft)
	ft.Encode(b[len(b)-FooterSize:])
	ft.Encode(b[:FooterSize])
}

func reheader(b []byte, edit func(*DynHeader)) {
	h := DecodeDynHeader(b[FooterSize:])
	edit(&h)
	h.Encode(b[FooterSize:])
}

func TestBadInput(t *testing.T) {
	_, good := smallDynamic()
	cases := []struct {
		name   string
		mutate func([]byte) []byte
		err    error  // from Open; nil: Open succeeds and reading fails
		msg    string // in the error text
	}{
		{"empty", func(b []byte) []byte { return nil }, vdisk.ErrFormat, "too small"},
		{"no footer", func(b []byte) []byte { return make([]byte, 4096) }, vdisk.ErrFormat, "no VHD footer"},
		{"2^60 bytes", func(b []byte) []byte {
			refooter(b, func(f *Footer) { f.CurrentSize = 1 << 60 })
			return b
		}, vdisk.ErrFormat, "2040 GiB"},
		{"disk type", func(b []byte) []byte {
			refooter(b, func(f *Footer) { f.DiskType = 5 })
			return b
		}, vdisk.ErrUnsupported, "disk type"},
		{"block size", func(b []byte) []byte {
			reheader(b, func(h *DynHeader) { h.BlockSize = 3000 })
			return b
		}, vdisk.ErrFormat, "power of two"},
		{"BAT too small", func(b []byte) []byte {
			reheader(b, func(h *DynHeader) { h.MaxTableEntries = 3 })
			return b
		}, vdisk.ErrFormat, "fewer entries"},
		{"BAT past end", func(b []byte) []byte {
			reheader(b, func(h *DynHeader) { h.TableOffset = 1 << 40 })
			return b
		}, vdisk.ErrFormat, "outside the file"},
		{"header offset past end", func(b []byte) []byte {
			refooter(b, func(f *Footer) { f.DataOffset = uint64(len(b)) })
			return b
		}, vdisk.ErrFormat, "dynamic header offset"},
		{"no dynamic header", func(b []byte) []byte {
			copy(b[FooterSize:], "garbage!")
			return b
		}, vdisk.ErrFormat, "cxsparse"},
		{"too many blocks", func(b []byte) []byte {
			refooter(b, func(f *Footer) { f.CurrentSize = 2000 << 30 })
			reheader(b, func(h *DynHeader) { h.BlockSize = 512; h.MaxTableEntries = ^uint32(0) })
			return b
		}, vdisk.ErrUnsupported, "in memory"},
		{"block past end", func(b []byte) []byte {
			binary.BigEndian.PutUint32(b[FooterSize+DynHeaderSize:], 1<<30)
			return b
		}, nil, "past the end"},
		{"truncated", func(b []byte) []byte {
			// Cut inside the blocks and put the footer back.
			foot := bytes.Clone(b[len(b)-FooterSize:])
			return append(b[:len(b)/2], foot...)
		}, nil, "past the end"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := c.mutate(bytes.Clone(good))
			img, err := openBytes(b)
			if c.err != nil {
				var fe *vdisk.FormatError
				if !errors.Is(err, c.err) || !errors.As(err, &fe) || !strings.Contains(err.Error(), c.msg) || !strings.Contains(err.Error(), "bad.vhd") {
					t.Fatalf("Open: %v; want %v mentioning %q", err, c.err, c.msg)
				}
				return
			}
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			if len(img.Info().Warnings) == 0 {
				t.Errorf("no warning for a damaged image")
			}
			_, err = img.ReadAt(make([]byte, img.Size()), 0)
			var fe *vdisk.FormatError
			if !errors.As(err, &fe) || fe.Off < 0 || !strings.Contains(err.Error(), c.msg) {
				t.Fatalf("ReadAt: %v; want a FormatError mentioning %q", err, c.msg)
			}
		})
	}
}

// TestFooterCopy: a damaged footer at the end falls back on the copy at
// offset 0, with a warning, and reads stay right.
func TestFooterCopy(t *testing.T) {
	d, b := smallDynamic()
	b[len(b)-FooterSize+70] ^= 0xff // break the checksum
	img, err := openBytes(b)
	if err != nil {
		t.Fatal(err)
	}
	if len(img.Info().Warnings) != 1 {
		t.Errorf("warnings %q", img.Info().Warnings)
	}
	buf := make([]byte, SectorSize)
	for s, want := range d.sectors {
		img.ReadAt(buf, s*SectorSize)
		if !bytes.Equal(buf, want) {
			t.Errorf("sector %d differs", s)
		}
	}
}

func TestLayoutSizes(t *testing.T) {
	var ft Footer
	b := make([]byte, FooterSize+8)
	for i := range b {
		b[i] = 0xee
	}
	ft.Encode(b)
	if b[FooterSize] != 0xee {
		t.Errorf("footer encoding overruns %d bytes", FooterSize)
	}
	var h DynHeader
	b = make([]byte, DynHeaderSize+8)
	h.ParentLocators[7].PlatformDataOffset = ^uint64(0)
	h.Encode(b)
	if !bytes.Equal(b[576+7*ParentLocatorSize+16:576+8*ParentLocatorSize], bytes.Repeat([]byte{0xff}, 8)) || 576+8*ParentLocatorSize != 768 {
		t.Errorf("parent locator table misplaced")
	}
	if got := DecodeDynHeader(b); got != h {
		t.Errorf("dynamic header round trip: %+v", got)
	}
	if BitmapSize(2<<20) != 512 || BitmapSize(512) != 512 || BitmapSize(8<<20) != 2048 {
		t.Errorf("BitmapSize")
	}
}

// FuzzOpen parses arbitrary bytes as a VHD and reads what it can: no panic,
// no hang, bounded allocation.
func FuzzOpen(f *testing.F) {
	// Seeds stay small (the fuzzer slows to a crawl on big inputs).
	d := &testDisk{size: 64 << 10, blockSize: 4096, diskType: TypeDynamic, sectors: map[int64][]byte{0: make([]byte, 512), 40: bytes.Repeat([]byte{1}, 512)}}
	f.Add(d.build())
	d = &testDisk{size: 64 << 10, blockSize: 4096, diskType: TypeDifferencing, parentRel: `.\p.vhd`,
		parentAbs: `C:\p.vhd`, parentName: "p.vhd", sectors: map[int64][]byte{3: make([]byte, 512), 9: bytes.Repeat([]byte{1}, 512)}}
	f.Add(d.build())
	d.diskType = TypeFixed
	d.size = 8 << 10
	d.sectors = map[int64][]byte{3: bytes.Repeat([]byte{1}, 512)}
	f.Add(d.build())
	f.Fuzz(func(t *testing.T, b []byte) {
		img, err := Open(vdisk.BytesFile("fuzz.vhd", b), vdisk.OpenOptions{Name: "fuzz.vhd",
			OpenBacking: func(name, format string) (vdisk.Image, error) { return nil, vdisk.ErrBackingMissing }})
		if err != nil {
			return
		}
		defer img.Close()
		img.Extents(0, img.Size())
		buf := make([]byte, 256<<10)
		for _, off := range []int64{0, img.Size() / 3, img.Size() - 1000} {
			img.ReadAt(buf, max(off, 0))
		}
	})
}
