package qcow2

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/vmmount/vmmount/imagefmt/vdisk"
	"github.com/vmmount/vmmount/testimages"
)

// Hostile and broken images, crafted inline: each must give an error that
// names the image and the offset, with the right sentinel, and no panic.

const badName = "bad.qcow2"

func openBytes(b []byte) (*Image, error) {
	return Open(vdisk.BytesFile(badName, b), vdisk.OpenOptions{Name: badName})
}

// wantErr checks err is a FormatError at off matching sentinel whose text
// names the image and contains substr.
func wantErr(t *testing.T, err error, sentinel error, off int64, substr string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want one containing %q", substr)
	}
	var fe *vdisk.FormatError
	if !errors.As(err, &fe) {
		t.Fatalf("error %q (%T) is not a FormatError", err, err)
	}
	if !errors.Is(err, sentinel) {
		t.Errorf("error %q does not match %v", err, sentinel)
	}
	if fe.Off != off {
		t.Errorf("error %q at offset %d, want %d", err, fe.Off, off)
	}
	if !strings.Contains(err.Error(), substr) || !strings.Contains(err.Error(), fe.Image) || fe.Image == "" {
		t.Errorf("error %q does not contain %q and the image name", err, substr)
	}
}

// patch returns a copy of b with v written big-endian at off (uint16,
// uint32 or uint64).
func patch(b []byte, off int, v any) []byte {
	c := bytes.Clone(b)
	switch v := v.(type) {
	case uint8:
		c[off] = v
	case uint16:
		binary.BigEndian.PutUint16(c[off:], v)
	case uint32:
		binary.BigEndian.PutUint32(c[off:], v)
	case uint64:
		binary.BigEndian.PutUint64(c[off:], v)
	default:
		panic("patch: bad type")
	}
	return c
}

func TestBadHeader(t *testing.T) {
	good := (&synth{l2: []uint64{0}}).bytes()
	if _, err := openBytes(good); err != nil {
		t.Fatalf("the unpatched image does not open: %v", err)
	}
	cs := 512
	tests := []struct {
		name     string
		img      []byte
		sentinel error
		off      int64
		substr   string
	}{
		{"empty", nil, vdisk.ErrFormat, 0, "too short"},
		{"truncated header", good[:50], vdisk.ErrFormat, 0, "too short"},
		{"truncated v3 header", good[:80], vdisk.ErrFormat, 0, "too short"},
		{"bad magic", patch(good, 0, uint32(0x51464900)), vdisk.ErrFormat, 0, "magic"},
		{"version 1", patch(good, 4, uint32(1)), vdisk.ErrUnsupported, 4, "version 1"},
		{"version 4", patch(good, 4, uint32(4)), vdisk.ErrUnsupported, 4, "version 4"},
		{"cluster bits 8", patch(good, 20, uint32(8)), vdisk.ErrFormat, 20, "cluster_bits"},
		{"cluster bits 22", patch(good, 20, uint32(22)), vdisk.ErrFormat, 20, "cluster_bits"},
		{"header length 100", patch(good, 100, uint32(100)), vdisk.ErrFormat, 100, "header_length"},
		{"header length beyond cluster", patch(good, 100, uint32(1024)), vdisk.ErrFormat, 100, "header_length"},
		{"header claims 2^60 bytes", patch(good, 24, uint64(1)<<60), vdisk.ErrFormat, 24, "virtual size needs"},
		{"virtual size above 2^63", patch(good, 24, uint64(1)<<63), vdisk.ErrFormat, 24, "virtual size too large"},
		{"L1 too small", patch(good, 24, uint64(1)<<30), vdisk.ErrFormat, 36, "L1 table too small"},
		{"L1 past end", patch(good, 40, uint64(1)<<40), vdisk.ErrFormat, 40, "past the end"},
		{"L1 ends past end", patch(patch(good, 36, uint32(1000)), 40, uint64(len(good)-cs)), vdisk.ErrFormat, 40, "past the end"},
		{"L1 in header", patch(good, 40, uint64(0)), vdisk.ErrFormat, 40, "inside the header cluster"},
		{"L1 unaligned", patch(good, 40, uint64(3*cs+8)), vdisk.ErrFormat, 40, "not aligned"},
		{"L1 too large", patch(good, 36, uint32(MaxL1Size+1)), vdisk.ErrFormat, 36, "L1 table larger"},
		{"L1 on refcount table", patch(good, 40, uint64(synthRT*cs)), vdisk.ErrFormat, 40, "overlaps the refcount table"},
		{"refcount table past end", patch(good, 48, uint64(1)<<50), vdisk.ErrFormat, 48, "past the end"},
		{"refcount table in header", patch(good, 48, uint64(0)), vdisk.ErrFormat, 48, "inside the header cluster"},
		{"no refcount table", patch(good, 56, uint32(0)), vdisk.ErrFormat, 56, "no refcount table"},
		{"refcount table huge", patch(good, 56, uint32(1)<<31), vdisk.ErrFormat, 56, "refcount table larger"},
		{"refcount order 7", patch(good, 96, uint32(7)), vdisk.ErrFormat, 96, "refcount_order"},
		{"too many snapshots", patch(good, 60, uint32(MaxSnapshots+1)), vdisk.ErrFormat, 60, "snapshots"},
		{"snapshot table past end", patch(patch(good, 60, uint32(1000)), 64, uint64(synthData*cs)), vdisk.ErrFormat, 64, "past the end"},
		{"snapshot table in header", patch(good, 60, uint32(1)), vdisk.ErrFormat, 64, "inside the header cluster"},
		{"backing offset past cluster", patch(good, 8, uint64(cs+8)), vdisk.ErrFormat, 8, "backing file name offset"},
		{"backing name too long", patch(patch(good, 8, uint64(400)), 16, uint32(200)), vdisk.ErrFormat, 16, "backing file name too long"},
		{"AES encrypted", patch(good, 32, uint32(CryptAES)), vdisk.ErrUnsupported, 32, "encrypted qcow2 image (AES)"},
		{"LUKS encrypted", patch(good, 32, uint32(CryptLUKS)), vdisk.ErrUnsupported, 32, "encrypted qcow2 image (LUKS)"},
		{"unknown incompatible bit", patch(good, 72, uint64(1)<<5), vdisk.ErrUnsupported, 72, "bit 5"},
		{"compression type without bit", patch(good, 104, uint8(CompressionZstd)), vdisk.ErrFormat, 104, "compression type bit is clear"},
		{"compression bit with zlib", patch(good, 72, uint64(IncompatCompression)), vdisk.ErrFormat, 104, "compression_type is zlib"},
		{"unknown compression type", patch(patch(good, 72, uint64(IncompatCompression)), 104, uint8(9)), vdisk.ErrUnsupported, 104, "compression type 9"},
		{"extended L2 with small clusters", patch(good, 72, uint64(IncompatExtendedL2)), vdisk.ErrFormat, 20, "extended L2"},
		{"data file without name", patch(good, 72, uint64(IncompatDataFile)), vdisk.ErrUnsupported, 72, "records no name"},
		{"raw data file bit alone", patch(good, 88, uint64(AutoclearDataFileRaw)), vdisk.ErrFormat, 88, "raw external data bit"},
		{"extension overflows", patch(good, HeaderV3CompressionSize+4, uint32(cs)), vdisk.ErrFormat, HeaderV3CompressionSize, "overflows the header area"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			img, err := openBytes(tt.img)
			if err == nil {
				img.Close()
			}
			wantErr(t, err, tt.sentinel, tt.off, tt.substr)
		})
	}
}

func TestBadExtensions(t *testing.T) {
	ext := int64(HeaderV3CompressionSize)
	tests := []struct {
		name     string
		s        synth
		sentinel error
		off      int64
		substr   string
	}{
		{"unknown feature named by the table", synth{incompat: 1<<5 | 1<<9,
			exts: []RawExtension{featureTable(featureName(FeatureIncompatible, 5, "future-feature"), featureName(FeatureCompatible, 9, "not-this"))}},
			vdisk.ErrUnsupported, 72, `"future-feature" (bit 5), bit 9`},
		{"encryption extension", synth{exts: []RawExtension{{Type: ExtEncryption, Data: make([]byte, 16)}}},
			vdisk.ErrUnsupported, ext, "encryption header extension"},
		{"backing format too long", synth{backing: "b", exts: []RawExtension{{Type: ExtBackingFormat, Data: []byte("sixteen-bytes-xx")}}},
			vdisk.ErrFormat, ext, "backing format name too long"},
		{"bitmaps extension short", synth{autoclear: AutoclearBitmaps, exts: []RawExtension{{Type: ExtBitmaps, Data: make([]byte, 16)}}},
			vdisk.ErrFormat, ext, "bitmaps extension of 16 bytes"},
		{"bitmaps with none", synth{autoclear: AutoclearBitmaps, exts: []RawExtension{{Type: ExtBitmaps, Data: make([]byte, 24)}}},
			vdisk.ErrFormat, ext + 8, "no bitmaps"},
		{"bitmap directory past end", synth{autoclear: AutoclearBitmaps, exts: []RawExtension{{Type: ExtBitmaps,
			Data: binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint64([]byte{0, 0, 0, 1, 0, 0, 0, 0}, 4096), 1<<30)}}},
			vdisk.ErrFormat, 1 << 30, "bitmap directory reaches past the end"},
		{"empty data file name", synth{incompat: IncompatDataFile, exts: []RawExtension{{Type: ExtDataFile}}},
			vdisk.ErrFormat, ext, "empty external data file name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := openBytes(tt.s.bytes())
			wantErr(t, err, tt.sentinel, tt.off, tt.substr)
		})
	}
}

func TestBadSnapshotTable(t *testing.T) {
	s := synth{l2: []uint64{0}, data: [][]byte{make([]byte, 512)}}
	b := s.bytes()
	// Two snapshots in the last cluster; the first claims a 600-byte name,
	// which runs past the end of the file.
	off := int(s.dataOff(0))
	b = patch(patch(b, 60, uint32(2)), 64, uint64(off))
	b = patch(b, off+14, uint16(600))
	_, err := openBytes(b)
	wantErr(t, err, vdisk.ErrFormat, int64(off), "snapshot 0")
	// Extra data above qemu's bound.
	b = patch(patch(b, off+14, uint16(0)), off+36, uint32(5000))
	_, err = openBytes(b)
	wantErr(t, err, vdisk.ErrFormat, int64(off+36), "extra data larger")
}

// TestBadMapping checks entries that point where they must not: each opens
// (tables are read lazily) and fails on the read that meets them, naming
// the offset of the bad entry, and Extents fails the same way.
func TestBadMapping(t *testing.T) {
	cs := uint64(512)
	data := [][]byte{bytes.Repeat([]byte{7}, 512)}
	l2Off := int64(synthL2 * cs)
	tests := []struct {
		name   string
		s      synth
		off    int64 // of the bad entry
		substr string
	}{
		{"L2 entry into the L1 table", synth{l2: []uint64{0, synthL1 * cs}}, l2Off + 8, "points into the active L1 table"},
		{"L2 entry into the refcount table", synth{l2: []uint64{synthRT * cs}}, l2Off, "points into the refcount table"},
		{"L2 entry past the end", synth{l2: []uint64{0, 0, 0, 1 << 40}, data: data}, l2Off + 24, "points past the end of the image file"},
		{"compressed in the header", synth{l2: []uint64{L2Compressed | 100}, data: data}, l2Off, "lies in the header cluster"},
		{"compressed past the end", synth{l2: []uint64{L2Compressed | 1<<30}, data: data}, l2Off, "starts past the end"},
		{"compressed in the L1 table", synth{l2: []uint64{L2Compressed | synthL1*cs + 8}, data: data}, l2Off, "lies in the active L1 table"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			img, err := openBytes(tt.s.bytes())
			if err != nil {
				t.Fatal(err)
			}
			defer img.Close()
			buf := make([]byte, img.Size())
			_, err = img.ReadAt(buf, 0)
			wantErr(t, err, vdisk.ErrFormat, tt.off, tt.substr)
			_, err = img.Extents(0, img.Size())
			if !strings.Contains(tt.name, "compressed") { // the map does not read compressed data
				wantErr(t, err, vdisk.ErrFormat, tt.off, tt.substr)
			}
		})
	}
}

func TestBadHostOffsetAlignment(t *testing.T) {
	s := synth{bits: 10, data: [][]byte{make([]byte, 1024), make([]byte, 1024)}}
	s.l2 = []uint64{s.dataOff(0) + 512}
	img, err := openBytes(s.bytes())
	if err != nil {
		t.Fatal(err)
	}
	_, err = img.ReadAt(make([]byte, 100), 0)
	wantErr(t, err, vdisk.ErrFormat, s.entryOff(0), "not aligned")
}

func TestBadL1Entry(t *testing.T) {
	s := synth{bits: 10, l2: []uint64{0}}
	cs := uint64(1024)
	l1 := synthL1 * cs
	for _, tc := range []struct {
		entry  uint64
		substr string
	}{
		{synthRT * cs, "L2 table inside the refcount table"},
		{1 << 40, "L2 table past the end"},
		{synthL2*cs + 512, "not aligned"},
		{synthL1 * cs, "L2 table inside the active L1 table"},
	} {
		img, err := openBytes(patch(s.bytes(), int(l1), tc.entry))
		if err != nil {
			t.Fatal(err)
		}
		_, err = img.ReadAt(make([]byte, 10), 0)
		wantErr(t, err, vdisk.ErrFormat, int64(l1), tc.substr)
	}
}

func TestBadSubclusters(t *testing.T) {
	cs := uint64(1) << 14
	s := synth{bits: 14, incompat: IncompatExtendedL2, data: [][]byte{make([]byte, cs)}}
	for _, tc := range []struct {
		entry, bitmap uint64
		substr        string
	}{
		{s.dataOff(0), 1 | 1<<32, "both allocated and zero"},
		{0, 1 << 3, "without a host offset"},
	} {
		s.l2 = []uint64{tc.entry, tc.bitmap}
		img, err := openBytes(s.bytes())
		if err != nil {
			t.Fatal(err)
		}
		_, err = img.ReadAt(make([]byte, 10), 0)
		wantErr(t, err, vdisk.ErrFormat, s.entryOff(0)+8, tc.substr)
	}
}

// TestBadCompressed has compressed clusters that inflate to less or more
// than a cluster, or are not valid streams at all.
func TestBadCompressed(t *testing.T) {
	cs := 512
	full := bytes.Repeat([]byte("abcdefgh"), cs/8)
	for _, tc := range []struct {
		name   string
		typ    uint8
		stream []byte
		substr string
	}{
		{"zlib short", CompressionZlib, deflateRaw(full[:100]), "inflates to the wrong size: stream ends after 100 bytes"},
		{"zlib long", CompressionZlib, deflateRaw(append(full, full...)), "inflates to the wrong size: stream holds more"},
		{"zlib garbage", CompressionZlib, bytes.Repeat([]byte{0xff}, 40), "deflate stream"},
		{"zstd short", CompressionZstd, zstdFrame(full[:100]), "wrong size: zstd"},
		{"zstd long", CompressionZstd, zstdFrame(append(full, full...)), "zstd frame of 1024 bytes"},
		{"zstd garbage", CompressionZstd, bytes.Repeat([]byte{0xff}, 40), "zstd stream"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := synth{data: [][]byte{make([]byte, cs)}, compression: tc.typ, tail: tc.stream}
			if tc.typ == CompressionZstd {
				s.incompat = IncompatCompression
			}
			s.l2 = []uint64{EncodeCompressed(s.tailOff(), len(tc.stream), 9)}
			img, err := openBytes(s.bytes())
			if err != nil {
				t.Fatal(err)
			}
			_, err = img.ReadAt(make([]byte, cs), 0)
			wantErr(t, err, vdisk.ErrFormat, int64(s.tailOff()), tc.substr)
			// Partial reads go through the decompressed-cluster cache.
			_, err = img.ReadAt(make([]byte, 10), 5)
			wantErr(t, err, vdisk.ErrFormat, int64(s.tailOff()), tc.substr)
		})
	}
}

// TestCompressedGood checks both compression types on crafted clusters,
// including a stream whose last sector is cut short by the end of the file.
func TestCompressedGood(t *testing.T) {
	cs := 512
	full := bytes.Repeat([]byte("0123456789abcdef"), cs/16)
	for _, typ := range []uint8{CompressionZlib, CompressionZstd} {
		var stream []byte
		s := synth{data: [][]byte{make([]byte, cs)}, compression: typ}
		if typ == CompressionZstd {
			s.incompat = IncompatCompression
			stream = zstdFrame(full)
		} else {
			stream = deflateRaw(full)
		}
		s.tail = stream
		s.l2 = []uint64{EncodeCompressed(s.tailOff(), len(stream), 9), EncodeCompressed(s.tailOff(), len(stream), 9)}
		img, err := openBytes(s.bytes())
		if err != nil {
			t.Fatal(err)
		}
		got := make([]byte, 2*cs)
		if _, err := img.ReadAt(got, 0); err != nil {
			t.Fatalf("compression %d: %v", typ, err)
		}
		if !bytes.Equal(got, append(full, full...)) {
			t.Errorf("compression %d: wrong data", typ)
		}
		if img.Info().Compression != []string{"zlib", "zstd"}[typ] {
			t.Errorf("Info().Compression = %q", img.Info().Compression)
		}
	}
}

// TestTruncatedFixture cuts a qemu image: what remains opens or not, but
// reads of what is gone fail naming an offset, never return wrong bytes.
func TestTruncatedFixture(t *testing.T) {
	var path string
	for _, fx := range testimages.Qcow2Fixtures(t) {
		if fx.Name == "v3" {
			path = fx.Path
		}
	}
	full, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{len(full) / 2, 0x30000 + 8, 100} {
		img, err := openBytes(full[:n])
		if err != nil {
			var fe *vdisk.FormatError
			if !errors.As(err, &fe) || fe.Off < 0 {
				t.Errorf("truncated to %d: %v, want a FormatError with an offset", n, err)
			}
			continue
		}
		_, err = img.ReadAt(make([]byte, img.Size()), 0)
		var fe *vdisk.FormatError
		if !errors.As(err, &fe) || fe.Off < 0 || !strings.Contains(err.Error(), "past the end") {
			t.Errorf("truncated to %d: read gives %v, want a FormatError past the end", n, err)
		}
	}
}

func TestEncryptedFixture(t *testing.T) {
	f, err := vdisk.OpenOSFile(testimages.Qcow2Encrypted(t))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	_, err = Open(f, vdisk.OpenOptions{Name: f.Name()})
	wantErr(t, err, vdisk.ErrUnsupported, 32, "encrypted qcow2 image (LUKS)")
}

// TestHugeVirtualSize opens a valid image of 2^60 bytes (2 MiB clusters, a
// 16 MiB L1 table): opening must not read the L1 table, a read anywhere is
// zeros, the whole-disk map is one extent, and memory stays bounded.
func TestHugeVirtualSize(t *testing.T) {
	testimages.RequireTools(t, "qemu-img")
	dir := t.TempDir()
	name := filepath.Join(dir, "huge.qcow2")
	testimages.MustRun(t, "qemu-img", "create", "-q", "-f", "qcow2", "-o", "cluster_size=2M", name, "1E")
	testimages.MustRun(t, "qemu-io", "-c", "write -P 0x5a 576460752303423488 4k", name)

	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	img := mustOpen(t, name).(*Image)
	runtime.ReadMemStats(&after)
	// The header cluster (2 MiB) is read whole; nothing else is large.
	if d := after.TotalAlloc - before.TotalAlloc; d > 3<<20 {
		t.Errorf("Open allocated %d bytes", d)
	}
	if img.Size() != 1<<60 {
		t.Fatalf("Size = %d", img.Size())
	}
	buf := make([]byte, 8192)
	if _, err := img.ReadAt(buf, 1<<59-4096); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf[:4096], make([]byte, 4096)) || !bytes.Equal(buf[4096:], bytes.Repeat([]byte{0x5a}, 4096)) {
		t.Error("wrong data around 2^59")
	}
	ex, err := img.Extents(0, img.Size())
	if err != nil {
		t.Fatal(err)
	}
	if len(ex) != 3 || ex[1].Off != 1<<59 || ex[1].Kind != vdisk.Data {
		t.Errorf("Extents = %v", ex)
	}
	if _, used := img.l1.size(); used > l1CacheBudget+l1ChunkEntries*8 {
		t.Errorf("L1 cache holds %d bytes", used)
	}
	if _, used := img.l2.size(); used > max(l2CacheBudget, minL2Tables*(2<<20))+2<<20 {
		t.Errorf("L2 cache holds %d bytes", used)
	}
}

// TestCacheBound reads all of a 320 MiB image with 512-byte clusters (10240
// L2 tables): the caches stay within their budgets.
func TestCacheBound(t *testing.T) {
	for _, fx := range testimages.Qcow2Fixtures(t) {
		if fx.Name != "v3-512" {
			continue
		}
		img := mustOpen(t, fx.Path).(*Image)
		if _, err := io.Copy(io.Discard, io.NewSectionReader(img, 0, img.Size())); err != nil {
			t.Fatal(err)
		}
		n, used := img.l2.size()
		if used > l2CacheBudget || n == 0 {
			t.Errorf("L2 cache: %d tables, %d bytes", n, used)
		}
		if _, used := img.l1.size(); used > l1CacheBudget {
			t.Errorf("L1 cache: %d bytes", used)
		}
	}
}
