package vhdx

import (
	"bytes"
	"encoding/binary"
	"errors"
	"strings"
	"testing"

	"github.com/vmmount/vmmount/imagefmt/vdisk"
)

const (
	tMetaOff = 2 * MiB // where testDisk puts the metadata region
	tBATOff  = 3 * MiB // and the BAT
)

func smallDisk() *testDisk {
	d := &testDisk{size: 4 * MiB, blockSize: MiB, sector: 512, diskID: GUID{1}, sectors: map[int64][]byte{}}
	for _, s := range []int64{0, 5, 2048, 3*2048 + 9} {
		d.sectors[s] = bytes.Repeat([]byte{byte(s + 1)}, 512)
	}
	return d
}

func openBytes(b []byte) (vdisk.Image, error) {
	return Open(vdisk.BytesFile("bad.vhdx", b), vdisk.OpenOptions{Name: "bad.vhdx",
		OpenBacking: func(n, f string) (vdisk.Image, error) { return nil, vdisk.ErrBackingMissing }})
}

// rehead rewrites both headers.
func rehead(b []byte, edit func(*Header)) {
	for _, off := range []int64{Header1Offset, Header2Offset} {
		h := DecodeHeader(b[off:])
		edit(&h)
		h.Encode(b[off:])
	}
}

// metaItem returns the bytes of a metadata item of the test layout.
func metaItem(b []byte, id GUID) []byte {
	_, entries := DecodeMetadataTable(b[tMetaOff:])
	for _, e := range entries {
		if e.ItemID == id {
			return b[tMetaOff+int64(e.Offset) : tMetaOff+int64(e.Offset)+int64(e.Length)]
		}
	}
	panic("no item")
}

func regions(b []byte, edit func([]RegionEntry) []RegionEntry) {
	_, es := DecodeRegionTable(b[RegionTable1Offset:])
	es = edit(es)
	EncodeRegionTable(b[RegionTable1Offset:], es)
	EncodeRegionTable(b[RegionTable2Offset:], es)
}

func setBAT(b []byte, i int64, e uint64) { binary.LittleEndian.PutUint64(b[tBATOff+8*i:], e) }

func TestBadInput(t *testing.T) {
	good := smallDisk().build()
	le := binary.LittleEndian
	cases := []struct {
		name   string
		mutate func([]byte) []byte
		err    error
		msg    string
	}{
		{"tiny", func(b []byte) []byte { return b[:1000] }, vdisk.ErrFormat, "too small"},
		{"no identifier", func(b []byte) []byte { copy(b, "vhdxfila"); return b }, vdisk.ErrFormat, "file identifier"},
		{"headers", func(b []byte) []byte {
			b[Header1Offset+100]++
			b[Header2Offset+100]++
			return b
		}, vdisk.ErrFormat, "neither VHDX header"},
		{"version", func(b []byte) []byte { rehead(b, func(h *Header) { h.Version = 2 }); return b }, vdisk.ErrUnsupported, "version"},
		{"region tables", func(b []byte) []byte {
			b[RegionTable1Offset+9]++
			b[RegionTable2Offset+9]++
			return b
		}, vdisk.ErrFormat, "neither region table"},
		{"unknown required region", func(b []byte) []byte {
			regions(b, func(es []RegionEntry) []RegionEntry {
				return append(es, RegionEntry{GUID: GUID{9}, FileOffset: MiB, Length: MiB, Required: 1})
			})
			return b
		}, vdisk.ErrUnsupported, "unknown required region"},
		{"region outside", func(b []byte) []byte {
			regions(b, func(es []RegionEntry) []RegionEntry { es[0].FileOffset = 1 << 40; return es })
			return b
		}, vdisk.ErrFormat, "outside the file"},
		{"block size", func(b []byte) []byte {
			le.PutUint32(metaItem(b, MetaFileParameters), 3*MiB)
			return b
		}, vdisk.ErrFormat, "block size"},
		{"sector size", func(b []byte) []byte {
			le.PutUint32(metaItem(b, MetaLogicalSector), 1024)
			return b
		}, vdisk.ErrFormat, "logical sector size"},
		{"2^60 bytes", func(b []byte) []byte {
			le.PutUint64(metaItem(b, MetaVirtualDiskSize), 1<<60)
			return b
		}, vdisk.ErrFormat, "64 TiB"},
		{"missing size", func(b []byte) []byte {
			_, es := DecodeMetadataTable(b[tMetaOff:])
			var keep []MetadataEntry
			for _, e := range es {
				if e.ItemID != MetaVirtualDiskSize {
					keep = append(keep, e)
				}
			}
			EncodeMetadataTable(b[tMetaOff:], keep)
			return b
		}, vdisk.ErrFormat, "virtual disk size"},
		{"unknown required item", func(b []byte) []byte {
			_, es := DecodeMetadataTable(b[tMetaOff:])
			EncodeMetadataTable(b[tMetaOff:], append(es, MetadataEntry{ItemID: GUID{5}, Offset: 64 * KiB, Length: 8, Flags: MetaIsRequired}))
			return b
		}, vdisk.ErrUnsupported, "unknown required metadata item"},
		{"item outside", func(b []byte) []byte {
			_, es := DecodeMetadataTable(b[tMetaOff:])
			es[0].Offset = MiB - 4
			EncodeMetadataTable(b[tMetaOff:], es)
			return b
		}, vdisk.ErrFormat, "outside the metadata region"},
		{"BAT too small", func(b []byte) []byte {
			le.PutUint64(metaItem(b, MetaVirtualDiskSize), 1<<40)
			return b
		}, vdisk.ErrFormat, "BAT region too small"},
		{"parent without locator", func(b []byte) []byte {
			le.PutUint32(metaItem(b, MetaFileParameters)[4:], HasParent)
			return b
		}, vdisk.ErrFormat, "without a parent locator"},
		{"block outside", func(b []byte) []byte { setBAT(b, 0, MakeBATEntry(PayloadFullyPresent, 1<<40)); return b }, nil, "outside the file"},
		{"partial without parent", func(b []byte) []byte { setBAT(b, 1, MakeBATEntry(PayloadPartiallyPresent, 4*MiB)); return b }, nil, "without a parent"},
		{"reserved state", func(b []byte) []byte { setBAT(b, 3, 4); return b }, nil, "reserved state"},
		{"truncated", func(b []byte) []byte { return b[:len(b)-MiB-5000] }, nil, "outside the file"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			img, err := openBytes(c.mutate(bytes.Clone(good)))
			if c.err != nil {
				var fe *vdisk.FormatError
				if !errors.Is(err, c.err) || !errors.As(err, &fe) || !strings.Contains(err.Error(), c.msg) || !strings.Contains(err.Error(), "bad.vhdx") {
					t.Fatalf("Open: %v; want %v mentioning %q", err, c.err, c.msg)
				}
				return
			}
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			_, err = img.ReadAt(make([]byte, img.Size()), 0)
			var fe *vdisk.FormatError
			if !errors.As(err, &fe) || fe.Off < 0 || !strings.Contains(err.Error(), c.msg) {
				t.Fatalf("ReadAt: %v; want a FormatError mentioning %q", err, c.msg)
			}
		})
	}
}

// TestHeaderChoice: the valid header with the higher sequence number wins;
// a damaged one is skipped.
func TestHeaderChoice(t *testing.T) {
	b := smallDisk().build()
	h := DecodeHeader(b[Header1Offset:])
	h.SequenceNumber = 10
	h.DataWriteGUID = GUID{0xaa}
	h.Encode(b[Header1Offset:])
	img, err := openBytes(bytes.Clone(b))
	if err != nil {
		t.Fatal(err)
	}
	if img.(*Image).hdr.DataWriteGUID != (GUID{0xaa}) {
		t.Errorf("header 1 (sequence 10) not chosen")
	}
	b[Header1Offset+200]++ // break its checksum: header 2 is used
	img, err = openBytes(b)
	if err != nil {
		t.Fatal(err)
	}
	if img.(*Image).hdr.SequenceNumber != 2 {
		t.Errorf("header 2 not chosen")
	}
	// A damaged first region table falls back on the second.
	b[RegionTable1Offset+9]++
	img, err = openBytes(b)
	if err != nil || len(img.Info().Warnings) != 1 {
		t.Fatalf("%v %v", err, img)
	}
}

// TestEmptyLog: a header naming a log whose region holds nothing valid
// opens with a warning and no replay.
func TestEmptyLog(t *testing.T) {
	d := smallDisk()
	d.logGUID = GUID{1}
	img, err := openBytes(d.build())
	if err != nil {
		t.Fatal(err)
	}
	if w := img.Info().Warnings; len(w) != 1 || !strings.Contains(w[0], "no valid entries") {
		t.Errorf("warnings %q", w)
	}
}

func TestLayoutSizes(t *testing.T) {
	b := bytes.Repeat([]byte{0xee}, HeaderSize+1)
	h := Header{LogOffset: ^uint64(0)}
	h.Encode(b)
	if b[79] != 0xff || b[80] != 0 || b[HeaderSize] != 0xee || DecodeHeader(b) != h {
		t.Errorf("header layout")
	}
	r := make([]byte, RegionTableSize)
	EncodeRegionTable(r, make([]RegionEntry, MaxRegionEntries))
	if 16+MaxRegionEntries*RegionEntrySize > RegionTableSize || 32+MaxMetadataEntries*MetadataEntrySize > MetadataTableSize {
		t.Errorf("tables overflow")
	}
	var lh LogEntryHeader
	lh.LastFileOffset = ^uint64(0)
	lb := make([]byte, LogEntryHeaderSize)
	lh.Encode(lb)
	if lb[LogEntryHeaderSize-1] != 0xff || DecodeLogEntryHeader(lb) != lh {
		t.Errorf("log entry header layout")
	}
	d := LogDescriptor{SequenceNumber: ^uint64(0)}
	db := make([]byte, LogDescriptorSize)
	d.Encode(db)
	if db[LogDescriptorSize-1] != 0xff || DecodeLogDescriptor(db) != d {
		t.Errorf("log descriptor layout")
	}
	if RegionBAT.String() != "2dc27766-f623-4200-9d64-115e9bfd4a08" {
		t.Errorf("GUID round trip %s", RegionBAT)
	}
}

// FuzzParse splices fuzzed bytes into one structure of a small valid image
// (VHDX places its structures at MiB offsets, so whole images are too big to
// fuzz well) and opens and reads the result.
func FuzzParse(f *testing.F) {
	d := smallDisk()
	d.logGUID = GUID{2}
	d.parentRel = `.\p.vhdx` // a differencing layout exercises the locator and bitmaps
	d.parentLink = GUID{3}
	base := d.build()
	targets := []int64{Header1Offset, RegionTable1Offset, tMetaOff, tMetaOff + 64*KiB, tBATOff, MiB /* log */}
	for i, off := range targets {
		f.Add(uint8(i), bytes.Clone(base[off:off+512]))
	}
	log := buildLog(d.logGUID, 1, int64(len(base)), []testLogEntry{{zeros: [][2]int64{{4 * MiB, 8 * KiB}},
		pages: map[int64][]byte{tBATOff: base[tBATOff : tBATOff+4096]}}})
	f.Add(uint8(5), log[:12*KiB])
	f.Fuzz(func(t *testing.T, which uint8, data []byte) {
		if len(data) > 64*KiB {
			return
		}
		b := bytes.Clone(base)
		off := targets[int(which)%len(targets)]
		copy(b[off:], data)
		if off == Header1Offset { // keep the checksum valid so the fuzzed fields count
			h := DecodeHeader(b[off:])
			binary.LittleEndian.PutUint32(b[off+4:], Checksum(b[off:off+HeaderSize], 4))
			_ = h
		}
		if off == RegionTable1Offset {
			binary.LittleEndian.PutUint32(b[off+4:], Checksum(b[off:off+RegionTableSize], 4))
		}
		img, err := Open(vdisk.BytesFile("fuzz.vhdx", b), vdisk.OpenOptions{Name: "fuzz.vhdx", NoBacking: true})
		if err != nil {
			return
		}
		img.Extents(0, img.Size())
		buf := make([]byte, 256*KiB)
		for _, o := range []int64{0, img.Size() / 2, img.Size() - 1000} {
			img.ReadAt(buf, max(o, 0))
		}
	})
}
