package fat

import (
	"bytes"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/vmmount/vmmount/fsread/fsys"
	"github.com/vmmount/vmmount/testimages"
)

// A FAT fixture: mkfs.vfat, then mtools copies a generated tree in. The
// source tree is the oracle (Linux vfat cannot be loop mounted on every
// machine the tests run on; mtools is an independent writer).
type fatFixture struct {
	name, version string
	bits          int
	size          int64
	mkfsArgs      []string
}

var fatFixtures = []fatFixture{
	{"fat12", "v3", 12, 4 << 20, nil},
	{"fat16", "v3", 16, 24 << 20, []string{"-s", "1"}},
	{"fat32", "v3", 32, 72 << 20, []string{"-s", "1"}},
}

// fixtureTime is the base mtime of the source tree; each file gets a few
// seconds more, some odd, to check the 2 s rounding down.
var fixtureTime = time.Date(2020, 2, 29, 13, 37, 42, 0, time.UTC)

func buildSourceTree(src string) error {
	rnd := rand.New(rand.NewPCG(1, 2))
	data := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rnd.Uint32())
		}
		return b
	}
	files := map[string][]byte{
		"Hello.txt":                         []byte("hello, world\n"),
		"UPPER.TXT":                         []byte("upper"),
		"lower.txt":                         []byte("lower"),
		"MixedCase.Txt":                     []byte("mixed"),
		"ünï cødé long name.txt":            []byte("unicode"),
		"日本語のファイル名.txt":                     []byte("japanese"),
		strings.Repeat("long", 50) + ".txt": []byte("200 characters"),
		"empty":                             nil,
		"big.bin":                           data(300 << 10),
		"EFI/BOOT/BOOTX64.EFI":              data(70 << 10),
		"EFI/debian/grub.cfg":               []byte("search.fs_uuid x root\n"),
		"readonly.txt":                      []byte("read only"),
		"frag-a":                            data(8 << 10),
		"frag-b":                            data(8 << 10),
		"frag-c":                            data(8 << 10),
	}
	for i := range 300 {
		files[fmt.Sprintf("many/file-%03d.txt", i)] = []byte(fmt.Sprint(i))
	}
	deep := "deep"
	for i := range 12 {
		deep = filepath.Join(deep, fmt.Sprintf("level%d", i))
	}
	files[filepath.Join(deep, "bottom.txt")] = []byte("bottom")
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	slices.Sort(names)
	for i, n := range names {
		p := filepath.Join(src, n)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, files[n], 0o644); err != nil {
			return err
		}
		t := fixtureTime.Add(time.Duration(i) * time.Second)
		if err := os.Chtimes(p, t, t); err != nil {
			return err
		}
	}
	return nil
}

// build makes dir/img and dir/src. frag-b is deleted after copying so its
// entry stays as a 0xE5 slot, and big2.bin written afterwards fills its
// clusters and continues elsewhere: a fragmented chain.
func (fx fatFixture) build(dir string) error {
	src := filepath.Join(dir, "src")
	if err := buildSourceTree(src); err != nil {
		return err
	}
	img := filepath.Join(dir, "img")
	if err := testimages.Truncate(img, fx.size); err != nil {
		return err
	}
	args := append([]string{"-F", fmt.Sprint(fx.bits), "-n", "FIXTURE", "-i", "c0ffee42"}, fx.mkfsArgs...)
	if _, err := testimages.Run("mkfs.vfat", append(args, img)...); err != nil {
		return err
	}
	env := []string{"TZ=UTC", "MTOOLS_SKIP_CHECK=1", "MTOOLS_NO_VFAT=0"}
	ents, err := os.ReadDir(src)
	if err != nil {
		return err
	}
	mcopy := []string{"-s", "-m", "-i", img}
	for _, e := range ents {
		mcopy = append(mcopy, filepath.Join(src, e.Name()))
	}
	if _, err := testimages.RunIn(dir, env, "mcopy", append(mcopy, "::/")...); err != nil {
		return err
	}
	if _, err := testimages.RunIn(dir, env, "mattrib", "-i", img, "+r", "::/readonly.txt"); err != nil {
		return err
	}
	if _, err := testimages.RunIn(dir, env, "mdel", "-i", img, "::/frag-b"); err != nil {
		return err
	}
	if err := os.Remove(filepath.Join(src, "frag-b")); err != nil {
		return err
	}
	if fx.bits == 32 {
		// mtools allocates FAT32 clusters after FSInfo's next-free hint;
		// make it unknown so it starts over at the hole frag-b left.
		if err := patchFile(img, 512+492, []byte{0xFF, 0xFF, 0xFF, 0xFF}); err != nil {
			return err
		}
	}
	big2 := filepath.Join(src, "big2.bin")
	b := bytes.Repeat([]byte("fragmented "), 4000)
	if err := os.WriteFile(big2, b, 0o644); err != nil {
		return err
	}
	t := fixtureTime.Add(-time.Hour)
	if err := os.Chtimes(big2, t, t); err != nil {
		return err
	}
	_, err = testimages.RunIn(dir, env, "mcopy", "-m", "-i", img, big2, "::/")
	return err
}

func (fx fatFixture) get(t *testing.T) (img, src string) {
	t.Helper()
	testimages.RequireTools(t, "mkfs.vfat", "mcopy", "mdel", "mattrib")
	dir := testimages.Get(t, "fsread-fat-"+fx.name, fx.version, fx.build)
	return filepath.Join(dir, "img"), filepath.Join(dir, "src")
}

func openImage(t testing.TB, img string) *FS {
	t.Helper()
	fh, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fh.Close() })
	st, err := fh.Stat()
	if err != nil {
		t.Fatal(err)
	}
	f, err := Open(fh, st.Size(), Options{Name: filepath.Base(filepath.Dir(img))})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// entryInfo is what the source tree and the image must agree on.
type entryInfo struct {
	Dir   bool
	Size  int64
	Data  string // content of files (as a string for readable diffs)
	Mtime time.Time
}

func TestFixtures(t *testing.T) {
	for _, fx := range fatFixtures {
		t.Run(fx.name, func(t *testing.T) {
			img, src := fx.get(t)
			f := openImage(t, img)
			if f.geo.kind != kind(fx.bits) {
				t.Fatalf("FAT%d, want FAT%d", f.geo.kind, fx.bits)
			}
			info := f.Info()
			if info.Label != "FIXTURE" || info.UUID != "C0FF-EE42" {
				t.Errorf("label %q uuid %q", info.Label, info.UUID)
			}
			if w := f.Warnings(); len(w) != 0 {
				t.Errorf("warnings: %q", w)
			}
			want := map[string]entryInfo{}
			err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
				if err != nil || p == src {
					return err
				}
				rel, _ := filepath.Rel(src, p)
				st, err := os.Stat(p)
				if err != nil {
					return err
				}
				e := entryInfo{Dir: d.IsDir()}
				if !d.IsDir() {
					b, err := os.ReadFile(p)
					if err != nil {
						return err
					}
					e.Size, e.Data = int64(len(b)), string(b)
					e.Mtime = st.ModTime().UTC().Truncate(2 * time.Second)
				}
				want[filepath.ToSlash(rel)] = e
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			fsy := fsys.NewFS(f)
			got := map[string]entryInfo{}
			err = fs.WalkDir(fsy, ".", func(p string, d fs.DirEntry, err error) error {
				if err != nil || p == "." {
					return err
				}
				fi, err := d.Info()
				if err != nil {
					return err
				}
				e := entryInfo{Dir: d.IsDir()}
				if !d.IsDir() {
					b, err := fs.ReadFile(fsy, p)
					if err != nil {
						return err
					}
					e.Size, e.Data, e.Mtime = fi.Size(), string(b), fi.ModTime()
				}
				got[p] = e
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("tree differs from the source (-want +got):\n%s", diff)
			}
			checkModes(t, fsy)
			if err := fstest.TestFS(fsy, "Hello.txt", "EFI/BOOT/BOOTX64.EFI", "many/file-299.txt", "big2.bin"); err != nil {
				t.Error(err)
			}
			// The fragmented file really is: more than one run.
			ino, err := fsy.Resolve("stat", "big2.bin", false)
			if err != nil {
				t.Fatal(err)
			}
			fl, err := f.Open(ino)
			if err != nil {
				t.Fatal(err)
			}
			if n := len(fl.(*file).runs); n < 2 {
				t.Errorf("big2.bin has %d runs; the fixture should fragment it", n)
			}
		})
	}
}

func checkModes(t *testing.T, fsy fsys.FS) {
	for p, want := range map[string]uint32{
		".":            fsys.S_IFDIR | 0o755,
		"EFI":          fsys.S_IFDIR | 0o755,
		"Hello.txt":    fsys.S_IFREG | 0o755,
		"readonly.txt": fsys.S_IFREG | 0o555,
	} {
		fi, err := fsy.Stat(p)
		if err != nil {
			t.Error(err)
			continue
		}
		st := fi.Sys().(*fsys.Stat)
		if st.Mode != want || st.Uid != 0 || st.Gid != 0 {
			t.Errorf("%s: mode %o uid %d gid %d, want %o root", p, st.Mode, st.Uid, st.Gid, want)
		}
	}
	// nlink of a directory counts its subdirectories, "." and "..".
	for p, want := range map[string]uint32{".": 2 + 3, "EFI": 2 + 2, "many": 2, "Hello.txt": 1} {
		fi, err := fsy.Stat(p)
		if err != nil {
			t.Error(err)
			continue
		}
		if n := fi.Sys().(*fsys.Stat).Nlink; n != want {
			t.Errorf("%s: nlink %d, want %d", p, n, want)
		}
	}
}

func patchFile(name string, off int64, b []byte) error {
	f, err := os.OpenFile(name, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	if _, err := f.WriteAt(b, off); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
