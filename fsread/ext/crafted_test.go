package ext

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/vmmount/vmmount/fsread/ext/disklayout"
	"github.com/vmmount/vmmount/fsread/fsys"
	"github.com/vmmount/vmmount/testimages"
)

// Edits of single fields of the damage image (with checksums fixed up):
// loops, encryption flags, huge_file; and concurrent readers.

// TestLoops makes an extent index point at its own node and a directory
// entry point at its directory.
func TestLoops(t *testing.T) {
	clean := damageImage(t)
	cf, err := openBytes(clean)
	if err != nil {
		t.Fatal(err)
	}
	frag := mustLookup(t, cf, "frag")
	plain := mustLookup(t, cf, "plain")
	t.Run("extent", func(t *testing.T) {
		b := bytes.Clone(clean)
		// Point the root's first index at the inode table block that
		// holds this very inode: a loop back into the inode, which is
		// no extent node (bad magic, wrong depth).
		off := cf.inodeOffset(frag) + 0x28
		itBlk := uint64(cf.inodeOffset(frag) / int64(cf.bs))
		le.PutUint32(b[off+12+4:], uint32(itBlk))
		le.PutUint16(b[off+12+8:], uint16(itBlk>>32))
		fixInodeCsum(cf, b, frag)
		f, err := openBytes(b)
		if err != nil {
			t.Fatal(err)
		}
		_, err = readAll(f, frag)
		wantCorrupt(t, "read", err, frag)
		checkRest(t, f)
	})
	t.Run("directory", func(t *testing.T) {
		b := bytes.Clone(clean)
		blk := physOf(t, cf, plain, 0)
		d, _ := cf.openDir(plain)
		found := false
		cb, _ := cf.block(blk)
		p := 0
		for p < cf.bs {
			h, _ := disklayout.DecodeDirent(cb.data[p:])
			if string(cb.data[p+8:p+8+int(h.NameLen)]) == "b" {
				le.PutUint32(b[int64(blk)*int64(cf.bs)+int64(p):], uint32(plain))
				found = true
			}
			p += disklayout.RecLen(h.RecLen, cf.bs)
		}
		if !found {
			t.Fatal("no entry b")
		}
		fixDirCsum(cf, b, d, blk)
		f, err := openBytes(b)
		if err != nil {
			t.Fatal(err)
		}
		_, err = f.Lookup(plain, "b")
		wantCorrupt(t, "Lookup b", err, plain)
		if _, err := f.Lookup(plain, "a"); err != nil {
			t.Errorf("Lookup a: %v", err)
		}
		if _, err := testimages.ScanFS(f); err != nil {
			t.Errorf("ScanFS: %v", err)
		}
	})
}

// TestEncrypted flags a file and a symlink as encrypted: both are listed
// and stat'ed, their content and target refused as unsupported.
func TestEncrypted(t *testing.T) {
	clean := damageImage(t)
	cf, err := openBytes(clean)
	if err != nil {
		t.Fatal(err)
	}
	b := bytes.Clone(clean)
	a, link := mustLookup(t, cf, "plain/a"), mustLookup(t, cf, "link")
	for _, ino := range []uint64{a, link} {
		off := cf.inodeOffset(ino) + 0x20
		le.PutUint32(b[off:], le.Uint32(b[off:])|disklayout.FlagEncrypt)
		fixInodeCsum(cf, b, ino)
	}
	f, err := openBytes(b)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Stat(a); err != nil {
		t.Errorf("Stat: %v", err)
	}
	if _, err := f.Open(a); !errors.Is(err, fsys.ErrUnsupported) {
		t.Errorf("Open: %v, want ErrUnsupported", err)
	}
	if _, err := f.Readlink(link); !errors.Is(err, fsys.ErrUnsupported) {
		t.Errorf("Readlink: %v, want ErrUnsupported", err)
	}
	if ents, err := f.ReadDir(mustLookup(t, f, "plain")); err != nil || len(ents) != 3 {
		t.Errorf("ReadDir: %v, %v", ents, err)
	}
}

// TestConcurrent reads one FS from several goroutines (run with -race):
// every walk must see the same tree.
func TestConcurrent(t *testing.T) {
	clean := damageImage(t)
	f, err := Open(bytes.NewReader(clean), int64(len(clean)), Options{Name: "dmg", CacheBytes: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	want, err := testimages.ScanFS(f)
	if err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 4)
	for range 4 {
		go func() {
			got, err := testimages.ScanFS(f)
			if err == nil {
				if d := testimages.Compare(want, got, testimages.ExtCompare()); len(d) > 0 {
					err = fmt.Errorf("concurrent walk differs: %v", d)
				}
			}
			errs <- err
		}()
	}
	for range 4 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}

// TestHugeFileBlocks sets EXT4_HUGE_FILE_FL: i_blocks then counts
// filesystem blocks, not 512-byte sectors (huge_file feature).
func TestHugeFileBlocks(t *testing.T) {
	clean := damageImage(t)
	cf, err := openBytes(clean)
	if err != nil {
		t.Fatal(err)
	}
	if !cf.sb.HasRoCompat(disklayout.RoCompatHugeFile) {
		t.Fatal("fixture without huge_file")
	}
	a := mustLookup(t, cf, "plain/a")
	b := bytes.Clone(clean)
	off := cf.inodeOffset(a)
	le.PutUint32(b[off+0x20:], le.Uint32(b[off+0x20:])|disklayout.FlagHugeFile)
	le.PutUint32(b[off+0x1C:], 3) // i_blocks_lo
	le.PutUint16(b[off+0x74:], 1) // i_blocks_high
	fixInodeCsum(cf, b, a)
	f, err := openBytes(b)
	if err != nil {
		t.Fatal(err)
	}
	st, err := f.Stat(a)
	if err != nil {
		t.Fatal(err)
	}
	if want := (int64(1)<<32 | 3) * int64(cf.bs/512); st.Blocks != want {
		t.Errorf("Blocks %d, want %d", st.Blocks, want)
	}
}

func TestNotExt(t *testing.T) {
	b := make([]byte, 1<<20)
	copy(b[3:], "NTFS    ")
	if Detect(bytes.NewReader(b), int64(len(b))) {
		t.Error("Detect: zeros are ext")
	}
	_, err := Open(bytes.NewReader(b), int64(len(b)), Options{Name: "p1"})
	if !errors.Is(err, ErrNotExt) || !strings.Contains(err.Error(), "p1") {
		t.Errorf("Open: %v, want ErrNotExt naming p1", err)
	}
	clean := damageImage(t)
	if !Detect(bytes.NewReader(clean), int64(len(clean))) {
		t.Error("Detect: the damage image is not ext")
	}
	// Tiny and truncated inputs.
	for _, n := range []int{0, 100, 1500, 2048, 4096} {
		if _, err := Open(bytes.NewReader(clean[:n]), int64(n), Options{}); err == nil {
			t.Errorf("Open of %d bytes succeeded", n)
		}
	}
}
