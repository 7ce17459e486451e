package extwrite

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vmmount/vmmount/testimages"
)

// copyImage makes a sparse copy of a cached fixture to write into.
func copyImage(t *testing.T, src string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "fs.img")
	if _, err := testimages.Run("cp", "--sparse=always", src, dst); err != nil {
		t.Fatal(err)
	}
	return dst
}

// mountFixture mounts an ext fixture read-only with the variant's oracle
// reader.
func mountFixture(t *testing.T, img string, v testimages.ExtVariant) string {
	t.Helper()
	if v.Oracle == "fuse2fs" {
		mnt := t.TempDir()
		unmount, err := testimages.FuseMount(mnt, "fuse2fs", img, mnt, "-f", "-o", "ro")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { unmount() })
		return mnt
	}
	mnt, cleanup, err := testimages.LoopMount(img, 0, 0, false, "", "ro")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cleanup)
	return mnt
}

// fixtureWant is what a fixture scenario expects of an entry it wrote.
type fixtureWant struct {
	kind   string // file, dir, symlink
	data   []byte
	target string
	perm   uint32
	uid    uint32
	mtime  time.Time
}

// TestFixtureScenarios writes into every shared ext fixture (a RichTree
// copied in by mkfs -d and completed by the kernel): files into the big
// e2fsck-indexed directory and a kernel-grown htree directory, a deep
// path made with Mkdir, an empty directory, symlinks, and replacements of
// a plain file and of one with xattrs and ACLs. e2fsck must find nothing,
// and the oracle's reader must show every untouched entry exactly as
// before (times, xattrs, blocks) and the new ones as written. Variants the
// writer refuses must be refused before anything is staged.
func TestFixtureScenarios(t *testing.T) {
	testimages.RequireRoot(t)
	for _, v := range testimages.ExtVariants {
		t.Run(v.Name, func(t *testing.T) {
			x := testimages.GetExt(t, v)
			img := copyImage(t, x.Image)
			fh, err := os.Open(img)
			if err != nil {
				t.Fatal(err)
			}
			defer fh.Close()
			st, _ := fh.Stat()
			f, err := Open(fh, st.Size(), Options{Name: v.Name})
			switch v.Name {
			case "ext4-journal":
				if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "journal needs recovery") {
					t.Fatalf("Open = %v, want a refusal naming the journal", err)
				}
				return
			case "ext4-bigalloc":
				if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "bigalloc") {
					t.Fatalf("Open = %v, want a refusal naming bigalloc", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			oracle, err := x.Oracle()
			if err != nil {
				t.Fatal(err)
			}
			want := map[string]fixtureWant{}
			touched := map[string]bool{}
			mt := time.Date(2023, 1, 2, 3, 4, 5, 600000000, time.UTC)
			attr := Attr{Perm: 0o640, Uid: 1234, Gid: 4321, Mtime: mt, Atime: mt}
			dirOf := func(p string) uint32 {
				ino, err := lookupPath(f, p)
				if err != nil {
					t.Fatal(err)
				}
				return ino
			}
			create := func(dir, name string, size int) {
				data := pattern(size, len(name)+size)
				if _, err := f.Create(dirOf(dir), name, attr, content(data)); err != nil {
					t.Fatalf("create %s/%s: %v", dir, name, err)
				}
				want[path.Join(dir, name)] = fixtureWant{kind: "file", data: data, perm: 0o640, uid: 1234, mtime: mt}
				touched[dir] = true
			}
			create(".", "injected.bin", 3<<20+123)
			create("big", "zz-new-in-indexed-dir", 10)
			for i := range 300 {
				create("rw/big", "kernel-htree-"+strings.Repeat("x", i%50)+itoa(uint64(i)), i*7)
			}
			create("empty", "first", 5000)
			d := dirOf(".")
			for _, c := range []string{"new", "deeper", "path"} {
				ino, err := f.Mkdir(d, c, Attr{Perm: 0o750, Uid: 7, Gid: 8, Mtime: mt, Atime: mt})
				if err != nil {
					t.Fatal(err)
				}
				touched[strings.TrimPrefix(path.Dir(path.Join(pathOf(want, c), c)), "/")] = true
				d = ino
			}
			// Directories that got entries have the time of the change.
			want["new"] = fixtureWant{kind: "dir", perm: 0o750, uid: 7}
			want["new/deeper"] = fixtureWant{kind: "dir", perm: 0o750, uid: 7}
			want["new/deeper/path"] = fixtureWant{kind: "dir", perm: 0o750, uid: 7}
			touched["."], touched["new"], touched["new/deeper"] = true, true, true
			create("new/deeper/path", "leaf.txt", 42)
			for _, tgt := range []string{"../short", strings.Repeat("long/", 30)} {
				name := "link" + itoa(uint64(len(tgt)))
				if _, err := f.Symlink(dirOf("new"), name, tgt, attr); err != nil {
					t.Fatal(err)
				}
				want["new/"+name] = fixtureWant{kind: "symlink", target: tgt, uid: 1234, mtime: mt}
			}
			// Replace a plain file and one with xattrs: the inode, its
			// owner, mode and xattrs stay unless asked.
			for _, p := range []string{"files/" + firstFile(oracle, "files"), "xattr/user"} {
				ino := dirOf(p)
				data := pattern(70000, len(p))
				if err := f.Replace(ino, content(data), ReplaceAttr{Mtime: mt, Atime: mt}); err != nil {
					t.Fatalf("replace %s: %v", p, err)
				}
				old := entryOf(oracle, p)
				want[p] = fixtureWant{kind: "file", data: data, perm: old.Mode & 0o7777, uid: old.Uid, mtime: mt}
			}
			if v.Casefold {
				cf := dirOf("cf")
				if _, err := f.Create(cf, "New", attr, content(nil)); !errors.Is(err, ErrRefused) {
					t.Errorf("create in a casefolded directory = %v, want refused", err)
				}
			}
			apply(t, f, img)
			fsck(t, img, v.Name)
			checkFixture(t, img, v, oracle, want, touched)
		})
	}
}

// pathOf is a helper for the Mkdir chain: the parent path of name.
func pathOf(want map[string]fixtureWant, name string) string {
	switch name {
	case "deeper":
		return "new"
	case "path":
		return "new/deeper"
	}
	return ""
}

func firstFile(m *testimages.Manifest, dir string) string {
	for _, e := range m.Entries {
		if path.Dir(e.Path) == dir && e.Type() == "file" && e.Nlink == 1 {
			return path.Base(e.Path)
		}
	}
	return ""
}

func entryOf(m *testimages.Manifest, p string) testimages.Entry {
	for _, e := range m.Entries {
		if e.Path == p {
			return e
		}
	}
	return testimages.Entry{}
}

// checkFixture compares the fixture as its oracle reader now shows it with
// the oracle and what was written.
func checkFixture(t *testing.T, img string, v testimages.ExtVariant, oracle *testimages.Manifest, want map[string]fixtureWant, touched map[string]bool) {
	t.Helper()
	got, err := testimages.ScanDir(mountFixture(t, img, v))
	if err != nil {
		t.Fatal(err)
	}
	gm := map[string]testimages.Entry{}
	for _, e := range got.Entries {
		gm[e.Path] = e
	}
	exp := &testimages.Manifest{Source: "oracle + injected"}
	if slices.Contains(v.Args, "128") {
		// 128-byte inodes keep whole seconds.
		for p, w := range want {
			w.mtime = w.mtime.Truncate(time.Second)
			want[p] = w
		}
	}
	for _, e := range oracle.Entries {
		g, ok := gm[e.Path]
		if touched[e.Path] && ok {
			// A directory that got entries: new size, link count and
			// times are its own.
			e.Size, e.Nlink, e.Mtime, e.Ctime, e.Blocks = g.Size, g.Nlink, g.Mtime, g.Ctime, g.Blocks
		}
		if w, ok := want[e.Path]; ok && w.kind == "file" {
			sum := sha256.Sum256(w.data)
			e.SHA256, e.Size, e.Mtime, e.Atime, e.Ctime, e.Blocks = hex.EncodeToString(sum[:]), int64(len(w.data)), w.mtime, w.mtime, g.Ctime, g.Blocks
		}
		exp.Entries = append(exp.Entries, e)
	}
	for p, w := range want {
		if entryOf(oracle, p).Path != "" {
			continue
		}
		g, ok := gm[p]
		if !ok {
			t.Errorf("%s: not there", p)
			continue
		}
		e := testimages.Entry{Path: p, Uid: w.uid, Gid: g.Gid, Ino: g.Ino, Ctime: g.Ctime, Btime: g.Btime, Atime: g.Atime, Mtime: g.Mtime, Nlink: g.Nlink, Blocks: g.Blocks, Size: g.Size}
		if !w.mtime.IsZero() {
			e.Mtime = w.mtime
		}
		switch w.kind {
		case "file":
			sum := sha256.Sum256(w.data)
			e.Mode, e.SHA256, e.Size, e.Nlink = 0o100000|w.perm, hex.EncodeToString(sum[:]), int64(len(w.data)), 1
			if bs := int64(4096); g.Blocks*512 < (e.Size+bs-1)/bs*bs && v.Args[1] == "4096" {
				t.Errorf("%s: %d blocks for %d bytes", p, g.Blocks, e.Size)
			}
		case "dir":
			e.Mode = 0o040000 | w.perm
		case "symlink":
			e.Mode, e.Target, e.Nlink = 0o120777, w.target, 1
		}
		exp.Entries = append(exp.Entries, e)
	}
	o := testimages.ExtCompare()
	if v.Oracle == "fuse2fs" {
		o.Fields &^= testimages.FieldAtime | testimages.FieldMtime | testimages.FieldCtime | testimages.FieldBtime
	}
	if diffs := testimages.Compare(exp, got, o); len(diffs) > 0 {
		t.Errorf("%s after injection (-want +got):\n%s", v.Name, strings.Join(diffs, "\n"))
	}
}
