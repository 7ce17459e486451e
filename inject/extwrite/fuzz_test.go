package extwrite

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"io"
	"os"
	"testing"
	"time"

	"github.com/vmmount/vmmount/fsread/ext/disklayout"
)

// The seed images of the ext reader's fuzz targets (1 KiB blocks: an
// ext2, an ext4 with metadata_csum, an inline_data ext4), each with dir/
// (60 entries), small, frag (fragmented), xattrs, fast and slow.
var seedFiles = []string{"fuzz-ext2.img.gz", "fuzz-ext4.img.gz", "fuzz-inline.img.gz"}

func loadSeed(t testing.TB, name string) []byte {
	t.Helper()
	f, err := os.Open("../../fsread/ext/testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	z, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(z)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// exerciseWrite runs a transaction of every kind of operation on img; each
// may fail, none may panic, hang or allocate without bound.
func exerciseWrite(img []byte) {
	f, err := Open(bytes.NewReader(img), int64(len(img)), Options{Name: "fuzz", Now: func() time.Time { return testTime }})
	if err != nil {
		return
	}
	data := bytes.Repeat([]byte("fuzz"), 3000)
	dir, _ := f.Lookup(RootIno, "dir")
	for _, d := range []uint32{RootIno, dir} {
		if d == 0 {
			continue
		}
		f.Create(d, "new-file", Attr{Perm: 0o644}, content(data))
		f.Create(d, "new-empty", Attr{Perm: 0o644}, content(nil))
		f.Mkdir(d, "new-dir", Attr{Perm: 0o755})
		f.Symlink(d, "new-link", "a/slow/symlink/target/that/is/longer/than/sixty/bytes/for/sure", Attr{})
		for i := range 20 {
			f.Create(d, "bulk-"+itoa(uint64(i)), Attr{Perm: 0o644}, content(nil))
		}
	}
	for _, n := range []string{"small", "frag", "xattrs"} {
		if ino, err := f.Lookup(RootIno, n); err == nil {
			f.Replace(ino, content(data[:5000]), ReplaceAttr{})
		}
	}
	for _, n := range []string{"fast", "slow"} {
		if ino, err := f.Lookup(RootIno, n); err == nil {
			f.ReplaceSymlink(ino, "x", ReplaceAttr{})
		}
	}
	if f.Finish() == nil {
		f.Changes()
	}
}

// FuzzWrite replaces one block of a seed image with the fuzzer's bytes
// (fixing the superblock and descriptor checksums when it hits them) and
// runs a transaction over it.
func FuzzWrite(f *testing.F) {
	for i, n := range seedFiles {
		img := loadSeed(f, n)
		for _, blk := range []uint16{1, 2, 3, 4, 5, 6, 40, 100, 200} {
			f.Add(uint8(i), blk, img[int(blk)*1024:int(blk+1)*1024])
		}
	}
	seeds := map[uint8][]byte{}
	f.Fuzz(func(t *testing.T, which uint8, blk uint16, data []byte) {
		w := which % uint8(len(seedFiles))
		if seeds[w] == nil {
			seeds[w] = loadSeed(t, seedFiles[w])
		}
		img := bytes.Clone(seeds[w])
		off := int(blk) * 1024 % len(img)
		copy(img[off:min(off+1024, len(img))], data)
		fixChecksums(img)
		exerciseWrite(img)
	})
}

// fixChecksums recomputes the superblock checksum and those of the
// descriptors in block 2, for metadata_csum images.
func fixChecksums(img []byte) {
	sb, err := disklayout.DecodeSuperblock(img[1024:2048])
	if err != nil || !sb.MetadataCsum() {
		return
	}
	binary.LittleEndian.PutUint32(img[1024+0x3FC:], disklayout.SuperblockChecksum(img[1024:2048]))
	ds := sb.DescSizeBytes()
	if ds < 32 || ds > 1024 {
		return
	}
	seed := sb.CsumSeed()
	for g := 0; (g+1)*ds <= 1024; g++ {
		raw := img[2048+g*ds : 2048+(g+1)*ds]
		binary.LittleEndian.PutUint16(raw[0x1E:], disklayout.GroupDescChecksum(sb, seed, uint32(g), raw))
	}
}

// TestSeedTransactions runs the fuzz transaction on the unchanged seeds:
// it must succeed and leave a filesystem e2fsck accepts.
func TestSeedTransactions(t *testing.T) {
	for _, n := range seedFiles {
		img := loadSeed(t, n)
		path := t.TempDir() + "/fs.img"
		if err := os.WriteFile(path, img, 0o644); err != nil {
			t.Fatal(err)
		}
		f, _ := openImage(t, path)
		if _, err := f.Lookup(RootIno, "dir"); err != nil {
			t.Fatalf("%s: %v", n, err)
		}
		exerciseWriteOn(t, f)
		apply(t, f, path)
		fsck(t, path, n)
	}
}

func exerciseWriteOn(t *testing.T, f *FS) {
	data := bytes.Repeat([]byte("seed"), 3000)
	dir, err := f.Lookup(RootIno, "dir")
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []uint32{RootIno, dir} {
		if _, err := f.Create(d, "new-file", Attr{Perm: 0o644}, content(data)); err != nil {
			t.Fatal(err)
		}
		if _, err := f.Mkdir(d, "new-dir", Attr{Perm: 0o755}); err != nil {
			t.Fatal(err)
		}
		for i := range 20 {
			if _, err := f.Create(d, "bulk-"+itoa(uint64(i)), Attr{Perm: 0o644}, content(nil)); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, n := range []string{"small", "frag", "xattrs"} {
		ino, err := f.Lookup(RootIno, n)
		if err != nil {
			t.Fatal(err)
		}
		if err := f.Replace(ino, content(data[:5000]), ReplaceAttr{}); err != nil {
			t.Fatalf("replace %s: %v", n, err)
		}
	}
}
