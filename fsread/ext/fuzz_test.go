package ext

import (
	"bytes"
	"encoding/binary"
	"io"
	"testing"

	"github.com/vmmount/vmmount/fsread/ext/disklayout"
)

// Fuzz targets: each takes a seed image (testdata), replaces one on-disk
// structure with the fuzzer's bytes, recomputes that structure's checksum
// (so the parser behind the checksum is reached), opens the image and
// exercises everything. They must never panic, hang or allocate without
// bound.

// exercise walks the whole filesystem with bounds: every directory listed
// and every name looked up, every inode stat'ed, files read, symlinks and
// xattrs read.
func exercise(f *FS) {
	seen := map[uint64]bool{}
	budget := 500
	readBudget := int64(8 << 20) // bytes read in all, so holes cannot eat the run
	var walk func(ino uint64, depth int)
	walk = func(ino uint64, depth int) {
		if budget <= 0 || depth > 16 || seen[ino] {
			return
		}
		seen[ino] = true
		budget--
		st, err := f.Stat(ino)
		if err != nil {
			return
		}
		f.Xattrs(ino)
		if names, err := f.Xattrs(ino); err == nil {
			for _, n := range names {
				f.Xattr(ino, n)
			}
		}
		f.Xattr(ino, "system.posix_acl_access")
		switch st.Mode & 0o170000 {
		case 0o100000:
			fl, err := f.Open(ino)
			if err != nil {
				return
			}
			fl.Extents()
			buf := make([]byte, 64<<10)
			for off := int64(0); off < min(fl.Size(), 256<<10) && readBudget > 0; off += int64(len(buf)) {
				readBudget -= int64(len(buf))
				if _, err := fl.ReadAt(buf, off); err != nil && err != io.EOF {
					break
				}
			}
			fl.ReadAt(buf[:10], fl.Size()-5)
		case 0o120000:
			f.Readlink(ino)
		case 0o040000:
			ents, err := f.ReadDir(ino)
			f.Lookup(ino, "no-such-name")
			f.Lookup(ino, "..")
			if err != nil {
				return
			}
			for i, e := range ents {
				if i > 200 {
					break
				}
				f.Lookup(ino, e.Name)
				walk(e.Ino, depth+1)
			}
		}
	}
	walk(f.Root(), 0)
	f.Info()
	f.Warnings()
}

func seedImage(t testing.TB, name string) []byte {
	imgs, err := seedImages()
	if err != nil {
		t.Fatal(err)
	}
	return imgs[name]
}

func openSeed(t testing.TB, b []byte) *FS {
	f, err := Open(bytes.NewReader(b), int64(len(b)), Options{Name: "fuzz"})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// patch returns a copy of img with data written at off (clipped to n
// bytes).
func patch(img []byte, off int64, n int, data []byte) []byte {
	b := bytes.Clone(img)
	if off < 0 || off >= int64(len(b)) {
		return b
	}
	copy(b[off:min(off+int64(n), int64(len(b)))], data)
	return b
}

func TestSeedImages(t *testing.T) {
	for _, n := range seedNames {
		f := openSeed(t, seedImage(t, n))
		got := 0
		exercise(f)
		ents, err := f.ReadDir(mustLookup(t, f, "dir"))
		if err != nil {
			t.Fatal(err)
		}
		got = len(ents)
		if got != 60 {
			t.Errorf("%s: dir has %d entries", n, got)
		}
	}
}

// FuzzSuperblock replaces the superblock and the first group descriptor
// block (bytes 1024 to 3072 of a 1 KiB-block image).
func FuzzSuperblock(f *testing.F) {
	for i, n := range seedNames {
		img := seedImage(f, n)
		f.Add(uint8(i), img[1024:3072])
	}
	f.Fuzz(func(t *testing.T, which uint8, data []byte) {
		img := patch(seedImage(t, seedNames[int(which)%len(seedNames)]), 1024, 2048, data)
		fixSuperAndGroups(img)
		if fs, err := Open(bytes.NewReader(img), int64(len(img)), Options{Name: "fuzz"}); err == nil {
			exercise(fs)
		}
	})
}

// fixSuperAndGroups recomputes the superblock checksum and those of the
// descriptors in block 2, for metadata_csum images.
func fixSuperAndGroups(img []byte) {
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

// inodeTargets are the inodes FuzzInode replaces, by path.
var inodeTargets = []string{"", "dir", "small", "frag", "xattrs", "fast", "slow"}

func FuzzInode(f *testing.F) {
	for i, n := range seedNames {
		img := seedImage(f, n)
		fs := openSeed(f, img)
		for j, p := range inodeTargets {
			ino := fs.Root()
			if p != "" {
				ino, _ = fs.Lookup(ino, p)
			}
			off := fs.inodeOffset(ino)
			f.Add(uint8(i), uint8(j), img[off:off+int64(fs.inodeSize)])
		}
	}
	f.Fuzz(func(t *testing.T, which, target uint8, data []byte) {
		img := seedImage(t, seedNames[int(which)%len(seedNames)])
		fs := openSeed(t, img)
		ino := fs.Root()
		if p := inodeTargets[int(target)%len(inodeTargets)]; p != "" {
			ino, _ = fs.Lookup(ino, p)
		}
		img = patch(img, fs.inodeOffset(ino), fs.inodeSize, data)
		if fs.csum {
			fixInodeCsum(fs, img, ino)
		}
		exercise(openSeed(t, img))
	})
}

// FuzzExtentTree replaces the extent tree block of "frag" (ext4 seed).
func FuzzExtentTree(f *testing.F) {
	img := seedImage(f, "ext4")
	fs := openSeed(f, img)
	frag := mustLookupTB(f, fs, "frag")
	n, _ := fs.inode(frag)
	etb := disklayout.DecodeExtentIdx(n.iblock(), 0).Leaf()
	off := int64(etb) * int64(fs.bs)
	f.Add(img[off : off+int64(fs.bs)])
	f.Fuzz(func(t *testing.T, data []byte) {
		b := patch(img, off, fs.bs, data)
		blk := b[off : off+int64(fs.bs)]
		if h, err := disklayout.DecodeExtentHeader(blk); err == nil {
			tail := disklayout.ExtentHeaderSize + int(h.Max)*disklayout.ExtentEntrySize
			if tail+4 <= len(blk) {
				binary.LittleEndian.PutUint32(blk[tail:], disklayout.Crc32c(fs.inodeSeed(n), blk[:tail]))
			}
		}
		exercise(openSeed(t, b))
	})
}

// FuzzDirBlock replaces a block of the htree directory "dir": the root
// (index) or a leaf.
func FuzzDirBlock(f *testing.F) {
	for i, name := range seedNames {
		img := seedImage(f, name)
		fs := openSeed(f, img)
		d := mustLookupTB(f, fs, "dir")
		for lblk := uint64(0); lblk < 3; lblk++ {
			off := int64(physOfTB(f, fs, d, lblk)) * int64(fs.bs)
			f.Add(uint8(i), uint8(lblk), img[off:off+int64(fs.bs)])
		}
	}
	f.Fuzz(func(t *testing.T, which, lblk uint8, data []byte) {
		img := seedImage(t, seedNames[int(which)%len(seedNames)])
		fs := openSeed(t, img)
		d := mustLookupTB(t, fs, "dir")
		dd, err := fs.openDir(d)
		if err != nil {
			t.Fatal(err)
		}
		if dd.m == nil {
			return
		}
		r, err := dd.m.mapBlock(uint64(lblk % 3))
		if err != nil || r.kind != runData {
			return
		}
		off := int64(r.phys) * int64(fs.bs)
		b := patch(img, off, fs.bs, data)
		if fs.csum {
			blk := b[off : off+int64(fs.bs)]
			seed := fs.inodeSeed(dd.n)
			if _, ok := disklayout.DirBlockTail(blk); ok {
				binary.LittleEndian.PutUint32(blk[len(blk)-4:], disklayout.DirBlockChecksum(seed, blk))
			} else {
				for _, clOff := range []int{disklayout.DxRootEntries, disklayout.DxNodeEntries} {
					if cl, err := disklayout.DecodeDxCountLimit(blk, clOff); err == nil {
						if _, c, ok := disklayout.DxNodeChecksum(seed, blk, clOff, int(cl.Count), int(cl.Limit)); ok {
							binary.LittleEndian.PutUint32(blk[clOff+int(cl.Limit)*8+4:], c)
						}
					}
				}
			}
		}
		exercise(openSeed(t, b))
	})
}

// FuzzXattrBlock replaces the xattr block of "xattrs".
func FuzzXattrBlock(f *testing.F) {
	for i, name := range seedNames {
		img := seedImage(f, name)
		fs := openSeed(f, img)
		n, _ := fs.inode(mustLookupTB(f, fs, "xattrs"))
		if blk := n.d.FileACL(); blk != 0 {
			off := int64(blk) * int64(fs.bs)
			f.Add(uint8(i), img[off:off+int64(fs.bs)])
		}
	}
	f.Fuzz(func(t *testing.T, which uint8, data []byte) {
		img := seedImage(t, seedNames[int(which)%len(seedNames)])
		fs := openSeed(t, img)
		n, _ := fs.inode(mustLookupTB(t, fs, "xattrs"))
		blk := n.d.FileACL()
		if blk == 0 {
			return
		}
		off := int64(blk) * int64(fs.bs)
		b := patch(img, off, fs.bs, data)
		if fs.csum {
			x := b[off : off+int64(fs.bs)]
			binary.LittleEndian.PutUint32(x[0x10:], disklayout.XattrBlockChecksum(fs.seed, blk, x))
		}
		exercise(openSeed(t, b))
	})
}

func mustLookupTB(t testing.TB, f *FS, name string) uint64 {
	ino, err := f.Lookup(f.Root(), name)
	if err != nil {
		t.Fatal(err)
	}
	return ino
}

func physOfTB(t testing.TB, f *FS, ino, lblk uint64) uint64 {
	n, err := f.inode(ino)
	if err != nil {
		t.Fatal(err)
	}
	if n.flag(disklayout.FlagInlineData) {
		return 0
	}
	m, err := f.mapperFor(n)
	if err != nil {
		t.Fatal(err)
	}
	r, err := m.mapBlock(lblk)
	if err != nil || r.kind != runData {
		return 0
	}
	return r.phys
}
