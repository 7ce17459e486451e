package ext

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/vmmount/vmmount/fsread/ext/disklayout"
	"github.com/vmmount/vmmount/fsread/fsys"
	"github.com/vmmount/vmmount/testimages"
)

// The damage tests corrupt one object of a small kernel-made image (1 KiB
// blocks, metadata_csum, an htree directory, a file with an extent tree
// block, an xattr block) and check that the error names that object while
// everything else still reads as before.

func damageImage(t *testing.T) []byte {
	t.Helper()
	testimages.RequireTools(t, "mkfs.ext4", "e2fsck", "losetup", "mount")
	testimages.RequireRoot(t)
	dir := testimages.Get(t, "ext-damage", "v1", func(dir string) error {
		img := filepath.Join(dir, "image")
		if err := testimages.Truncate(img, 16<<20); err != nil {
			return err
		}
		if _, err := testimages.Run("mkfs.ext4", "-q", "-F", "-b", "1024", "-N", "2048", "-O", "metadata_csum,64bit,^resize_inode", "-E", "hash_seed=1f2e3d4c-5b6a-7980-a1b2-c3d4e5f60718", img); err != nil {
			return err
		}
		err := withMount(img, "", func(mnt string) error {
			big := filepath.Join(mnt, "big")
			if err := os.Mkdir(big, 0o755); err != nil {
				return err
			}
			for i := range 400 {
				if err := os.WriteFile(filepath.Join(big, fmt.Sprintf("name-%04d", i)), []byte(fmt.Sprintf("content %d", i)), 0o644); err != nil {
					return err
				}
			}
			fr, err := os.Create(filepath.Join(mnt, "frag"))
			if err != nil {
				return err
			}
			defer fr.Close()
			for i := int64(0); i < 200; i++ {
				if _, err := fr.WriteAt([]byte(fmt.Sprintf("%08d", i)), i*2048); err != nil {
					return err
				}
			}
			x := filepath.Join(mnt, "xattrs")
			if err := os.WriteFile(x, []byte("has xattrs"), 0o644); err != nil {
				return err
			}
			for i := range 8 {
				if err := unix.Setxattr(x, fmt.Sprintf("user.attr%02d", i), bytes.Repeat([]byte{byte('a' + i)}, 60), 0); err != nil {
					return err
				}
			}
			if err := os.Mkdir(filepath.Join(mnt, "plain"), 0o755); err != nil {
				return err
			}
			for _, n := range []string{"a", "b", "c"} {
				if err := os.WriteFile(filepath.Join(mnt, "plain", n), []byte(n), 0o644); err != nil {
					return err
				}
			}
			return os.Symlink("plain/a", filepath.Join(mnt, "link"))
		})
		if err != nil {
			return err
		}
		_, err = testimages.Run("e2fsck", "-fn", img)
		return err
	})
	b, err := os.ReadFile(filepath.Join(dir, "image"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func openBytes(b []byte) (*FS, error) {
	return Open(bytes.NewReader(b), int64(len(b)), Options{Name: "dmg"})
}

func mustLookup(t *testing.T, f *FS, path string) uint64 {
	t.Helper()
	ino := f.Root()
	for _, c := range strings.Split(path, "/") {
		var err error
		if ino, err = f.Lookup(ino, c); err != nil {
			t.Fatalf("Lookup %s: %v", path, err)
		}
	}
	return ino
}

// readAll reads a whole file through the inode API.
func readAll(f *FS, ino uint64) ([]byte, error) {
	fl, err := f.Open(ino)
	if err != nil {
		return nil, err
	}
	b := make([]byte, fl.Size())
	n, err := fl.ReadAt(b, 0)
	if err == io.EOF && n == len(b) {
		err = nil
	}
	return b[:n], err
}

// inodeOffset is where inode ino sits in the volume.
func (f *FS) inodeOffset(ino uint64) int64 {
	g := (ino - 1) / uint64(f.ipg)
	idx := (ino - 1) % uint64(f.ipg)
	gr, _ := f.group(g)
	return int64(gr.inodeTable)*int64(f.bs) + int64(idx)*int64(f.inodeSize)
}

// physOf maps a logical block of an inode.
func physOf(t *testing.T, f *FS, ino, lblk uint64) uint64 {
	t.Helper()
	n, err := f.inode(ino)
	if err != nil {
		t.Fatal(err)
	}
	m, err := f.mapperFor(n)
	if err != nil {
		t.Fatal(err)
	}
	r, err := m.mapBlock(lblk)
	if err != nil || r.kind != runData {
		t.Fatalf("map %d:%d: %+v %v", ino, lblk, r, err)
	}
	return r.phys
}

func wantCorrupt(t *testing.T, what string, err error, ino uint64) {
	t.Helper()
	var ce *fsys.CorruptError
	if !errors.As(err, &ce) || !errors.Is(err, fsys.ErrCorrupt) {
		t.Errorf("%s: error %v, want a *fsys.CorruptError", what, err)
		return
	}
	if ino != 0 && ce.Ino != ino {
		t.Errorf("%s: error names inode %d, want %d: %v", what, ce.Ino, ino, err)
	}
	if !strings.Contains(err.Error(), "dmg") {
		t.Errorf("%s: error does not name the volume: %v", what, err)
	}
}

// checkRest verifies that what the damage did not touch reads as in the
// clean image.
func checkRest(t *testing.T, f *FS, skip ...string) {
	t.Helper()
	for _, c := range []struct{ path, want string }{
		{"plain/a", "a"}, {"plain/c", "c"}, {"big/name-0007", "content 7"}, {"big/name-0399", "content 399"}, {"xattrs", "has xattrs"},
	} {
		if contains(skip, c.path) {
			continue
		}
		ino := mustLookup(t, f, c.path)
		b, err := readAll(f, ino)
		if err != nil || string(b) != c.want {
			t.Errorf("%s: %q, %v; want %q", c.path, b, err, c.want)
		}
	}
	if !contains(skip, "link") {
		if tg, err := f.Readlink(mustLookup(t, f, "link")); err != nil || tg != "plain/a" {
			t.Errorf("link: %q, %v", tg, err)
		}
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func TestDamage(t *testing.T) {
	clean := damageImage(t)
	cf, err := openBytes(clean)
	if err != nil {
		t.Fatal(err)
	}
	checkRest(t, cf)
	bs := int64(cf.bs)
	big := mustLookup(t, cf, "big")
	frag := mustLookup(t, cf, "frag")
	xat := mustLookup(t, cf, "xattrs")
	plainA := mustLookup(t, cf, "plain/a")
	fragN, _ := cf.inode(frag)
	if h, _ := disklayout.DecodeExtentHeader(fragN.iblock()); h.Depth == 0 {
		t.Fatal("frag has no extent tree block; the fixture is wrong")
	}
	etb := disklayout.DecodeExtentIdx(fragN.iblock(), 0).Leaf()
	xatN, _ := cf.inode(xat)
	if xatN.d.FileACL() == 0 {
		t.Fatal("xattrs has no xattr block")
	}

	for _, c := range []struct {
		name  string
		off   int64 // byte to flip
		check func(t *testing.T, f *FS)
		skip  []string
	}{
		{"superblock", 1024 + 0x78, func(t *testing.T, f *FS) {
			if w := f.Warnings(); len(w) == 0 || !strings.Contains(w[0], "backup superblock") {
				t.Errorf("warnings %q, want the backup superblock named", w)
			}
		}, nil},
		{"inode", cf.inodeOffset(plainA) + 0x10, func(t *testing.T, f *FS) {
			_, err := f.Stat(plainA)
			wantCorrupt(t, "Stat", err, plainA)
			_, err = f.Lookup(mustLookup(t, f, "plain"), "a")
			if err != nil {
				t.Errorf("Lookup of a damaged inode's name: %v (the name itself is fine)", err)
			}
		}, []string{"plain/a", "link"}},
		{"extent node", int64(etb)*bs + 20, func(t *testing.T, f *FS) {
			_, err := readAll(f, frag)
			wantCorrupt(t, "read frag", err, frag)
		}, nil},
		{"directory leaf", int64(physOf(t, cf, big, 1))*bs + 40, func(t *testing.T, f *FS) {
			_, err := f.ReadDir(big)
			wantCorrupt(t, "ReadDir big", err, big)
		}, []string{"big/name-0007", "big/name-0399"}},
		{"htree root", int64(physOf(t, cf, big, 0))*bs + 0x28, func(t *testing.T, f *FS) {
			// Lookups fall back to scanning the leaves.
			for _, n := range []string{"name-0000", "name-0200", "name-0399"} {
				if _, err := f.Lookup(big, n); err != nil {
					t.Errorf("Lookup %s: %v", n, err)
				}
			}
			if ents, err := f.ReadDir(big); err != nil || len(ents) != 400 {
				t.Errorf("ReadDir: %d entries, %v", len(ents), err)
			}
		}, nil},
		{"xattr block", int64(xatN.d.FileACL())*bs + 100, func(t *testing.T, f *FS) {
			_, err := f.Xattrs(xat)
			wantCorrupt(t, "Xattrs", err, xat)
		}, nil},
		{"group descriptor", int64(cf.gdtBase)*bs + 0x4, func(t *testing.T, f *FS) {
			// Group 0 holds the root: every inode of group 0 is now
			// unreadable, and Open still succeeds with a warning.
			_, err := f.Stat(f.Root())
			wantCorrupt(t, "Stat root", err, f.Root())
			if w := f.Warnings(); len(w) == 0 || !strings.Contains(w[0], "group 0") {
				t.Errorf("warnings %q", w)
			}
		}, []string{"*"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			b := bytes.Clone(clean)
			b[c.off] ^= 0x5a
			f, err := openBytes(b)
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			c.check(t, f)
			if !contains(c.skip, "*") {
				checkRest(t, f, c.skip...)
			}
		})
	}
}

// fixInodeCsum recomputes an inode's checksum after a deliberate edit, so
// the test reaches the structure behind it.
func fixInodeCsum(f *FS, b []byte, ino uint64) {
	off := f.inodeOffset(ino)
	raw := b[off : off+int64(f.inodeSize)]
	gen := le.Uint32(raw[0x64:])
	c := disklayout.InodeChecksum(f.seed, uint32(ino), gen, raw)
	le.PutUint16(raw[0x7C:], uint16(c))
	if disklayout.InodeHasCsumHi(raw) {
		le.PutUint16(raw[0x82:], uint16(c>>16))
	}
}

func fixDirCsum(f *FS, b []byte, d *dir, blk uint64) {
	data := b[int64(blk)*int64(f.bs) : int64(blk+1)*int64(f.bs)]
	c := disklayout.DirBlockChecksum(f.inodeSeed(d.n), data)
	le.PutUint32(data[len(data)-4:], c)
}
