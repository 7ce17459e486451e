package vmdk

import (
	"bytes"
	"compress/zlib"
	"encoding/binary"
	"errors"
	"strings"
	"testing"

	"github.com/vmmount/vmmount/imagefmt/vdisk"
)

// smallRaw is 1 MiB with data in a few grains.
func smallRaw() []byte {
	b := make([]byte, 1<<20)
	for _, off := range []int{0, 70000, 600000, 1<<20 - 10} {
		for i := off; i < min(off+5000, len(b)); i++ {
			b[i] = byte(i*7 + 1)
		}
	}
	return b
}

// openFiles opens name from an in-memory set of files.
func openFiles(files map[string][]byte, name string) (vdisk.Image, error) {
	return Open(vdisk.BytesFile(name, files[name]), vdisk.OpenOptions{Name: name,
		OpenFile: func(n string) (vdisk.File, error) {
			b, ok := files[n]
			if !ok {
				return nil, errors.New("no such file " + n)
			}
			return vdisk.BytesFile(n, b), nil
		},
		OpenBacking: func(n, format string) (vdisk.Image, error) {
			return nil, errors.Join(vdisk.ErrBackingMissing, errors.New(n))
		}})
}

func descWith(createType, extents string) []byte {
	return []byte("# Disk DescriptorFile\nversion=1\nCID=1\nparentCID=ffffffff\ncreateType=\"" + createType + "\"\n" + extents)
}

// sparseExtent returns a monolithicSparse-like extent (uncompressed COWD is
// simpler, so this rewrites a stream into a plain sparse layout): header,
// GD, GT, grains.
func plainSparse(raw []byte) []byte {
	const grainSectors = 8 // 4 KiB grains keep it small
	capSectors := int64(len(raw)) / SectorSize
	ngrains := capSectors / grainSectors
	ngt := (ngrains + 511) / 512
	gdSector := int64(1)
	gtSector := gdSector + (ngt*4+511)/512
	grainStart := gtSector + ngt*4
	h := SparseHeader{MagicNumber: MagicKDMVValue, Version: 1, Flags: FlagNewlineTest, Capacity: uint64(capSectors),
		GrainSize: grainSectors, NumGTEsPerGT: 512, GDOffset: uint64(gdSector), OverHead: uint64(grainStart)}
	out := make([]byte, grainStart*SectorSize)
	h.Encode(out)
	for t := int64(0); t < ngt; t++ {
		binary.LittleEndian.PutUint32(out[gdSector*SectorSize+4*t:], uint32(gtSector+4*t))
	}
	for g := int64(0); g < ngrains; g++ {
		chunk := raw[g*grainSectors*SectorSize : (g+1)*grainSectors*SectorSize]
		if bytes.Count(chunk, []byte{0}) == len(chunk) {
			continue
		}
		binary.LittleEndian.PutUint32(out[gtSector*SectorSize+4*g:], uint32(len(out)/SectorSize))
		out = append(out, chunk...)
	}
	return out
}

func TestBadInput(t *testing.T) {
	raw := smallRaw()
	sparse := plainSparse(raw)
	stream := buildStream(raw, 128, "")
	gtSector := int64(binary.LittleEndian.Uint32(sparse[SectorSize:]))
	cases := []struct {
		name  string
		files map[string][]byte
		err   error  // from Open; nil: Open succeeds, reading fails
		msg   string // in the error text
	}{
		{"tiny", map[string][]byte{"d.vmdk": []byte("KD")}, vdisk.ErrFormat, "too small"},
		{"absolute extent", map[string][]byte{"d.vmdk": descWith("monolithicFlat", "RW 8 FLAT \"/etc/passwd\" 0\n")},
			vdisk.ErrUnsupported, "outside the descriptor's directory"},
		{"escaping extent", map[string][]byte{"d.vmdk": descWith("monolithicFlat", "RW 8 FLAT \"../../dev/sda\" 0\n")},
			vdisk.ErrUnsupported, "outside the descriptor's directory"},
		{"self extent", map[string][]byte{"d.vmdk": descWith("monolithicFlat", "RW 8 FLAT \"d.vmdk\" 0\n")},
			vdisk.ErrFormat, "descriptor itself"},
		{"descriptor as sparse extent", map[string][]byte{"d.vmdk": descWith("twoGbMaxExtentSparse", "RW 8 SPARSE \"e.vmdk\"\n"),
			"e.vmdk": descWith("twoGbMaxExtentSparse", "RW 8 SPARSE \"d.vmdk\"\n")}, vdisk.ErrFormat, "not a sparse extent"},
		{"rdm", map[string][]byte{"d.vmdk": descWith("vmfsRawDeviceMap", "RW 8 VMFSRDM \"x-rdm.vmdk\"\n")},
			vdisk.ErrUnsupported, "raw device mapping"},
		{"sesparse", map[string][]byte{"d.vmdk": descWith("vmfs", "RW 8 SESPARSE \"x.vmdk\"\n")},
			vdisk.ErrUnsupported, "SE sparse"},
		{"noaccess", map[string][]byte{"d.vmdk": descWith("vmfs", "NOACCESS 8 VMFS \"x.vmdk\"\n")},
			vdisk.ErrUnsupported, "NOACCESS"},
		{"unknown createType", map[string][]byte{"d.vmdk": descWith("fancy", "RW 8 ZERO\n")},
			vdisk.ErrUnsupported, "fancy"},
		{"bad extent line", map[string][]byte{"d.vmdk": descWith("vmfs", "RW -8 VMFS \"x.vmdk\"\n")},
			vdisk.ErrFormat, "line 6"},
		{"2^60 bytes", map[string][]byte{"d.vmdk": edit(sparse, func(h *SparseHeader) { h.Capacity = 1 << 51 })},
			vdisk.ErrFormat, "grain directory"},
		{"2^70 bytes", map[string][]byte{"d.vmdk": edit(sparse, func(h *SparseHeader) { h.Capacity = 1 << 61 })},
			vdisk.ErrFormat, "bad capacity"},
		{"huge directory", map[string][]byte{"d.vmdk": edit(sparse, func(h *SparseHeader) { h.Capacity = 1 << 45 })},
			vdisk.ErrFormat, "grain directory"},
		{"directory past end", map[string][]byte{"d.vmdk": edit(sparse, func(h *SparseHeader) { h.GDOffset = 1 << 40 })},
			vdisk.ErrFormat, "outside the file"},
		{"grain size", map[string][]byte{"d.vmdk": edit(sparse, func(h *SparseHeader) { h.GrainSize = 0 })},
			vdisk.ErrFormat, "grain size"},
		{"version", map[string][]byte{"d.vmdk": edit(sparse, func(h *SparseHeader) { h.Version = 4 })},
			vdisk.ErrUnsupported, "version"},
		{"no footer", map[string][]byte{"d.vmdk": func() []byte {
			b := bytes.Clone(stream)
			clear(b[len(b)-1024:])
			return b
		}()}, vdisk.ErrFormat, "no valid footer"},
		{"missing parent", map[string][]byte{"d.vmdk": append(descWith("monolithicFlat", "RW 8 ZERO\n"), "parentFileNameHint=\"base.vmdk\"\n"...)},
			vdisk.ErrBackingMissing, "base.vmdk"},
		{"table past end", map[string][]byte{"d.vmdk": func() []byte {
			b := bytes.Clone(sparse)
			binary.LittleEndian.PutUint32(b[SectorSize:], 1<<30)
			return b
		}()}, nil, "past the end"},
		{"grain past end", map[string][]byte{"d.vmdk": func() []byte {
			b := bytes.Clone(sparse)
			binary.LittleEndian.PutUint32(b[gtSector*SectorSize:], 1<<30)
			return b
		}()}, nil, "past the end"},
		{"grain in metadata", map[string][]byte{"d.vmdk": func() []byte {
			b := bytes.Clone(sparse)
			binary.LittleEndian.PutUint32(b[gtSector*SectorSize:], 1)
			return b
		}()}, nil, "metadata"},
		{"truncated", map[string][]byte{"d.vmdk": sparse[:len(sparse)-6000]}, nil, "past the end"},
		{"inflates short", map[string][]byte{"d.vmdk": func() []byte {
			// Replace grain 0's compressed data with a valid zlib
			// stream of 10 bytes.
			b := bytes.Clone(stream)
			var z bytes.Buffer
			zw := zlib.NewWriter(&z)
			zw.Write(make([]byte, 10))
			zw.Close()
			short := z.Bytes()
			binary.LittleEndian.PutUint32(b[128*SectorSize+8:], uint32(len(short)))
			copy(b[128*SectorSize+GrainMarkerSize:], short)
			return b
		}()}, nil, "inflates to"},
		{"corrupt deflate", map[string][]byte{"d.vmdk": func() []byte {
			b := bytes.Clone(stream)
			copy(b[128*SectorSize+GrainMarkerSize:], "garbage garbage")
			return b
		}()}, nil, "compressed grain"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			img, err := openFiles(c.files, "d.vmdk")
			if c.err != nil {
				if !errors.Is(err, c.err) || !strings.Contains(err.Error(), c.msg) || !strings.Contains(err.Error(), ".vmdk") {
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

func edit(b []byte, f func(*SparseHeader)) []byte {
	b = bytes.Clone(b)
	h := DecodeSparseHeader(b)
	f(&h)
	h.Encode(b)
	return b
}

// TestCraftedSmall checks the small in-memory writers against the raw data
// (the qemu-made fixtures cover the rest).
func TestCraftedSmall(t *testing.T) {
	raw := smallRaw()
	for name, b := range map[string][]byte{"plain": plainSparse(raw), "stream": buildStream(raw, 128, ""), "cowd": buildCOWD(raw, 16)} {
		img, err := openFiles(map[string][]byte{"d.vmdk": b}, "d.vmdk")
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		got := make([]byte, len(raw))
		if n, err := img.ReadAt(got, 0); n != len(raw) || err != nil || !bytes.Equal(got, raw) {
			t.Errorf("%s: read %d, %v, equal %v", name, n, err, bytes.Equal(got, raw))
		}
	}
}

func TestLayoutSizes(t *testing.T) {
	b := bytes.Repeat([]byte{0xee}, SparseHeaderSize+4)
	h := SparseHeader{MagicNumber: MagicKDMVValue, CompressAlgorithm: 0xffff, Capacity: 1}
	h.Encode(b)
	if b[sparseHeaderFields-1] != 0xff || b[sparseHeaderFields] != 0 || b[SparseHeaderSize] != 0xee || string(b[:4]) != MagicKDMV {
		t.Errorf("sparse header layout: fields end at %d, sector at %d", sparseHeaderFields, SparseHeaderSize)
	}
	if DecodeSparseHeader(b) != h {
		t.Errorf("sparse header round trip")
	}
	var c COWDHeader
	c.FreeSector = 0xffffffff
	cb := make([]byte, COWDHeaderFields)
	c.Encode(cb)
	if cb[COWDHeaderFields-1] != 0xff || DecodeCOWDHeader(cb) != c {
		t.Errorf("COWD header layout")
	}
}

// FuzzDescriptor parses arbitrary descriptor text.
func FuzzDescriptor(f *testing.F) {
	f.Add(string(descWith("twoGbMaxExtentSparse", "RW 4192256 SPARSE \"a-s001.vmdk\"\nRW 8 ZERO\nRDONLY 100 FLAT \"b c.vmdk\" 77\n")))
	f.Add("version=1\r\nCID=ab\r\ncreateType=\"vmfs\"\r\nparentFileNameHint=\"C:\\x\\p.vmdk\"\r\nRW 1 VMFS \"x\"\r\nddb.uuid.image=\"1-2\"\r\n")
	f.Fuzz(func(t *testing.T, s string) {
		d, err := ParseDescriptor(s)
		if err != nil {
			return
		}
		for _, e := range d.Extents {
			if e.Sectors <= 0 || e.Offset < 0 {
				t.Fatalf("bad extent %+v", e)
			}
		}
	})
}

// FuzzOpen opens arbitrary bytes as a VMDK, with an extent file beside it,
// and reads what it can.
func FuzzOpen(f *testing.F) {
	raw := smallRaw()[:64<<10]
	f.Add(plainSparse(raw[:32<<10]), []byte(nil))
	f.Add(buildStream(raw, 16, "createType=\"streamOptimized\"\n"), []byte(nil))
	f.Add(buildCOWD(raw[:16<<10], 4), []byte(nil))
	f.Add(descWith("monolithicFlat", "RW 16 FLAT \"e.vmdk\" 2\nRW 4 ZERO\nRW 32 SPARSE \"e.vmdk\"\n"), buildCOWD(raw[:16<<10], 4))
	f.Fuzz(func(t *testing.T, top, ext []byte) {
		img, err := openFiles(map[string][]byte{"d.vmdk": top, "e.vmdk": ext}, "d.vmdk")
		if err != nil {
			return
		}
		defer img.Close()
		img.Extents(0, img.Size())
		buf := make([]byte, 128<<10)
		for _, off := range []int64{0, img.Size() / 2, img.Size() - 1000} {
			img.ReadAt(buf, max(off, 0))
		}
	})
}
