package ext

import (
	"os"
	"testing"

	"github.com/vmmount/vmmount/testimages"
)

// openImage opens a fixture image file.
func openImage(t testing.TB, img string) *FS {
	t.Helper()
	f, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	fs, err := Open(f, st.Size(), Options{Name: "test"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fs.Close() })
	return fs
}

// TestAgainstKernel compares every entry of every variant with the
// kernel's read-only mount: type, mode, owners, size, content, nlink,
// hardlink groups, symlink targets, rdev, xattrs, all four times, blocks,
// and inode numbers.
func TestAgainstKernel(t *testing.T) {
	for _, v := range variants {
		if v.noOracle {
			continue // tested on its own (TestCasefold)
		}
		t.Run(v.name, func(t *testing.T) {
			img, want := fixture(t, v)
			fs := openImage(t, img)
			got, err := testimages.ScanFS(fs)
			if err != nil {
				t.Fatal(err)
			}
			for _, d := range testimages.Compare(want, got, testimages.ExtCompare()) {
				t.Error(d)
			}
			inos := map[string]uint64{}
			for _, e := range got.Entries {
				inos[e.Path] = e.Ino
			}
			bad := 0
			for _, e := range want.Entries {
				if g, ok := inos[e.Path]; ok && g != e.Ino && bad < 10 {
					bad++
					t.Errorf("%s: inode %d, kernel %d", e.Path, g, e.Ino)
				}
			}
			for _, w := range fs.Warnings() {
				t.Logf("warning: %s", w)
			}
		})
	}
}
