package disklayout

import (
	"encoding/binary"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestSizes checks that each struct mirrors its on-disk size.
func TestSizes(t *testing.T) {
	for _, c := range []struct {
		v    any
		size int
	}{
		{Superblock{}, SuperblockSize},
		{GroupDesc{}, GroupDescSize64},
		{Inode{}, InodeFullSize},
		{ExtentHeader{}, ExtentHeaderSize},
		{ExtentIdx{}, ExtentEntrySize},
		{Extent{}, ExtentEntrySize},
		{Dirent{}, DirentHeaderSize},
		{DxRootInfo{}, DxRootInfoLen},
		{DxCountLimit{}, 8},
		{DxEntry{}, DxEntrySize},
		{XattrHeader{}, XattrHeaderSize},
		{XattrEntry{}, XattrEntrySize},
	} {
		if got := binary.Size(c.v); got != c.size {
			t.Errorf("%T: size %d, want %d", c.v, got, c.size)
		}
	}
}

// TestDecodersMatchStructs decodes random bytes with the hand-written
// decoders and with encoding/binary over the struct definitions: the two
// agree only if every hand-written offset matches the struct layout.
func TestDecodersMatchStructs(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	buf := make([]byte, 1024)
	for range 50 {
		for i := range buf {
			buf[i] = byte(rng.Uint32())
		}
		le := binary.LittleEndian
		check := func(name string, got, want any) {
			t.Helper()
			if d := cmp.Diff(want, got); d != "" {
				t.Errorf("%s (-binary +manual):\n%s", name, d)
			}
		}
		decode := func(v any) {
			if _, err := binary.Decode(buf, le, v); err != nil {
				t.Fatal(err)
			}
		}
		var gd GroupDesc
		decode(&gd)
		g2, _ := DecodeGroupDesc(buf[:64])
		check("GroupDesc", g2, gd)

		// Inode with i_extra_isize covering all extra fields.
		le.PutUint16(buf[0x80:], 32)
		var in Inode
		decode(&in)
		i2, _ := DecodeInode(buf[:256])
		check("Inode", i2, in)

		var eh ExtentHeader
		decode(&eh)
		eh2, _ := DecodeExtentHeader(buf)
		check("ExtentHeader", eh2, eh)
		var ex Extent
		if _, err := binary.Decode(buf[12:], le, &ex); err != nil {
			t.Fatal(err)
		}
		check("Extent", DecodeExtent(buf, 0), ex)
		var ei ExtentIdx
		if _, err := binary.Decode(buf[12:], le, &ei); err != nil {
			t.Fatal(err)
		}
		check("ExtentIdx", DecodeExtentIdx(buf, 0), ei)

		var de Dirent
		decode(&de)
		de2, _ := DecodeDirent(buf)
		check("Dirent", de2, de)

		var ri DxRootInfo
		if _, err := binary.Decode(buf[DxRootInfoOff:], le, &ri); err != nil {
			t.Fatal(err)
		}
		ri2, _ := DecodeDxRootInfo(buf)
		check("DxRootInfo", ri2, ri)
		var cl DxCountLimit
		if _, err := binary.Decode(buf[DxRootEntries:], le, &cl); err != nil {
			t.Fatal(err)
		}
		cl2, _ := DecodeDxCountLimit(buf, DxRootEntries)
		check("DxCountLimit", cl2, cl)

		var xh XattrHeader
		decode(&xh)
		xh2, _ := DecodeXattrHeader(buf)
		check("XattrHeader", xh2, xh)
		var xe XattrEntry
		decode(&xe)
		xe2, _ := DecodeXattrEntry(buf)
		check("XattrEntry", xe2, xe)
	}
}

// TestSuperblockOffsets spot-checks fields at offsets from super.rst.
func TestSuperblockOffsets(t *testing.T) {
	b := make([]byte, SuperblockSize)
	le := binary.LittleEndian
	le.PutUint16(b[0x38:], SuperMagic)
	le.PutUint32(b[0x60:], IncompatExtents)
	le.PutUint16(b[0xFE:], 64)
	le.PutUint32(b[0x150:], 7)
	le.PutUint32(b[0x270:], 0xabcdef)
	le.PutUint16(b[0x27C:], EncodingUTF8)
	le.PutUint32(b[0x280:], 12)
	le.PutUint32(b[0x3FC:], 0x11223344)
	sb, err := DecodeSuperblock(b)
	if err != nil {
		t.Fatal(err)
	}
	if sb.Magic != SuperMagic || sb.FeatureIncompat != IncompatExtents || sb.DescSize != 64 ||
		sb.BlocksCountHi != 7 || sb.ChecksumSeed != 0xabcdef || sb.Encoding != EncodingUTF8 ||
		sb.OrphanFileInum != 12 || sb.Checksum != 0x11223344 {
		t.Errorf("misplaced fields: %+v", sb)
	}
}

func TestDecodeTime(t *testing.T) {
	for _, c := range []struct {
		sec, extra uint32
		has        bool
		want       time.Time
	}{
		{0, 0, false, time.Unix(0, 0)},
		{0xFFFFFFFF, 0, false, time.Unix(-1, 0)},
		{0x80000000, 0, true, time.Unix(-1<<31, 0)},
		{0x80000000, 1, true, time.Unix(1<<31, 0)}, // 2038 + epoch bit
		{0, 2 | 5<<2, true, time.Unix(2<<32, 5)},   // far future
		{100, 999999999 << 2, true, time.Unix(100, 999999999)},
	} {
		if got := DecodeTime(c.sec, c.extra, c.has); !got.Equal(c.want) {
			t.Errorf("DecodeTime(%#x, %#x) = %v, want %v", c.sec, c.extra, got, c.want)
		}
	}
}

func TestRecLen(t *testing.T) {
	if RecLen(12, 4096) != 12 || RecLen(65535, 65536) != 65536 || RecLen(0, 65536) != 65536 ||
		RecLen(4|1, 65536) != 4|1<<16 {
		t.Error("rec_len decoding")
	}
}

func TestConvertACL(t *testing.T) {
	// ext4: version 1; USER_OBJ rw; USER 1000 r; GROUP_OBJ r; MASK r; OTHER none.
	in := []byte{1, 0, 0, 0, 1, 0, 6, 0, 2, 0, 4, 0, 0xe8, 3, 0, 0, 4, 0, 4, 0, 0x10, 0, 4, 0, 0x20, 0, 0, 0}
	want := []byte{2, 0, 0, 0,
		1, 0, 6, 0, 0xff, 0xff, 0xff, 0xff,
		2, 0, 4, 0, 0xe8, 3, 0, 0,
		4, 0, 4, 0, 0xff, 0xff, 0xff, 0xff,
		0x10, 0, 4, 0, 0xff, 0xff, 0xff, 0xff,
		0x20, 0, 0, 0, 0xff, 0xff, 0xff, 0xff}
	got, ok := ConvertACL(in)
	if !ok || string(got) != string(want) {
		t.Errorf("ConvertACL = %v %v, want %v", got, ok, want)
	}
	if _, ok := ConvertACL(in[:10]); ok {
		t.Error("truncated ACL accepted")
	}
}

func TestCrc32c(t *testing.T) {
	// crc32c("123456789") is 0xE3069283 in its standard (inverted) form.
	if got := ^Crc32c(^uint32(0), []byte("123456789")); got != 0xE3069283 {
		t.Errorf("crc32c = %#x", got)
	}
}
