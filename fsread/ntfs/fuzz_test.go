package ntfs

import (
	"bytes"
	"os"
	"testing"

	"github.com/vmmount/vmmount/fsread/fsys"
	"github.com/vmmount/vmmount/testimages"
)

// overlay reads base with patch laid over it at off.
type overlay struct {
	base  []byte
	off   int64
	patch []byte
}

func (o *overlay) ReadAt(p []byte, off int64) (int, error) {
	n, err := bytes.NewReader(o.base).ReadAt(p, off)
	for i := 0; i < n; i++ {
		if j := off + int64(i) - o.off; j >= 0 && j < int64(len(o.patch)) {
			p[i] = o.patch[j]
		}
	}
	return n, err
}

// walkAll reads every name, inode, link, xattr and file of f; the fuzz
// targets only care that it returns.
func walkAll(f *FS) {
	seen := map[uint64]bool{}
	var visit func(ino uint64, depth int)
	visit = func(ino uint64, depth int) {
		if seen[ino] || depth > 64 {
			return
		}
		seen[ino] = true
		st, err := f.Stat(ino)
		if err != nil {
			return
		}
		if names, err := f.Xattrs(ino); err == nil {
			for _, n := range names {
				f.Xattr(ino, n)
			}
		}
		f.Xattr(ino, xattrTimes)
		switch st.Mode & fsys.S_IFMT {
		case fsys.S_IFDIR:
			ents, err := f.ReadDir(ino)
			if err != nil {
				return
			}
			for _, e := range ents {
				f.Lookup(ino, e.Name)
				visit(e.Ino, depth+1)
			}
		case fsys.S_IFLNK:
			f.Readlink(ino)
		case fsys.S_IFREG:
			fl, err := f.Open(ino)
			if err != nil {
				return
			}
			fl.Extents()
			buf := make([]byte, 64<<10)
			for off := int64(0); off < fl.Size() && off < 16<<20; off += int64(len(buf)) {
				if _, err := fl.ReadAt(buf, off); err != nil {
					break
				}
			}
		}
	}
	visit(f.Root(), 0)
	f.Info()
}

func smallForFuzz(f *testing.F) []byte {
	dir, err := testimages.Cached("fsread-ntfs-small", "v1", buildSmall)
	if err != nil {
		if testimages.InCI() {
			f.Fatal(err)
		}
		f.Skip(err)
	}
	b, err := os.ReadFile(dir + "/img")
	if err != nil {
		f.Fatal(err)
	}
	return b
}

// FuzzNTFSOpen opens arbitrary bytes (a boot sector and what follows) and
// walks what it can.
func FuzzNTFSOpen(f *testing.F) {
	b := smallForFuzz(f)
	f.Add(b[:4096])
	f.Fuzz(func(t *testing.T, data []byte) {
		fs, err := Open(bytes.NewReader(data), int64(len(data)), Options{Name: "fuzz"})
		if err != nil {
			return
		}
		walkAll(fs)
	})
}

// FuzzNTFSRecord lays arbitrary bytes over an MFT record of a valid volume
// (the root, a directory, a file, $MFT itself, $Volume, chosen by which)
// and walks the volume.
func FuzzNTFSRecord(f *testing.F) {
	b := smallForFuzz(f)
	vol, err := openBytes(b)
	if err != nil {
		f.Fatal(err)
	}
	targets := []uint64{mftRecordRoot, mftRecordMFT, mftRecordVolume}
	for _, n := range []string{"dir", "data", "small"} {
		ino, err := vol.Lookup(vol.Root(), n)
		if err != nil {
			f.Fatal(err)
		}
		targets = append(targets, ino)
	}
	for i, ino := range targets {
		off := vol.mft.volOff(int64(ino) * vol.recSize)
		f.Add(uint8(i), append([]byte(nil), b[off:off+vol.recSize]...))
	}
	f.Fuzz(func(t *testing.T, which uint8, rec []byte) {
		ino := targets[int(which)%len(targets)]
		off := vol.mft.volOff(int64(ino) * vol.recSize)
		fs, err := Open(&overlay{base: b, off: off, patch: rec}, int64(len(b)), Options{Name: "fuzz"})
		if err != nil {
			return
		}
		walkAll(fs)
	})
}

// FuzzNTFSIndex lays arbitrary bytes over the first index block of a
// directory and walks the volume.
func FuzzNTFSIndex(f *testing.F) {
	b := smallForFuzz(f)
	vol, err := openBytes(b)
	if err != nil {
		f.Fatal(err)
	}
	dir, err := vol.Lookup(vol.Root(), "dir")
	if err != nil {
		f.Fatal(err)
	}
	in, err := vol.inode(dir)
	if err != nil {
		f.Fatal(err)
	}
	s, err := vol.newStream(dir, in.i30alloc)
	if err != nil {
		f.Fatal(err)
	}
	off := s.volOff(0)
	f.Add(append([]byte(nil), b[off:off+4096]...))
	f.Fuzz(func(t *testing.T, blk []byte) {
		fs, err := Open(&overlay{base: b, off: off, patch: blk}, int64(len(b)), Options{Name: "fuzz"})
		if err != nil {
			return
		}
		walkAll(fs)
	})
}
